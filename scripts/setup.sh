#!/usr/bin/env bash
# Sets up .venv with the ciml package (and the test tools with --test) on a fresh machine.
#
# torch comes first and on purpose: where no NVIDIA GPU is present a CPU build is installed
# (torch==2.13.0; set TORCH_INDEX_URL, e.g. https://download.pytorch.org/whl/cpu, where the
# package index would otherwise serve a multi-GB CUDA build). The project only asks for a
# range (torch>=2.2), which the build already in place satisfies, so nothing is reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet)

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" "torch>=2.2"
  else
    "${pip[@]}" "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
fi
"${pip[@]}" -e ".${extras}"

# The panel-rendering tests load Qt (PySide6) offscreen, which needs the system's OpenGL, EGL,
# xkbcommon and fontconfig libraries; a bare machine lacks them, and the tests then fail, not skip.
if [ -n "$extras" ] && ! .venv/bin/python -c "import PySide6.QtUiTools" >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y --no-install-recommends -qq libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 >/dev/null \
      || { apt-get update -qq && apt-get install -y --no-install-recommends -qq libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 >/dev/null; }
  fi
  .venv/bin/python -c "import PySide6.QtUiTools" \
    || { echo "setup: PySide6 cannot load Qt here; install the system packages libgl1 libegl1 libxkbcommon0 libfontconfig1" >&2; exit 1; }
fi
echo "ready: $(.venv/bin/python -c 'import ciml, torch; print("ciml", ciml.__version__, "with torch", torch.__version__)')"
