#!/usr/bin/env bash
# docs/evaluation.md evidence, part 2 (after evidence_evaluate.sh, same folder): start from the EyePACS-layout
# run's best.pt as a "pretrained" backbone (no ImageNet weights can be downloaded here) and adapt it to the
# APTOS-layout set: linear probe (--freeze backbone) vs full fine-tuning, time per epoch and validation QWK.
set -euo pipefail
W=${1:-/tmp/sightx-evidence}
PY=${PY:-python}
run() { "$PY" -c "import sys; from sightx.cli import $1 as c; sys.argv[0]='sightx-$1'; c()" "${@:2}"; }
rm -rf "$W/aptos-split" "$W/probe" "$W/full"
run shard "$W/aptos-raw" "$W/aptos-split" --size 128 --shard-size 50 --val-fraction 0.3 --workers 2 --quiet
common=(--arch resnet18 --image-size 96 --epochs 4 --batch-size 32 --lr 1e-3 --workers 1 --quiet --weights "$W/run/best.pt" --balance none)
run train "$W/aptos-split" --out "$W/probe" --freeze backbone "${common[@]}"
run train "$W/aptos-split" --out "$W/full" "${common[@]}"
for r in probe full; do
  "$PY" -c "import json,sys; h=[json.loads(l) for l in open('$W/$r/metrics.jsonl')]; print('$r', 'median s/epoch', sorted(x['seconds'] for x in h)[len(h)//2], 'QWK per epoch', [x['val']['kappa'] for x in h], 'ref AUC last', h[-1]['val']['referable']['auc'])"
done
