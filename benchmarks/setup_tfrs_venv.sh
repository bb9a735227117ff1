#!/usr/bin/env bash
# Create the TensorFlow Recommenders virtualenv used by the side-by-side benchmark.
#
# The TFRS reference (benchmarks/tfrs_basic_retrieval.py) needs TensorFlow and must not
# share an environment with torchrs_fn, so it lives in its own virtualenv:
#
#   benchmarks/setup_tfrs_venv.sh                 # creates <repo>/.venv-tfrs
#   TFRS_VENV=/some/path benchmarks/setup_tfrs_venv.sh
#   PYTHON=python3.11 benchmarks/setup_tfrs_venv.sh   # interpreter used to create it
#
# The script is idempotent: if the virtualenv already exists and can import the pinned
# packages, it does nothing. TFRS 0.7.7 requires the Keras 2 API, so the environment must
# be used with TF_USE_LEGACY_KERAS=1 (benchmarks/compare_tfrs.py sets it for you).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TFRS_VENV:-${REPO_ROOT}/.venv-tfrs}"
PYTHON="${PYTHON:-python3}"

PACKAGES=(
  "tensorflow-cpu==2.21.0"
  "tensorflow-recommenders==0.7.7"
  "tf-keras==2.21.0"
  "pyarrow"
)

CHECK='
import tensorflow as tf, tensorflow_recommenders as tfrs, tf_keras, pyarrow
assert tf.__version__ == "2.21.0", tf.__version__
assert tf_keras.__version__ == "2.21.0", tf_keras.__version__
assert tfrs.__version__.lstrip("v") == "0.7.7", tfrs.__version__
'

venv_ok() {
  [[ -x "${VENV}/bin/python" ]] &&
    TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "${VENV}/bin/python" -c "${CHECK}" \
      >/dev/null 2>&1
}

if venv_ok; then
  echo "TFRS virtualenv already set up: ${VENV}"
  exit 0
fi

if [[ ! -x "${VENV}/bin/python" ]]; then
  echo "Creating virtualenv ${VENV} with $("${PYTHON}" --version 2>&1)"
  "${PYTHON}" -m venv "${VENV}"
fi

"${VENV}/bin/python" -m pip install --upgrade pip
"${VENV}/bin/python" -m pip install "${PACKAGES[@]}"

if ! venv_ok; then
  echo "error: ${VENV} was set up but the pinned packages do not import" >&2
  exit 1
fi
echo "TFRS virtualenv ready: ${VENV}"
echo "Use it with: TF_USE_LEGACY_KERAS=1 ${VENV}/bin/python benchmarks/tfrs_basic_retrieval.py ..."
