#!/usr/bin/env bash
# One command on a GPU machine: the test suite (its GPU tests run only where a GPU is), then
# `diffwave bench` on every CUDA backend at 1, 10 and 60 s, batch 1 and 8, lmnt's loop on the
# GPU in the same run. Everything lands in the folder given as first argument:
#
#   nvidia-smi.txt, environment.txt          the machine
#   tests.log, tests.xml                     pytest output and JUnit XML (skips listed with reasons)
#   bench-cuda.txt / .json / .png            the table, the diffwave-bench/1 rows, the plot
#
# usage: benchmarks/gpu.sh RESULTS_DIR [diffwave bench options, e.g. --checkpoint runs/ljs --engine build/model.plan]
#
# Without --checkpoint/--onnx the rows run a random-weight base model (speed does not depend on
# the weights). With --engine the TensorRT rows are added. Environment: PYTHON (default python),
# TESTS (pytest arguments, default "tests"; TESTS=skip skips them), SECONDS_LIST, BATCHES, REPEATS.
set -uo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 RESULTS_DIR [diffwave bench options]" >&2
  exit 2
fi
out=$1
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python}
seconds=${SECONDS_LIST:-1,10,60}
batches=${BATCHES:-1,8}
repeats=${REPEATS:-5}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
cd "$repo" || exit 1

if ! nvidia-smi >"$out/nvidia-smi.txt" 2>&1; then
  echo "error: nvidia-smi failed (see $out/nvidia-smi.txt): this script is for a machine with an NVIDIA GPU" >&2
  exit 3
fi
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: PyTorch sees no CUDA GPU ($python -c 'import torch; print(torch.version.cuda)'); install a CUDA build of torch" >&2
  exit 3
fi
{
  "$python" -c "import platform, torch; print('python', platform.python_version()); print('torch', torch.__version__, 'cuda', torch.version.cuda); print('gpu', torch.cuda.get_device_name())"
  "$python" -m pip list 2>/dev/null | grep -Ei '^(onnxruntime|onnxruntime-gpu|tensorrt|tensorrt-rtx|torch|numpy) '
} >"$out/environment.txt" 2>&1

status=0
tests=${TESTS:-tests}
if [[ "$tests" != skip ]]; then
  echo "== tests ($tests) -> $out/tests.log"
  # shellcheck disable=SC2086  # TESTS is a list of pytest arguments
  "$python" -m pytest $tests -ra --junitxml="$out/tests.xml" 2>&1 | tee "$out/tests.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

backends=reference-cuda,pytorch-cuda,pytorch-cuda-graphs,onnxruntime-cuda
for arg in "$@"; do
  [[ "$arg" == --engine* ]] && backends+=",tensorrt,tensorrt-graphs"
done
echo "== diffwave bench ($backends; ${seconds} s; batch ${batches}) -> $out/bench-cuda.*"
"$python" -m diffwave bench --backends "$backends" --seconds "$seconds" --batch "$batches" --repeats "$repeats" \
  --json "$out/bench-cuda.json" --plot "$out/bench-cuda.png" "$@" 2>&1 | tee "$out/bench-cuda.txt"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

echo "results in $out (exit $status)"
exit $status
