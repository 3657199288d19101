#!/usr/bin/env bash
# The docs/evaluation.md evidence: train on the synthetic EyePACS layout, evaluate on the synthetic APTOS
# layout (another dataset's shards) with patient-level CIs, and the cost of TTA per photo. CPU only.
set -euo pipefail
W=${1:-/tmp/sightx-evidence}
PY=${PY:-python}
run() { "$PY" -c "import sys; from sightx.cli import $1 as c; sys.argv[0]='sightx-$1'; c()" "${@:2}"; }
rm -rf "$W"; mkdir -p "$W"
run synth "$W/eyepacs" --n 400 --seed 1 --workers 2 --quiet
run synth "$W/aptos-raw" --n 200 --seed 2 --archive aptos --workers 2 --quiet
run shard "$W/eyepacs/train" "$W/eyepacs-shards" --size 128 --shard-size 50 --val-fraction 0.2 --workers 2 --quiet
ls "$W/aptos-raw"
run shard "$W/aptos-raw" "$W/aptos-shards" --size 128 --shard-size 50 --val-fraction 0 --workers 2 --quiet
run train "$W/eyepacs-shards" --out "$W/run" --arch resnet18 --image-size 96 --epochs 6 --batch-size 32 --lr 1e-3 --workers 1 --quiet
for t in none flips flips+rot90; do
  run evaluate "$W/run/best.pt" "$W/aptos-shards" --out "$W/eval-aptos-$t" --tta "$t" --bootstrap 1000 --quiet --device cpu
done
run evaluate "$W/run/best.pt" "$W/eyepacs-shards" --split val --out "$W/eval-eyepacs-val" --fit-temperature "$W/run/calibrated.pt" --quiet --device cpu
run evaluate "$W/run/calibrated.pt" "$W/aptos-shards" --out "$W/eval-aptos-calibrated" --quiet --device cpu
