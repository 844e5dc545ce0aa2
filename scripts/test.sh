#!/usr/bin/env bash
# The README's test command: install with the diffusion, server, ray and test extras (torch pinned to 2.13.0, which on
# this project's machines is the CPU build), then run the suite offline on 2 workers. Extra arguments go to
# pytest (e.g. `bash scripts/test.sh -m slow`).
set -eu
python -m pip install -q -e '.[diffusion,server,ray,test]'
# reference implementations for tests/test_reference_weights.py, without their dependencies (they would pull
# torchvision and timm; the tests import only the parts they need)
python -m pip install -q --no-deps controlnet-aux==0.0.10 lpips==0.1.4
HF_HUB_OFFLINE=1 python -m pytest -n 2 -q "$@"
