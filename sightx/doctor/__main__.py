"""`python -m sightx.doctor`: the doctor without click, for interpreters that lack SightX's packages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sightx.doctor import Context, diagnose, failed, report
from sightx.doctor.env import in_jupyter_kernel


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sightx-doctor", description=__doc__)
    p.add_argument("data", nargs="*", type=Path, help="folders or archives to check (Kaggle layout, zips, split parts, tar)")
    p.add_argument("--size", type=int, default=512, help="sightx-shard --size the disk estimate is for (default 512)")
    p.add_argument("--out", type=Path, default=Path("shards"), help="where the shards would go (default shards/)")
    p.add_argument("--download", action="store_true", help="a Kaggle download is planned: token problems fail")
    p.add_argument("--quick", action="store_true", help="tiny compute step and photo: seconds; the rates mean little")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    ctx = Context(data=tuple(args.data), size=args.size, out=args.out, download=args.download, quick=args.quick)
    results = diagnose(ctx)
    sys.stdout.write(report.as_json(results) if args.json else report.text(results))
    return 1 if failed(results) else 0


if __name__ == "__main__":
    code = main()
    if code and not in_jupyter_kernel():  # `%run -m sightx.doctor` in a notebook: no SystemExit banner
        sys.exit(code)
