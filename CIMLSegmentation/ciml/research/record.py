"""The result file every `ciml benchmark <kind>` and `ciml study` run writes: one envelope.

    {"kind": "benchmark.speed" | "benchmark.pipelines" | "benchmark.profile" | "benchmark.plans"
             | "benchmark.information" | "study",
     "command": "ciml benchmark speed --size small ...",   # the command line as typed
     "commit": "<40 hex digits>" | null,                   # the source tree's git commit
     "dirty": true | false | "unknown",                    # the package's files changed since then
     "machine": {"cpu", "cores", "threads", "torch", "python", "device", "gpu"?},
     "date": "2026-11-27T10:31:02+01:00",
     "results": {...}}                                     # the numbers, as the kind defines them

A number in the docs can then be traced to the code, the machine and the day that gave it. The
commit is that of the checkout the running ``ciml`` package lives in (``git rev-parse HEAD`` in
its folder); an installed copy outside a checkout, or a machine without git, records ``null``
and ``"unknown"`` rather than failing.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ciml.errors import CIMLError

PACKAGE = Path(__file__).resolve().parents[1]  # the `ciml` package folder
DEFAULT_FOLDER = "ciml-results"  # under the current folder, when no --out is given


def _git(args: Sequence[str], cwd: Path) -> str | None:
    """``git <args>``'s stdout in ``cwd``, or None when git is absent or fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def source_commit(package: Path = PACKAGE) -> tuple[str | None, bool | str]:
    """The commit of the checkout ``package`` belongs to, and whether the package's tracked files
    differ from it.

    Args:
        package: a folder of the source tree (default: the running ``ciml`` package).

    Returns:
        ``(commit, dirty)``: the 40-digit hash and a bool; ``(None, "unknown")`` when the folder
        is not tracked by a git checkout (an installed copy, say) or git is absent. Only the
        package's own files count: docs, tests and untracked files (result files, data) are not
        the code that ran.
    """
    # A copy installed inside some other repository (a virtual environment in a checkout) must
    # not borrow that repository's commit: the package's own files must be tracked by it.
    tracked = _git(["ls-files", "--error-unmatch", "__init__.py"], package)
    head = _git(["rev-parse", "HEAD"], package)
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", "."], package)
    if not tracked or not head or status is None:
        return None, "unknown"
    return head.strip(), bool(status.strip())


def machine(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """CPU model, cores, torch threads and version, Python, and the GPU when ``device`` is CUDA.

    Args:
        device: where the measured work ran (``"cpu"``, ``"cuda"``, ``"cuda:0"``...).
        threads: torch threads of the measured work when it ran in other processes; default
            this process's ``torch.get_num_threads()``.
    """
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": model, "cores": os.cpu_count(), "threads": threads or torch.get_num_threads(),
                            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed: ``ciml`` and its arguments, quoted for a shell."""
    return shlex.join(["ciml", *(sys.argv[1:] if argv is None else argv)])


def envelope(kind: str, results: dict[str, Any], argv: Sequence[str] | None = None, device: str = "cpu",
             threads: int | None = None) -> dict[str, Any]:
    """The result file's content (module docstring) for ``results`` of a ``kind`` run.

    Args:
        kind: ``"benchmark.<sub-command>"`` or ``"study"``.
        results: the run's numbers (JSON-ready).
        argv: the command's arguments after ``ciml`` (default ``sys.argv[1:]``).
        device, threads: see :func:`machine`.
    """
    commit, dirty = source_commit()
    return {"kind": kind, "command": command_line(argv), "commit": commit, "dirty": dirty,
            "machine": machine(device, threads),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "results": results}



def script_envelope(kind: str, results: dict[str, Any], script: str, argv: Sequence[str] | None = None,
                    device: str = "cpu") -> dict[str, Any]:
    """:func:`envelope` for a run of one of the repository's scripts: its command is
    ``python scripts/<script> ARGS`` (``argv``, default ``sys.argv[1:]``) rather than a ``ciml`` one."""
    record = envelope(kind, results, device=device)
    record["command"] = shlex.join(["python", f"scripts/{script}", *(sys.argv[1:] if argv is None else argv)])
    return record

def refuse_existing(out: str | Path | None) -> None:
    """One clear message, before any work, when ``--out`` names a file that exists."""
    if out is not None and Path(out).exists():
        raise CIMLError(f"--out {out} already exists; choose another file (a result file is never overwritten)")


def default_path(kind: str, folder: str | Path = DEFAULT_FOLDER) -> Path:
    """``folder/<kind>-<date>T<time>.json``, with ``-2``, ``-3``... when runs share a second."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    path, n = Path(folder) / f"{kind}-{stamp}.json", 2
    while path.exists():
        path, n = Path(folder) / f"{kind}-{stamp}-{n}.json", n + 1
    return path


def write_record(record: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``record`` to ``out`` (default :func:`default_path`), never over an existing file.

    The file is created exclusively, so a file that appeared during a long run is refused too.
    Returns the path written, also printed on stderr.
    """
    path = Path(out) if out is not None else default_path(record["kind"])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=2) + "\n")
    except FileExistsError:
        raise CIMLError(f"{path} already exists; choose another file (a result file is never overwritten)") from None
    print(f"result file: {path}", file=sys.stderr)
    return path


def header(record: dict[str, Any]) -> str:
    """Machine, date and source lines that head every printed table."""
    m = record["machine"]
    gpu = f", {m['gpu']}" if "gpu" in m else ""
    source = "unknown" if record["commit"] is None else record["commit"][:12] + (" + local changes" if record["dirty"] else "")
    return (f"Machine  {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), "
            f"device {m['device']}{gpu}\nDate     {record['date']}\nCommit   {source}\n")
