#!/usr/bin/env bash
# LeRobot's own tests for its streaming encoder and depth path, run with ffstream's
# drop-in installed, plus the checks that need LeRobot itself (its option mapping, its
# depth codes, a recorded dataset read back frame for frame).
#
#   bash tools/lerobot-check.sh LEROBOT_CHECKOUT
#
# LeRobot needs Python >= 3.12 and torch (a few GB), so this builds its own venv
# ($LEROBOT_VENV, default .lerobot-venv) and stays out of the default test command.
# $PYTHON312 picks the interpreter (default: the newest pyenv 3.12).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "${1:?usage: bash tools/lerobot-check.sh LEROBOT_CHECKOUT}" && pwd)
venv=${LEROBOT_VENV:-$here/.lerobot-venv}
py=${PYTHON312:-$(ls -d "$(pyenv root)"/versions/3.12.*/bin/python 2>/dev/null | sort -V | tail -1)}
if [ ! -x "$venv/bin/python" ]; then
    [ -x "$py" ] || { echo "no Python 3.12 found: set PYTHON312" >&2; exit 2; }
    "$py" -m venv "$venv"
fi
"$venv/bin/pip" install -q -e "$src[dataset]" pytest
"$venv/bin/pip" install -q -e "$here[static]"
export PYTHONPATH="$here/tools/lerobot_check${PYTHONPATH:+:$PYTHONPATH}"
cd "$src"
echo "== LeRobot's tests, with ffstream's StreamingVideoEncoder installed"
"$venv/bin/python" -m pytest -p ffstream_lerobot_plugin -q \
    tests/datasets/test_streaming_video_encoder.py tests/datasets/test_depth.py
echo "== the docs' LeRobot examples"
(cd "$here" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_docs.py -k need_another)
echo "== ffstream against LeRobot itself"
"$venv/bin/python" -m pytest -p ffstream_lerobot_plugin -q -p no:cacheprovider \
    "$here/tools/lerobot_check/test_against_lerobot.py"
