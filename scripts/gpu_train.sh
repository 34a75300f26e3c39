#!/usr/bin/env bash
# One training slice on a bare, offline machine (the lent GPU): make the espeak-ng corpus there,
# preprocess it, train for a fixed number of minutes, and leave the inference weights and the
# TensorBoard scalars in OUT. Run scripts/gpu_kit.sh here first and carry .gpukit with the tree.
#
# usage: OUT=DIR scripts/gpu_train.sh RUN_DIR MINUTES [diffwave train options, e.g. --config base.json --bf16]
#
#   OUT/weights-<step>.pt     step, params and the weights inference uses (the average when the run
#                             keeps one, then stored once under both "model" and "ema"); no optimizer
#                             state, so it is small enough to bring back (base model 10.6 MB). Ship
#                             it with scripts/ship_default_model.py.
#   OUT/events.out.tfevents.* the run's TensorBoard scalars (loss curve, held-out loss per level)
#   OUT/train.log             everything the steps printed
#   OUT/resume-<step>.pt.NN   what the next slice needs to go on (raw weights, optimizer state), cut
#                             into parts of at most PART_BYTES because a lent machine returns files
#                             of at most 16 MiB (base model: 31.7 MB, two parts)
#
# Environment: OUT (required), DEVICE (cuda; cpu for a dry run), CORPUS (/tmp/corpus), SENTENCES
# (1500, the corpus of models/README.md), PYTHON (python3), RESUME (a folder holding the parts an
# earlier slice returned; its newest step is where this slice starts when RUN_DIR has no
# checkpoint), PART_BYTES (16000000), BENCH (options of benchmarks/train_step.py: when set, that
# benchmark runs first, on DEVICE, into the log; e.g. BENCH="--config base --batch-size 16
# --crop-frames 62 --precisions bf16 --compile" asks whether --compile pays on this GPU, in about
# two minutes). RUN_DIR is resumed when it exists, so a second slice on the
# same machine continues the first; RESUME carries a run from one lent machine to the next.
# The weight average is not in the parts (it would not fit in one carry beside .gpukit): a resumed
# slice starts it again from the resumed weights, and at decay 0.999 it has forgotten that start
# a few thousand steps later, well inside one slice.
set -euo pipefail
if [[ $# -lt 2 || -z "${OUT:-}" ]]; then
  echo "usage: OUT=DIR $0 RUN_DIR MINUTES [diffwave train options]" >&2
  exit 2
fi
run=$1 minutes=$2
shift 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
corpus=${CORPUS:-/tmp/corpus}
sentences=${SENTENCES:-1500}
mkdir -p "$OUT"
log="$OUT/train.log"

kit="$repo/.gpukit"
if [[ -d "$kit" ]]; then
  export PATH="$kit/espeak/bin:$PATH"
  if ! "$python" -c "import soundfile" 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/diffwave-site "$kit"/wheels/*.whl
    export PYTHONPATH="/tmp/diffwave-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
elif ! command -v espeak-ng >/dev/null; then
  echo "error: no espeak-ng here and no .gpukit beside the scripts: run scripts/gpu_kit.sh first and carry .gpukit" >&2
  exit 3
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$repo"

if [[ -n "${RESUME:-}" && ! -e "$run/weights.pt" ]]; then
  newest=$(ls "$RESUME" 2>/dev/null | sed -n 's/^resume-\([0-9]*\)\.pt\.[0-9]*$/\1/p' | sort -n | tail -1)
  if [[ -z "$newest" ]]; then
    echo "error: $RESUME: no resume-<step>.pt.NN parts to resume from" >&2
    exit 1
  fi
  mkdir -p "$run"
  parts=$(ls "$RESUME" | grep -E "^resume-$newest\.pt\.[0-9]+$" | sort -t. -k3,3n)
  (cd "$RESUME" && cat $parts) >"$run/.weights-$newest.pt.tmp"
  mv "$run/.weights-$newest.pt.tmp" "$run/weights-$newest.pt"
  ln -s "weights-$newest.pt" "$run/weights.pt"
  echo "resuming from step $newest ($RESUME)"
fi

{
  if [[ -n "${BENCH:-}" ]]; then
    echo "== $(date -u +%FT%TZ) benchmarks/train_step.py --device $device $BENCH"
    # A failed benchmark (e.g. no compiler for --compile) must not cost the slice its training.
    "$python" benchmarks/train_step.py --device "$device" $BENCH || echo "the benchmark failed (exit $?); training goes on"
  fi
  echo "== $(date -u +%FT%TZ) corpus ($sentences sentences) -> $corpus"
  "$python" -m diffwave corpus "$corpus" --sentences "$sentences" --seed 0 --workers "$(nproc)"
  "$python" -m diffwave preprocess "$corpus/train" "$corpus/heldout"
  echo "== $(date -u +%FT%TZ) train $run for $minutes min on $device"
  "$python" -m diffwave train "$run" "$corpus/train" --valid "$corpus/heldout" --device "$device" \
    --max-minutes "$minutes" --no-progress "$@"
  echo "== $(date -u +%FT%TZ) done"
} 2>&1 | tee "$log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "error: the slice failed (see $log)" >&2; exit 1; }

"$python" - "$run" "$OUT" <<'EOF'
import io
import os
import sys
from pathlib import Path

import torch

from diffwave.checkpoint import Checkpoint, inference_checkpoint

run, out = Path(sys.argv[1]), Path(sys.argv[2])
ckpt, slim = inference_checkpoint(run)
target = out / f"weights-{ckpt.step}.pt"
torch.save(slim.to_dict(), target)
print(f"{target} ({slim.inference_label}, {target.stat().st_size / 1e6:.1f} MB)")
# What the next slice needs, in parts small enough to come back from the lent machine.
resume = Checkpoint(step=ckpt.step, model=ckpt.model, params=ckpt.params, optimizer=ckpt.optimizer, scaler=ckpt.scaler)
buffer = io.BytesIO()
torch.save(resume.to_dict(), buffer)
data, part_bytes = buffer.getvalue(), int(os.environ.get("PART_BYTES", "16000000"))
for index, start in enumerate(range(0, len(data), part_bytes)):
    (out / f"resume-{ckpt.step}.pt.{index:02d}").write_bytes(data[start:start + part_bytes])
print(f"{out}/resume-{ckpt.step}.pt.* ({len(data) / 1e6:.1f} MB in {index + 1} parts): the next slice's RESUME")
EOF
cp "$run"/events.out.tfevents.* "$OUT"/
