"""The .ui loads in plain Qt (PySide6, offscreen) with the CTK/MRML widgets stood in, and the
panel renders to a PNG filled with the BraTS sample model's inputs and roles."""

import os
import subprocess
import sys
from pathlib import Path

from PySide6 import QtUiTools  # noqa: F401  (scripts/setup.sh --test installs it and Qt's system libraries)

ROOT = Path(__file__).resolve().parent.parent


def test_render_module_panel(tmp_path):
    out = tmp_path / "panel.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_module_panel.py"), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 400 and height >= 800  # every section laid out, not a collapsed stub


def test_render_the_fine_tuning_section_from_a_real_runs_values(tmp_path):
    out = tmp_path / "finetune.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_module_panel.py"), "--section", "finetune",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    height = int.from_bytes(data[20:24], "big")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 200 <= height < 800  # the section alone, laid out
