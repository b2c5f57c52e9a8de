"""Render the result tables of docs/BENCHMARKS.md and the README's headline numbers from the
result files in docs/results/.

Every number the docs report comes from a result file (`ciml benchmark ...` and `ciml study`
write them: the numbers, the command, the commit, the machine and the date). A document marks
what this script owns with a pair of comments, and only the text between them is rewritten:

    <!-- results:NAME -->
    ... rendered by BLOCKS[NAME] ...
    <!-- /results:NAME -->

    python scripts/render_results.py           # rewrite the blocks in place
    python scripts/render_results.py --check   # exit 1 if a block differs from its rendering

Verdicts are computed, not written: two results differ "beyond the spread" only where their
mean ± SD intervals do not touch, and only results of equal budgets are compared.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # result_blocks beside this file
from result_blocks import BLOCKS, spread  # noqa: E402  (spread: the verdict the tests check)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "BENCHMARKS.md")
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def load_results(folder: Path = RESULTS) -> dict[str, dict]:
    """Every result file of the folder, by file stem."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


# ---------------------------------------------------------------------------------------------
# documents


def render_text(text: str, results: dict) -> str:
    """The document with every marked block replaced by its rendering."""
    def block(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown results block {name!r}")
        return match[1] + BLOCKS[name](results) + match[4]
    return BLOCK.sub(block, text)


NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
VERSIONED = re.compile(r"\b(arXiv|Python|License|torch|MONAI|Slicer|version)\s+\d+(\.\d+)*")


def stray_numbers(text: str) -> list[str]:
    """Decimal numbers outside the rendered blocks and code that no rendered block contains.

    A document may repeat a rendered number in its prose; a number that no result file gives is
    a number nobody can trace, so the test refuses it.
    """
    rendered = set()
    for match in BLOCK.finditer(text):
        rendered |= set(NUMBER.findall(match["body"]))
    prose = BLOCK.sub("", re.sub(r"```.*?```", "", text, flags=re.S))
    prose = re.sub(r"`[^`\n]*`", "", prose)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets (file names with dates)
    prose = VERSIONED.sub("", prose)  # identifiers, not measurements
    return [n for n in NUMBER.findall(prose) if n not in rendered]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 where a document differs from its rendering")
    args = parser.parse_args(argv)
    results = load_results()
    stale = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        rendered = render_text(text, results)
        if rendered != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(rendered, encoding="utf-8")
    if args.check and stale:
        print("stale result blocks in " + ", ".join(map(str, stale)) + ": run python scripts/render_results.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
