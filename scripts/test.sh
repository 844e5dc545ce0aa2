#!/usr/bin/env bash
# The README's test command: install with the test and diffusion extras (torch pinned to the CPU build), run
# the suite offline on 2 workers.
set -eu
python -m pip install -q -e '.[diffusion,test]'
HF_HUB_OFFLINE=1 python -m pytest -n 2 -q "$@"
