"""The Python packages the worker needs in Slicer's Python, which are missing, and how pip may
install them without touching what Slicer or the PyTorch extension put there.

Plain Python on the standard library only, tested outside Slicer: versions are read from package
metadata, so nothing here imports torch or any package it checks. ``slicerglue.install`` asks
the user and installs what is missing.

torch comes from the PyTorch extension (the build that fits the GPU driver), numpy and SimpleITK
from Slicer itself. An unpinned ``pip install monai`` takes the newest MONAI, whose torch floor may
be above the installed torch, and pip then replaces that torch with a CPU-only wheel from PyPI.
So MONAI's version is chosen here from the installed torch, numpy and Python, and every pip call
gets a constraints file that pins the installed torch, numpy and SimpleITK: pip fails rather than
replacing them.
"""

import importlib.metadata
import platform
import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

TORCH = ("torch", ">=2.2")
MONAI = ("monai", ">=1.4")  # the floor the core is written for (pyproject.toml says the same)
PIP_REQUIREMENTS = [("safetensors", ">=0.4"), ("pyyaml", ">=6"), ("scipy", ">=1.10"), ("tqdm", ">=4.60")]
ALREADY_IN_SLICER = [("SimpleITK", ">=2.3"), ("numpy", ">=1.24")]
# Installed packages pip must never upgrade, downgrade or replace: pinned in the constraints file.
PINNED = ("torch", "torchvision", "numpy", "SimpleITK")


class MonaiRelease(NamedTuple):
    version: str
    python: str  # Requires-Python
    torch: str  # Requires-Dist: torch
    numpy: str  # Requires-Dist: numpy


# Newest first. Read from each release's wheel metadata (Requires-Python, Requires-Dist) on PyPI;
# 1.4.0 and 1.5.0 agree with setup.cfg at their tags in Project-MONAI/MONAI.
MONAI_RELEASES = (
    MonaiRelease("1.6.1", ">=3.10", ">=2.8.0", ">=1.24,<3.0"),
    MonaiRelease("1.6.0", ">=3.10", ">=2.8.0", ">=1.24,<3.0"),
    MonaiRelease("1.5.2", ">=3.9", ">=2.4.1", ">=1.24,<3.0"),
    MonaiRelease("1.5.1", ">=3.9", ">=2.4.1", ">=1.24,<3.0"),
    MonaiRelease("1.5.0", ">=3.9", ">=2.4.1,<2.7.0", ">=1.24,<3.0"),
    MonaiRelease("1.4.0", ">=3.9", ">=1.9", ">=1.24,<2.0"),
)


class DependencyError(Exception):
    """The packages cannot be put in place as things stand; the message says why, for the user.
    ``shown``: a dialog has already told the user (slicer.packaging shows its own on a failed
    pip run), so the caller logs it instead of showing a second one."""

    def __init__(self, message: str, shown: bool = False):
        super().__init__(message)
        self.shown = shown


# light-the-torch picks the torch build that fits the GPU driver (the PyTorch extension uses it
# too); it runs as a process of its own, so torch is never imported into Slicer's process.
LIGHT_THE_TORCH = "light-the-torch>=0.5"
INSTALL_TIMEOUT_S = 3600
SELFTEST_INSTALL_VARIABLE = "CIML_SELFTEST_INSTALL"


def torch_install_commands(python: str, requirement: Tuple[str, str] = TORCH) -> List[List[str]]:
    """The commands that install torch with Slicer's Python (``python``: PythonSlicer):
    light-the-torch through pip, then light-the-torch itself. Neither imports torch into Slicer,
    which would contradict "torch never loads into Slicer" and, on Windows, keep torch's DLLs
    locked until Slicer restarts."""
    return [[python, "-m", "pip", "install", LIGHT_THE_TORCH],
            [python, "-m", "light_the_torch", "install", "".join(requirement)]]


def selftest_install(testing: bool, setting: Optional[str], missing_packages: Sequence[str]) -> Tuple[str, str]:
    """What the self-test does about the worker's packages: ("ready", ""), ("install", "") or
    ("skip", reason).

    Args:
        testing: Slicer runs with --testing (CTest on an extensions build machine): installing
            gigabytes there must be asked for, as Slicer's own ``pip_ensure`` skips installs while
            testing unless told otherwise.
        setting: the CIML_SELFTEST_INSTALL environment variable ('1' installs, '0' never does;
            None: install only outside --testing, i.e. from Reload and Test, which asks first).
        missing_packages: what the worker lacks.
    """
    if not missing_packages:
        return "ready", ""
    what = f"the worker's packages are missing ({', '.join(missing_packages)})"
    if setting == "0":
        return "skip", f"{what} and {SELFTEST_INSTALL_VARIABLE}=0 forbids installing them"
    if testing and setting != "1":
        return "skip", f"{what}; under --testing they are installed only with {SELFTEST_INSTALL_VARIABLE}=1"
    return "install", ""


def version_tuple(text: str) -> Tuple[int, ...]:
    """'2.3.1+cu121' -> (2, 3, 1); enough for comparisons of release numbers (a pre-release
    counts as its release)."""
    parts = []
    for piece in re.split(r"[.+-]", text):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
        if match.group() != piece:  # '0rc1': the release number ends here
            break
    return tuple(parts)


_CLAUSE = re.compile(r"^(==|!=|>=|<=|~=|>|<)\s*([0-9][\w.+!*-]*)$")


def satisfies(version: str, spec: str) -> bool:
    """Whether ``version`` meets ``spec``, comma-separated clauses such as '>=1.24,<3.0'
    ('' meets anything). Raises ValueError for a clause it cannot read."""
    have = version_tuple(version)
    for clause in (c.strip() for c in spec.split(",")):
        if not clause:
            continue
        match = _CLAUSE.match(clause)
        if not match:
            raise ValueError(f"unsupported version specifier {clause!r}")
        op, bound = match.groups()
        if bound.endswith(".*"):  # '==1.24.*': a prefix match
            want = version_tuple(bound[:-2])
            same = have[:len(want)] + (0,) * (len(want) - len(have)) == want
            if (op == "==") != same:
                return False
            continue
        want = version_tuple(bound)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b,
              "~=": a >= b and a[:len(want) - 1] == b[:len(want) - 1]}[op]
        if not ok:
            return False
    return True


def installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_requirements(name: str) -> Tuple[List[str], str]:
    """An installed distribution's (Requires-Dist lines, Requires-Python); ([], '') if absent."""
    try:
        meta = importlib.metadata.metadata(name)
    except importlib.metadata.PackageNotFoundError:
        return [], ""
    return list(meta.get_all("Requires-Dist") or []), meta.get("Requires-Python") or ""


def missing(requirements, version_of: Callable[[str], Optional[str]] = installed_version) -> List[str]:
    """The requirements ('name>=x') not installed or installed too old."""
    result = []
    for name, spec in requirements:
        found = version_of(name)
        if found is None or not satisfies(found, spec):
            result.append(f"{name}{spec}")
    return result


_REQUIRES_DIST = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;()]*)\)?\s*(;.*)?$")


def unmet(requires_dist: Iterable[str], requires_python: str, versions: Dict[str, Optional[str]]) -> List[str]:
    """The requirements of a distribution (its Requires-Dist lines and Requires-Python) that
    the installed ``versions`` (name -> version, 'python' for Python) do not meet, as
    'torch>=2.8.0 (installed: 2.5.1)'. Only names in ``versions`` are checked; lines with an
    environment marker (extras, platforms) are optional and skipped."""
    problems = []
    checks = [("python", requires_python)]
    for line in requires_dist:
        match = _REQUIRES_DIST.match(line.strip())
        if match and not match.group(3):
            checks.append((match.group(1), match.group(2).replace(" ", "")))
    for name, spec in checks:
        key = next((k for k in versions if k.lower() == name.lower()), None)
        if key is None or not spec:
            continue
        have = versions[key]
        if have is None:
            problems.append(f"{name}{spec} (not installed)")
        elif not satisfies(have, spec):
            problems.append(f"{name}{spec} (installed: {have})")
    return problems


def _release_unmet(release: MonaiRelease, python: str, torch: str, numpy: Optional[str]) -> List[str]:
    return unmet([f"torch{release.torch}", f"numpy{release.numpy}"], release.python,
                 {"python": python, "torch": torch, "numpy": numpy})


def choose_monai(python: str, torch: str, numpy: Optional[str]) -> str:
    """The newest MONAI release whose Python, torch and numpy requirements the installed ones
    meet. Raises DependencyError, saying what to change, when none does."""
    floor = MONAI[1]
    releases = [r for r in MONAI_RELEASES if satisfies(r.version, floor)]
    for release in releases:
        if not _release_unmet(release, python, torch, numpy):
            return release.version
    # Python and numpy come with Slicer; torch is what the user can change (PyTorch Utils).
    usable = [r for r in releases if not unmet([f"numpy{r.numpy}"], r.python, {"python": python, "numpy": numpy})]
    if not usable:
        raise DependencyError(
            f"No MONAI release (monai{floor}) works with this Slicer's Python {python} and "
            f"numpy {numpy}: use a Slicer version from 5.8 to 5.13.")
    # The smallest step: the lowest torch floor among the releases that fit Python and numpy.
    lowest = min(usable, key=lambda r: version_tuple(r.torch.split(",")[0].lstrip(">=")))
    torch_floor = lowest.torch.split(",")[0]
    raise DependencyError(
        f"The installed torch {torch} is too old for MONAI here (Python {python}, numpy {numpy}): "
        f"MONAI {lowest.version} needs torch{torch_floor}. Install a newer torch in the PyTorch Utils "
        f"module (version requirement: torch{torch_floor}), restart Slicer, and try again.")


def pip_requirements(version_of: Callable[[str], Optional[str]] = installed_version,
                     python: Optional[str] = None,
                     requirements_of: Callable[[str], Tuple[List[str], str]] = installed_requirements) -> List[str]:
    """What pip must install once torch is in place: 'monai==X' (unless the installed MONAI
    already fits the installed torch, numpy and Python) and the other missing packages.
    Raises DependencyError when torch is absent or no MONAI release fits."""
    python = python or platform.python_version()
    torch, numpy = version_of("torch"), version_of("numpy")
    if torch is None:
        raise DependencyError("torch is not installed: install it with the PyTorch extension first.")
    needed = []
    monai = version_of("monai")
    requires, requires_python = requirements_of("monai") if monai else ([], "")
    if monai is None or not satisfies(monai, MONAI[1]) or \
            unmet(requires, requires_python, {"python": python, "torch": torch, "numpy": numpy}):
        needed.append("monai==" + choose_monai(python, torch, numpy))
    return needed + missing(PIP_REQUIREMENTS, version_of)


def constraints_text(version_of: Callable[[str], Optional[str]] = installed_version,
                     names: Sequence[str] = PINNED) -> str:
    """A pip constraints file that pins each installed package of ``names`` to its exact
    version (local label included, e.g. 'torch==2.5.1+cu121'), so that pip resolves against
    the installed build and never downloads another."""
    lines = [f"{name}=={version_of(name)}" for name in names if version_of(name)]
    return "".join(line + "\n" for line in lines)
