"""Train once per --balance mode on the same shards and compare validation kappa (docs evidence).

usage: python tools/balance_study.py SHARDS RUNS_DIR [extra sightx-train options...]
Prints a markdown table: per mode, the best epoch's QWK, accuracy, referable sensitivity/specificity/AUC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

MODES = ("loss", "sample", "progressive", "none")


def best_row(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return max(rows, key=lambda r: r["val"]["kappa"])


def main() -> None:
    shards, runs, extra = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    train = str(Path(sys.executable).parent / "sightx-train")
    print("| --balance | best epoch | QWK | accuracy | always-0 accuracy | referable sens | referable spec | referable AUC | train img/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        out = runs / mode
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([train, str(shards), "--out", str(out), "--balance", mode, "--quiet", *extra], check=True)
        r = best_row(out)
        v, ref = r["val"], r["val"]["referable"]
        print(
            f"| {mode} | {r['epoch']} | {v['kappa']:.3f} | {v['accuracy']:.3f} | {v['baseline']['accuracy']:.3f} | "
            f"{ref['sensitivity']:.3f} | {ref['specificity']:.3f} | {ref['auc']:.3f} | {r['images_per_s']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
