"""The repository describes itself: the README's layout matches the tree, and nothing in the
repository refers to a file outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "CIMLSegmentation" / "ciml"
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".txt", ".json", ".ui", ".s4ext", ".cmake", ".yml", ".yaml"}
SKIP = {".git", ".venv", "__pycache__", "Models"}  # Models: the sample bundle's weights and card


def layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Repository layout", 1)[1]
    return section.split("```", 2)[1].splitlines()


def listed_core_entries() -> set[str]:
    """Names listed under `ciml/` in the README's layout (indented one level deeper)."""
    lines = layout_block()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ciml/"))
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    names = set()
    for line in lines[start + 1:]:
        depth = len(line) - len(line.lstrip())
        if depth < indent:
            break
        if depth == indent:
            names.add(line.split()[0].rstrip("/"))
    return names


def test_the_readme_layout_lists_every_core_package_and_only_existing_ones():
    listed = listed_core_entries()
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= listed, f"packages missing from the README layout: {sorted(packages - listed)}"
    missing = [name for name in listed if not (PACKAGE / name).exists()]
    assert missing == [], f"the README layout lists what does not exist: {missing}"


def test_the_readme_layout_top_level_entries_exist():
    for line in layout_block():
        if line and not line.startswith(" "):
            for name in re.findall(r"[\w.]+/?", line.split("  ")[0]):
                assert (ROOT / name.rstrip("/")).exists(), name


def test_nothing_refers_to_files_outside_the_repository():
    outside = [
        "DESIGN" + ".md",  # the design document lives outside the repository
        "../" + "shared",
        "/work/" + "shared",
    ]
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix not in TEXT_SUFFIXES or not path.is_file() or SKIP & set(path.relative_to(ROOT).parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {word}" for word in outside if word in text]
    assert found == []


# Words about how the work was organised or which machine was handed out, not about the product.
OUTSIDE_WORDS = re.compile(
    r"\bissues? #?\d+|\b(?:was|were|is|not) lent\b|\blent to (?:this|the) (?:task|session)\b|can_start_another"
    r"|\bthe device tool\b|\bthis (?:task|session)\b",
    re.I)


def test_code_and_docs_speak_of_the_project_alone():
    """No "issue N" for a tracker no reader has, no sentence about how a machine was obtained."""
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix not in TEXT_SUFFIXES or not path.is_file() or SKIP & set(path.relative_to(ROOT).parts):
            continue
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {m.group(0)}" for m in OUTSIDE_WORDS.finditer(line)]
    assert found == []
