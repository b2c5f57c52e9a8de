"""The Slicer extension's packaging, decided on plain values outside Slicer: which MONAI to
install for a torch/numpy/Python triple and the pip constraints that keep torch in place; the
Extensions Index JSON entry in step with the .s4ext and CMakeLists.txt; the self-test registered
with CTest; the sample case offered in Sample Data (its names and source; its making is in
test_slicer_sample_case.py); the docs."""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slicer_lib_helpers
from CIMLSegmentationLib import models, requirements, roles, samplecase
from CIMLSegmentationLib.requirements import DependencyError, choose_monai, satisfies
from ciml.data import synthetic

ROOT = slicer_lib_helpers.ROOT
MODULE_DIR = slicer_lib_helpers.MODULE_DIR
LIB = MODULE_DIR / "CIMLSegmentationLib"
GLUE = LIB / "slicerglue"
BUILTIN = slicer_lib_helpers.SAMPLE_BUNDLE
# SampleDataLogic.registerCustomSampleDataSource's parameters, the same at Slicer 5.8.1 and 5.13
# (Modules/Scripted/SampleData/SampleData.py).
SAMPLE_DATA_PARAMETERS = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                          "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties",
                          "checksums", "loadFileType"}
# The properties of the Extensions Index catalog entry schema v1.0.1 (Slicer/ExtensionsIndex).
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"
SCHEMA_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                     "build_subdirectory", "enabled", "tier"}
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}


# --- which MONAI, and pip never touching torch ------------------------------------------------

@pytest.mark.parametrize("python, torch, numpy, monai", [
    ("3.12.10", "2.9.0+cu128", "2.4.6", "1.6.1"),  # Slicer 5.12/5.13 with a current torch
    ("3.9.10", "2.8.0+cu126", "1.26.4", "1.5.2"),  # Slicer 5.8: MONAI 1.6 needs Python >= 3.10
    ("3.12.10", "2.6.0+cu124", "2.0.2", "1.5.2"),  # Slicer 5.10, torch below MONAI 1.6's 2.8
    ("3.12.10", "2.4.1", "2.4.6", "1.5.2"),  # exactly MONAI 1.5's floor
    ("3.9.10", "2.4.0", "1.26.4", "1.4.0"),  # just below it: MONAI 1.4 (numpy < 2 on Slicer 5.8)
    ("3.9.10", "2.2.2", "1.26.4", "1.4.0"),  # the last torch for Intel Macs, on Slicer 5.8
])
def test_the_newest_monai_that_fits_the_installed_torch_numpy_and_python(python, torch, numpy, monai):
    assert choose_monai(python, torch, numpy) == monai


def test_an_old_torch_with_numpy_2_fits_no_monai_and_the_message_says_what_to_install():
    with pytest.raises(DependencyError) as raised:
        choose_monai("3.12.10", "2.3.1+cu121", "2.0.2")  # MONAI 1.4 needs numpy < 2, 1.5 torch >= 2.4.1
    message = str(raised.value)
    assert "torch 2.3.1+cu121" in message and "torch>=2.4.1" in message and "PyTorch Utils" in message
    with pytest.raises(DependencyError, match="Python 3.8.10"):
        choose_monai("3.8.10", "2.4.0", "1.24.4")  # no MONAI from 1.4 on runs on Python 3.8


def test_the_monai_table_agrees_with_the_installed_monai_and_the_projects_floors():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"monai{requirements.MONAI[1]}"' in pyproject and f'"torch{requirements.TORCH[1]}"' in pyproject
    versions = [r.version for r in requirements.MONAI_RELEASES]
    assert versions == sorted(versions, key=requirements.version_tuple, reverse=True)
    assert satisfies(versions[-1], requirements.MONAI[1])
    installed = requirements.installed_version("monai")
    row = next((r for r in requirements.MONAI_RELEASES if r.version == installed), None)
    assert row is not None, (f"MONAI {installed} is installed but not in requirements.MONAI_RELEASES: add its row "
                             "(Requires-Python and the torch and numpy Requires-Dist of its wheel on PyPI)")
    lines, requires_python = requirements.installed_requirements("monai")
    plain = {re.split(r"[<>=!~ (]", line, maxsplit=1)[0]: line for line in lines if ";" not in line}
    assert requires_python.replace(" ", "") == row.python
    for name, spec in (("torch", row.torch), ("numpy", row.numpy)):
        clauses = set(re.sub(r"^[A-Za-z]+|[ ()]", "", plain[name]).split(","))
        assert clauses == set(spec.split(",")), (name, plain[name])


@pytest.mark.parametrize("version, spec, expected", [
    ("2.5.1+cu121", ">=2.4.1", True), ("2.0.0", "<2.0", False), ("1.26.4", ">=1.24,<2.0", True),
    ("2.7.0", ">=2.4.1,<2.7.0", False), ("3.9.10", ">=3.10", False), ("3.12.10", ">=3.10", True),
    ("2.8.0rc1", ">=2.8.0", True), ("1.24.3", "==1.24.*", True), ("1.25.0", "==1.24.*", False),
    ("1.4.0", "~=1.4", True), ("2.0", "~=1.4", False), ("2.3", "", True), ("2.3", "!=2.3.0", False),
])
def test_version_specifiers(version, spec, expected):
    assert satisfies(version, spec) is expected


def test_unreadable_specifier_is_refused():
    with pytest.raises(ValueError, match="unsupported"):
        satisfies("1.0", "=>1.0")


def test_unmet_reads_requires_dist_lines_and_skips_optional_ones():
    lines = ["torch>=2.8.0", "numpy (<3.0,>=1.24)", 'nibabel; extra == "all"', "packaging"]
    versions = {"python": "3.9.10", "torch": "2.5.1+cu121", "numpy": "1.26.4", "nibabel": None}
    assert requirements.unmet(lines, ">=3.10", versions) == [
        "python>=3.10 (installed: 3.9.10)", "torch>=2.8.0 (installed: 2.5.1+cu121)"]
    assert requirements.unmet(lines, ">=3.9", {**versions, "torch": "2.8.0"}) == []


def _versions(**installed):
    return lambda name: installed.get(name.lower())


def test_pip_requirements_choose_monai_when_absent_or_unfit_and_keep_a_fitting_one():
    others = {"safetensors": "0.4.5", "pyyaml": "6.0.2", "scipy": "1.13.1", "tqdm": "4.66.0"}
    base = {"torch": "2.5.1+cu121", "numpy": "2.0.2", **others}
    no_meta = lambda name: ([], "")  # noqa: E731
    assert requirements.pip_requirements(_versions(**base), "3.12.10", no_meta) == ["monai==1.5.2"]
    # MONAI 1.6.1 installed earlier, then torch came back older: its torch>=2.8 is unmet.
    meta_161 = lambda name: (["torch>=2.8.0", "numpy<3.0,>=1.24"], ">=3.10")  # noqa: E731
    assert requirements.pip_requirements(_versions(**base, monai="1.6.1"), "3.12.10", meta_161) == ["monai==1.5.2"]
    meta_152 = lambda name: (["numpy<3.0,>=1.24", "torch>=2.4.1"], ">=3.9")  # noqa: E731
    assert requirements.pip_requirements(_versions(**base, monai="1.5.2"), "3.12.10", meta_152) == []
    partial = {"torch": "2.9.0", "numpy": "2.4.6", "monai": "1.3.2"}  # too old a MONAI, others absent
    assert requirements.pip_requirements(_versions(**partial), "3.12.10", meta_152) == [
        "monai==1.6.1", "safetensors>=0.4", "pyyaml>=6", "scipy>=1.10", "tqdm>=4.60"]
    with pytest.raises(DependencyError, match="PyTorch extension"):
        requirements.pip_requirements(_versions(numpy="2.0.2"), "3.12.10", no_meta)


def test_constraints_pin_each_installed_package_exactly_and_skip_absent_ones():
    text = requirements.constraints_text(_versions(torch="2.5.1+cu121", numpy="1.26.4", simpleitk="2.4.0"))
    assert text == "torch==2.5.1+cu121\nnumpy==1.26.4\nSimpleITK==2.4.0\n"
    assert requirements.constraints_text(_versions()) == ""


def _pip(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pip", *args, "--dry-run", "--no-index",
                           "--disable-pip-version-check"], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_pip_honours_the_constraints_and_never_replaces_the_installed_torch(tmp_path):
    if requirements.installed_version("torch") is None or requirements.installed_version("monai") is None:
        pytest.skip("needs torch and MONAI installed")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(requirements.constraints_text())
    assert f"torch=={requirements.installed_version('torch')}" in constraints.read_text()
    monai = requirements.installed_version("monai")
    kept = _pip("install", f"monai=={monai}", "-c", str(constraints), cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "Would install" not in kept.stdout
    # A requirement that needs another torch: pip must refuse rather than replace it.
    refused = _pip("install", "torch<2", "-c", str(constraints), cwd=tmp_path)
    assert refused.returncode != 0 and "Would install" not in refused.stdout
    assert "(constraint) torch" in refused.stdout and f"=={requirements.installed_version('torch')}" in refused.stdout


# --- the Extensions Index entry ---------------------------------------------------------------

def _s4ext():
    fields = {}
    for line in (ROOT / "CIMLExtension.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    return fields


def _cmake(name):
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(r'set\(\s*' + name + r'\s+"([^"]*)"\s*\)', text)
    return match.group(1) if match else None


def test_the_json_entry_follows_the_index_schema_and_naming():
    path = ROOT / "CIMLSegmentation.json"
    raw = path.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")  # the index's checker wants LF only
    entry = json.loads(raw)
    assert entry["$schema"] == SCHEMA_URL
    assert SCHEMA_REQUIRED <= set(entry) <= SCHEMA_PROPERTIES
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert entry.get("scm_type", "git") == "git" and entry.get("enabled", True) is True
    # The index names an extension by its file, which must match project() of the top CMakeLists.
    project = re.search(r"project\(\s*(\w+)", (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert path.stem == project == "CIMLSegmentation"
    assert not project.lower().startswith("slicer")  # the index's rule: no 'Slicer' prefix...
    repo = entry["scm_url"].rstrip("/").split("/")[-1].removesuffix(".git")
    assert repo.startswith("Slicer")  # ...but the repository's name has one
    assert entry["scm_url"].startswith("https://")


def test_the_json_entry_the_s4ext_and_cmake_say_the_same():
    entry, s4ext = json.loads((ROOT / "CIMLSegmentation.json").read_text()), _s4ext()
    assert entry["scm_url"] == s4ext["scmurl"]
    assert entry["scm_revision"] == s4ext["scmrevision"]
    assert entry.get("scm_type", "git") == s4ext["scm"]
    depends = [] if s4ext["depends"] == "NA" else s4ext["depends"].split()
    assert entry["build_dependencies"] == depends == _cmake("EXTENSION_DEPENDS").split()
    assert entry["build_subdirectory"] == s4ext["build_subdirectory"]
    assert entry["category"] == s4ext["category"] == _cmake("EXTENSION_CATEGORY")
    assert (s4ext["enabled"] == "1") == entry.get("enabled", True)
    for key, variable in (("homepage", "EXTENSION_HOMEPAGE"), ("contributors", "EXTENSION_CONTRIBUTORS"),
                          ("description", "EXTENSION_DESCRIPTION"), ("iconurl", "EXTENSION_ICONURL"),
                          ("screenshoturls", "EXTENSION_SCREENSHOTURLS")):
        assert s4ext[key] == _cmake(variable), key
    assert s4ext["homepage"] in entry["scm_url"]
    # The icon and screenshot are files of this repository at the indexed revision.
    prefix = "https://raw.githubusercontent.com/" + "/".join(
        s4ext["homepage"].split("/")[-2:]) + f"/{entry['scm_revision']}/"
    for url in [s4ext["iconurl"]] + s4ext["screenshoturls"].split():
        assert url.startswith(prefix) and (ROOT / url[len(prefix):]).is_file(), url


# --- the self-test in CTest, and the sample-data hook -----------------------------------------

def _cmake_globs(text):
    """{variable: [(recursive, pattern)]} of the file(GLOB...) lines of a CMakeLists.txt."""
    globs = {}
    line = r"file\((GLOB(?:_RECURSE)?) (\w+) RELATIVE \$\{CMAKE_CURRENT_SOURCE_DIR\}([^)]*)\)"
    for kind, variable, patterns in re.findall(line, text):
        globs.setdefault(variable, []).extend((kind == "GLOB_RECURSE", p) for p in patterns.split())
    return globs


def _cmake_matches(folder, recursive, pattern):
    """The files CMake's file(GLOB) or file(GLOB_RECURSE) finds for ``pattern`` under ``folder``."""
    head, _, name = pattern.rpartition("/")
    return sorted((folder / head).rglob(name) if recursive else (folder / head).glob(name))


def test_cmake_lists_and_installs_every_python_file_of_the_module():
    text = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "CIMLSegmentation")
    scripts = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\)", text, re.S).group(1).split()
    globs = _cmake_globs(text)
    listed = set()
    for entry in scripts:
        variable = re.fullmatch(r"\$\{(\w+)\}", entry)
        for recursive, pattern in (globs[variable.group(1)] if variable else [(False, entry)]):
            listed |= {path.relative_to(MODULE_DIR) for path in _cmake_matches(MODULE_DIR, recursive, pattern)}
    wanted = {p.relative_to(MODULE_DIR) for p in MODULE_DIR.rglob("*.py") if ".egg-info" not in str(p)
              and "__pycache__" not in p.parts}
    assert wanted - listed == set()
    assert {Path("CIMLSegmentationLib/slicerglue/__init__.py"), Path("CIMLSegmentationLib/slicerglue/widget.py"),
            Path("CIMLSegmentationLib/__init__.py"), Path("CIMLSegmentation.py")} <= listed
    # the emulation above is CMake's: a non-recursive glob does not reach into sub-folders
    assert not any(p.parent.name == "slicerglue" for p in _cmake_matches(MODULE_DIR, False, "CIMLSegmentationLib/*.py"))


def test_the_self_test_is_registered_with_ctest():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "set(MODULE_NAME CIMLSegmentation)" in text and "WITH_GENERIC_TESTS" in text
    block = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", text, re.S)
    assert block and re.search(r"slicer_add_python_unittest\(\s*SCRIPT \$\{MODULE_NAME\}\.py\s*\)", block.group(1))
    # slicer.testing.runUnitTest loads the module file's unittest.TestCase classes and runs test_*.
    tree = ast.parse((MODULE_DIR / "CIMLSegmentation.py").read_text())
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CIMLSegmentationTest")
    assert [b.id for b in test.bases] == ["ScriptedLoadableModuleTest"]
    methods = [n.name for n in test.body if isinstance(n, ast.FunctionDef)]
    assert {"runTest", "test_sample_case_loads", "test_segment_sample_case"} <= set(methods)


def test_the_module_registers_its_sample_data_on_startup():
    tree = ast.parse((MODULE_DIR / "CIMLSegmentation.py").read_text())
    module = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CIMLSegmentation")
    init = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    calls = [ast.unparse(n) for n in ast.walk(init) if isinstance(n, ast.Call)]
    assert "slicer.app.connect('startupCompleted()', sampledata.registerSampleData)" in calls


def test_the_sample_data_glue_and_its_plain_names_say_so_by_their_imports():
    def top_imports(path):
        tree = ast.parse(path.read_text())
        return {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names} | \
            {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert "slicer" in top_imports(GLUE / "install.py") and "slicer" in top_imports(GLUE / "sampledata.py")
    assert not {"slicer", "qt", "vtk", "ctk", "numpy", "SimpleITK", "torch"} & (
        top_imports(LIB / "samplecase.py") | top_imports(LIB / "requirements.py"))


def test_the_sample_case_button_has_its_picture_and_the_worker_its_module_folder():
    assert samplecase.MODULE_DIR == str(MODULE_DIR) and os.path.isfile(samplecase.THUMBNAIL)


# --- the sample case --------------------------------------------------------------------------

def test_the_sample_case_names_match_what_the_worker_writes():
    assert samplecase.CASE_ID == synthetic.case_ids(samplecase.KIND, 1)[0]
    assert samplecase.MODALITIES == synthetic.MODALITIES[samplecase.KIND]
    model = models.read_model(BUILTIN, origin="built-in")
    assert set(samplecase.MODALITIES) == set(model.modalities)
    names = [samplecase.node_name(m) for m in samplecase.MODALITIES]
    # The panel pre-selects each volume for its own modality from these node names.
    assert roles.auto_select(names, model.card) == {m: samplecase.node_name(m) for m in model.modalities}
    files = [samplecase.file_name(m) for m in samplecase.MODALITIES]
    assert len(set(files)) == 4 and all(f.startswith(samplecase.FILE_PREFIX) and f.endswith(".nii.gz") for f in files)


def test_the_sample_data_source_arguments(tmp_path):
    args = samplecase.source_arguments(tmp_path, "/icons/x.png")
    assert set(args) <= SAMPLE_DATA_PARAMETERS and "customDownloader" not in args
    n = len(samplecase.MODALITIES)
    assert all(len(args[k]) == n for k in ("uris", "fileNames", "nodeNames", "loadFileTypes"))
    assert args["uris"] == [(tmp_path / f).resolve().as_uri() for f in args["fileNames"]]
    assert args["loadFileTypes"] == ["VolumeFile"] * n and args["thumbnailFileName"] == "/icons/x.png"
    assert samplecase.source_arguments(tmp_path)["thumbnailFileName"] is None


def test_the_plain_modules_of_this_item_import_without_numpy_torch_or_slicer():
    code = textwrap.dedent(f"""
        import sys
        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "numpy", "monai", "SimpleITK", "slicer", "qt", "vtk"):
                    raise ImportError(name + " is blocked in this test")
        sys.meta_path.insert(0, Blocked())
        sys.path.insert(0, {str(MODULE_DIR)!r})
        from CIMLSegmentationLib import requirements, samplecase
        print(requirements.choose_monai("3.12.10", "2.9.0", "2.4.6"), samplecase.node_name("flair"))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1.6.1", "BraTS-sample-000_flair"]


# --- the docs ---------------------------------------------------------------------------------

def test_the_docs_say_how_to_run_the_self_test_and_what_differs_between_slicer_versions():
    text = (ROOT / "docs" / "slicer-module.md").read_text()
    for needle in ("py_CIMLSegmentation", "Reload and Test", "CIML_SELFTEST_INSTALL", "## Known differences",
                   samplecase.SAMPLE_NAME, "slicer.packaging"):
        assert needle in text, needle
    versions = re.search(r"## Known differences(.*?)(\n## |\Z)", text, re.S).group(1)
    header = next(line for line in versions.splitlines() if line.startswith("|"))
    assert all(v in header for v in ("5.8.1", "5.10.0", "5.12.3", "5.13.0"))
    for release in requirements.MONAI_RELEASES:  # the MONAI table in the docs is the code's
        assert re.search(rf"\| {re.escape(release.version)} \| Python `{re.escape(release.python)}` \| "
                         rf"`{re.escape(release.torch)}` \| `{re.escape(release.numpy)}` \|", text), release
