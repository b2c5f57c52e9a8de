"""The command line as a user meets it: the installed `ciml` command, errors as one line."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ciml.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _ciml_command() -> str:
    exe = Path(sys.executable).with_name("ciml")
    return str(exe) if exe.exists() else shutil.which("ciml") or pytest.skip("ciml is not installed")


def test_installed_command_inits_and_describes_a_bundle(tmp_path):
    ciml = _ciml_command()
    out = tmp_path / "shapes"
    made = subprocess.run([ciml, "init", "--preset", "shapes", "--out", str(out)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    info = subprocess.run([ciml, "info", "--model", str(out)], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "primary shapes" in info.stdout and "auxiliaries cue, echo" in info.stdout
    again = subprocess.run([ciml, "init", "--preset", "shapes", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_unexpected_errors_are_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    import ciml.cli.info as info

    def broken(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(info, "run", broken)
    assert main(["info", "--model", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "disk on fire" in err and "--debug" in err and "Traceback" not in err


def test_a_whole_process_freezes_its_imports_and_a_call_in_process_does_not(tmp_path):
    import gc

    frozen = gc.get_freeze_count()
    assert main(["init", "--preset", "shapes", "--out", str(tmp_path / "a")]) == 0
    assert gc.get_freeze_count() == frozen  # a test process keeps collecting what it frees
    code = ("import gc, sys; from ciml.cli.main import main; sys.argv = ['ciml', 'init', '--preset', 'shapes', "
            f"'--out', {str(tmp_path / 'b')!r}]; main(); print(gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 10000  # torch's and the command's imports, frozen


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as err:
        main(["info"])
    assert err.value.code == 2


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"<!-- test-command -->\s*```\w*\n(.+?)\n```", readme, re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
