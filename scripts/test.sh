#!/usr/bin/env bash
# The README's test command: install with the diffusion and test extras (torch pinned to 2.13.0, which on
# this project's machines is the CPU build), then run the suite offline on 2 workers. Extra arguments go to
# pytest (e.g. `bash scripts/test.sh -m slow`).
set -eu
python -m pip install -q -e '.[diffusion,test]'
HF_HUB_OFFLINE=1 python -m pytest -n 2 -q "$@"
