#!/usr/bin/env bash
# The checks that need a GPU, in one run (see docs/reliability.md, "On a GPU").
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
#
# 1. The CUDA tests of the suite (skipped on machines without CUDA): data parallelism on CUDA
#    (two gloo ranks sharing a GPU, one NCCL rank with every collective forced on, two NCCL ranks
#    where there are two GPUs), the row-sparse step on CUDA (eager and compiled), bf16 autocast on
#    CUDA, the loaders' device copies.
# 2. The whole suite on that machine (its torch build, CUDA visible), in parallel when
#    pytest-xdist is installed, to catch defaults that change when CUDA is present.
# A machine without a package index: put an optree wheel in .gpu/whl and the GroupLens ml-100k
# folder in .gpu/data/ml-100k; both are picked up.
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu_checks}}
mkdir -p "$out"
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
[ -d .gpu/data/ml-100k ] && export TORCHRS_FN_ML100K=$PWD/.gpu/data/ml-100k
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version(), 'gpus', torch.cuda.device_count())"
python3 -m pytest -q -p no:cacheprovider -rs \
  tests/test_train/test_distributed.py \
  "tests/test_optim/test_sparse.py::test_sparse_step_on_cuda_equals_dense_step_on_cpu" \
  "tests/test_train/test_step.py::test_bf16_precision_keeps_float32_master_weights_and_tracks_fp32" \
  tests/test_data/test_loader.py tests/test_data/test_streaming_loader.py 2>&1 | tee "$out/cuda_tests.log"
cuda_rc=$?
xdist=""
python3 -c "import xdist" 2>/dev/null && xdist="-n 12"
timeout "${SUITE_TIMEOUT:-300}" python3 -m pytest -q -p no:cacheprovider $xdist tests 2>&1 | tail -40 | tee "$out/suite.log"
echo "cuda tests rc=$cuda_rc"
