"""Run a shard plan on a process pool: resume what is finished, build the rest, account for everything.

Each finished shard is committed (fsync, rename) as soon as it is back and listed in the manifest
(rewritten atomically) within about a second, so a run killed at any point resumes from the shards
it lists (after checking their size and sha256); shards are deterministic, so the resumed output is
byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from sightx.contracts import manifest as mf
from sightx.contracts import rejects as rejects_csv
from sightx.contracts.rejects import Reject
from sightx.errors import SightXError
from sightx.image import formats
from sightx.image.preprocess import PreprocessOptions
from sightx.labels.files import label_bytes
from sightx.labels.formats import LabelSet, read_label_set
from sightx.labels.ids import image_id
from sightx.labels.kinds import GRADE, classes
from sightx.parallel.pool import default_workers
from sightx.shard import executors, lock
from sightx.shard.assembly import SPOOL_SUFFIX
from sightx.shard.committer import Committer
from sightx.shard.local import execute_local, longest_first
from sightx.shard.plan import Plan, ShardTask, make_plan
from sightx.shard.streamed import execute_streamed
from sightx.shard.task import GATES, BuildOptions, ShardResult, commit_shard, file_sha256
from sightx.sources import Member, Source, find_labels, open_source


class ShardError(SightXError):
    """A problem the user must fix (bad input, unwritable output, option clash): one line, no traceback."""


class ShardInterrupted(ShardError):
    """Ctrl-C: finished shards are kept, the rest is redone on the next run (the CLI exits 130, as a shell does)."""


@dataclass(frozen=True)
class ShardOptions:
    preprocess: PreprocessOptions = PreprocessOptions()
    shard_size: int = 1000
    val_fraction: float = 0.1
    seed: int = 0
    unlabeled: bool = False
    min_quality: tuple[tuple[str, float], ...] = ()
    labels: str | None = None
    label_format: str = "auto"
    workers: int = 1
    overwrite: bool = False
    progress: bool = True
    executor: str = "pool"  # or "dask" (an existing cluster at `scheduler`), "dask-local" (a LocalCluster of `workers`)
    scheduler: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted({name for name, _ in self.min_quality} - set(GATES))
        if unknown:
            raise ShardError(f"unknown gate {', '.join(unknown)}; choose from {', '.join(GATES)}")

    def recorded(self) -> dict[str, Any]:
        """The options that change the output, as stored in the manifest."""
        return {
            "preprocess": self.preprocess.to_dict(),
            "shard_size": self.shard_size,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "unlabeled": self.unlabeled,
            "min_quality": [list(r) for r in self.min_quality],  # --gate and --min-quality rules alike
        }


def _shard_files(out: Path) -> list[Path]:
    """Shards, and what a killed run left of them (temporary tars, stream spools)."""
    ends = (".tar", ".tar.tmp", ".tar" + SPOOL_SUFFIX)
    return sorted(p for p in out.iterdir() if p.name.split("-")[0] in mf.SPLITS and p.name.endswith(ends))


def _prepare_output(out: Path, opts: ShardOptions, held: contextlib.ExitStack, labels: str = GRADE) -> dict[str, Any] | None:
    """Create/check and lock the output folder (for `held`'s lifetime); returns the previous manifest when it can be resumed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".sightx-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ShardError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    held.enter_context(lock.hold(out))  # before anything in the folder is touched
    previous = None
    if (out / mf.MANIFEST).exists():
        try:
            previous = mf.read(out)
        except mf.ManifestError as e:
            if not opts.overwrite:
                raise ShardError(f"{e}; pass --overwrite to replace it") from None
    elif any(p.suffix == ".tar" for p in _shard_files(out)) and not opts.overwrite:
        raise ShardError(f"{out} holds shards but no {mf.MANIFEST}; pass --overwrite to replace them")
    if previous is not None and mf.labels_of(previous) != labels and not opts.overwrite:
        raise ShardError(
            f"{out} holds shards labelled with {mf.labels_of(previous)} classes, these labels are {labels} classes; "
            "pass --overwrite to rebuild, or choose another folder"
        )
    if previous is not None and previous["options"] != opts.recorded() and not opts.overwrite:
        changed = sorted(k for k in opts.recorded() if previous["options"].get(k) != opts.recorded()[k])
        raise ShardError(
            f"{out} holds shards made with other options ({', '.join(changed)} differ); "
            "pass --overwrite to rebuild, or choose another folder"
        )
    if opts.overwrite:
        for p in _shard_files(out) + [out / mf.MANIFEST, out / rejects_csv.FILE]:
            p.unlink(missing_ok=True)
        return None
    for p in _shard_files(out):
        if not p.name.endswith(".tar"):
            p.unlink()  # a shard a killed run was writing: redone below
    for name in (mf.MANIFEST, rejects_csv.FILE):
        for p in out.glob(f".{name}.*.tmp"):
            p.unlink()  # an atomic write a killed run left behind
    return previous


def _reusable(out: Path, task: ShardTask, previous: dict[str, Any] | None) -> ShardResult | None:
    """A finished shard from an earlier run, if its plan, size and hash still match."""
    if previous is None:
        return None
    rec = next((s for s in previous["shards"] if s["name"] == task.name and s.get("done")), None)
    path = out / task.name
    if rec is None or rec["digest"] != task.digest or not path.is_file() or path.stat().st_size != rec["bytes"]:
        return None
    if file_sha256(path) != rec["sha256"]:
        return None
    return ShardResult(
        rec["name"],
        rec["split"],
        rec["digest"],
        rec["count"],
        rec["grades"],
        rec["bytes"],
        rec["sha256"],
        rec["input_bytes"],
        [Reject(*r) for r in rec["rejects"]],
        0.0,
    )


def _record(task: ShardTask, result: ShardResult | None) -> dict[str, Any]:
    done = None
    if result is not None:
        done = {k: getattr(result, k) for k in ("count", "grades", "bytes", "sha256", "input_bytes")}
        done["rejects"] = result.rejects
    return mf.shard_record(task.name, task.split, task.digest, len(task.samples), done)


def _manifest(opts: ShardOptions, plan: Plan, results: dict[str, ShardResult], n_inputs: int, labels: str = GRADE) -> dict[str, Any]:
    """The deterministic part of the manifest (no timings), from the plan and the shards done so far."""
    splits = {}
    for split, planned in plan.split_counts.items():
        done = [results[t.name] for t in plan.tasks if t.split == split and t.name in results]
        grades = [sum(r.grades[g] for r in done) for g in range(len(planned))]
        splits[split] = mf.split_record(split, sum(t.split == split for t in plan.tasks), sum(r.count for r in done), grades, planned)
    return mf.document(
        options=opts.recorded(),
        shards=[_record(t, results.get(t.name)) for t in plan.tasks],
        splits=splits,
        rejects=_rejects(plan, results),
        n_inputs=n_inputs,
        labels_without_image=plan.labels_without_image,
        labels=labels,
    )


def _rejects(plan: Plan, results: dict[str, ShardResult]) -> list[Reject]:
    return plan.rejects + [r for t in plan.tasks if t.name in results for r in results[t.name].rejects]


def load_inputs(raw: Path, opts: ShardOptions) -> tuple[Source, list[Member], LabelSet | None, list[Reject]]:
    """The source at raw (folder, zip, parts, competition zip, tar), its images, the validated labels
    (None when shard-ing an unlabelled set) and the entries that are not regular files, rejected as
    `not-a-file` (never opened); every whole-archive problem is found here."""
    source = open_source(raw, opts.unlabeled)
    found = (label_bytes(Path(opts.labels)), opts.labels) if opts.labels else find_labels(source)
    labels = read_label_set(*found, opts.label_format) if found else None
    members, others = source.inventory()
    if labels is None and not opts.unlabeled:
        where = " or ".join(str(f) for f in source.label_folders())
        raise ShardError(f"no trainLabels.csv(.zip) in {where}: pass --labels PATH, or --unlabeled for a test set")
    not_files = [Reject(name, image_id(PurePosixPath(name)), "not-a-file", what) for name, what in others]
    if not members and not not_files:
        raise ShardError(f"no .jpeg/.jpg files (nor .png/.tif) under {raw}")
    return source, members, labels, not_files


def run(raw: Path, out: Path, opts: ShardOptions) -> dict[str, Any]:
    """Shard the source at raw into out/; returns the final manifest (with a `run` block of timings).
    One run per out/ at a time."""
    with contextlib.ExitStack() as held:
        return _run(raw, out, opts, held)


def _run(raw: Path, out: Path, opts: ShardOptions, held: contextlib.ExitStack) -> dict[str, Any]:
    start = time.perf_counter()
    if opts.executor != "pool":  # cluster workers start in folders of their own: relative paths would point elsewhere
        raw, out = raw.absolute(), out.absolute()
    source, members, labels, not_files = load_inputs(raw, opts)
    kind = labels.kind if labels else GRADE
    executors.preflight(source, opts.executor, opts.scheduler)
    n_inputs = len(members) + len(not_files)
    plan = make_plan(
        [m.name for m in members],
        labels.grades if labels else None,
        shard_size=opts.shard_size,
        val_fraction=opts.val_fraction,
        seed=opts.seed,
        unlabeled=opts.unlabeled,
        ungradable=labels.ungradable if labels else frozenset(),
        classes=classes(kind),
    )
    plan.rejects.extend(not_files)
    results: dict[str, ShardResult] = {}

    def record() -> None:
        mf.write(out, _manifest(opts, plan, results, n_inputs, kind))

    with _writing(out):
        previous = _prepare_output(out, opts, held, kind)
        for task in plan.tasks:
            reused = _reusable(out, task, previous)
            if reused is not None:
                results[task.name] = reused
        resumed = len(results)
        planned_names = {t.name for t in plan.tasks}
        for p in _shard_files(out):
            if p.name not in planned_names:
                p.unlink()  # left by a larger earlier plan: readers must not pick it up
        record()

    todo = [t for t in plan.tasks if t.name not in results]
    spare_core = opts.executor == "pool" and opts.workers < default_workers()
    build = BuildOptions(source, str(out), opts.preprocess, opts.min_quality, kind, read_ahead=spare_core)
    total = sum(len(t.samples) for t in todo)
    sizes = {m.name: m.size for m in members}
    bar = tqdm(total=total, unit="img", desc="shard", disable=not opts.progress, smoothing=0.05)
    rejected = 0

    def tick(done: int, were_rejected: int) -> None:
        nonlocal rejected
        rejected += were_rejected
        bar.update(done)
        if were_rejected:
            bar.set_postfix(rejects=rejected, refresh=False)

    def commit(result: ShardResult) -> None:
        commit_shard(out, result.name)
        results[result.name] = result

    def record_progress() -> None:
        """On the way out, so a resume reuses every shard finished so far."""
        try:
            record()
        except OSError:
            pass  # the run is failing anyway; shards not listed are rebuilt by a resume

    try:
        # Executors hand each result over as it arrives; the committer makes it final and listed
        # within _RECORD_EVERY_S whatever the executor does next. Closed (drained) before the
        # manifest is written below, also on Ctrl-C: every shard handed over is kept.
        with Committer(commit, record, _RECORD_EVERY_S) as committer:
            finished = committer.submit
            if opts.executor != "pool":
                scheduler = opts.scheduler if opts.executor == "dask" else None
                executors.execute_dask(longest_first(todo, sizes), build, scheduler, opts.workers, tick, finished)
            elif source.random_access:
                execute_local(todo, build, opts.workers, tick, finished, sizes)
            else:
                execute_streamed(todo, build, opts.workers, tick, finished)
    except OSError as e:  # disk full, permissions: the finished shards stay valid for a resume
        record_progress()
        raise ShardError(f"cannot write shards in {out}: {e.strerror or e}; once fixed, re-run the same command to resume") from None
    except KeyboardInterrupt:
        record_progress()
        raise ShardInterrupted(
            f"interrupted: {len(results)} of {len(plan.tasks)} shards finished in {out}; re-run the same command to resume"
        ) from None
    finally:
        bar.close()

    with _writing(out):
        rejects_csv.write(out, _rejects(plan, results))
    final = _manifest(opts, plan, results, n_inputs, kind)
    elapsed = time.perf_counter() - start
    built = [r for r in results.values() if r.seconds > 0]
    final["run"] = {
        "workers": opts.workers,
        "executor": opts.executor,
        "elapsed_s": round(elapsed, 2),
        "resumed_shards": resumed,
        "built_shards": len(built),
        "images_per_s": round(total / elapsed, 2) if elapsed else None,
        "input_mb_per_s": round(sum(r.input_bytes for r in built) / 1e6 / elapsed, 2) if elapsed else None,
        "label_format": labels.format if labels else None,
        "full_decodes": sum(formats.decodes_with_pillow(m.name) for m in members),
    }
    with _writing(out):
        mf.write(out, final)
    return final


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Writes of the engine's own (lock, manifest, rejects.csv): a disk that is full, over quota or
    read-only is one line; the shards finished so far stay valid for a resume."""
    try:
        yield
    except OSError as e:
        raise ShardError(f"cannot write shards in {out}: {e.strerror or e}; once fixed, re-run the same command to resume") from None


# The manifest is rewritten (atomically, fsynced) this long after a shard is committed, or at the
# next commit once this long has passed: a run killed at any point rebuilds at most about this
# much work on resume, and small shards do not pay a manifest write each.
_RECORD_EVERY_S = 1.0


def nothing_written(m: dict[str, Any], out: Path) -> str | None:
    """A one-line error with a hint when a run wrote no sample at all (so a command can fail), else None."""
    s = m["summary"]
    if s["written"]:
        return None
    top = max(s["rejected_by_reason"], key=s["rejected_by_reason"].get, default="")
    hint = f"see {out / rejects_csv.FILE}"
    if top == "no-label":
        example = f" (the label file names e.g. {s['labels_without_image'][0]!r})" if s["labels_without_image"] else ""
        hint = f"no image matched a label id{example}: ids are file names without extension, e.g. 10_left for 10_left.jpeg; {hint}"
    return f"nothing written: {s['rejected']} of {s['inputs']} input(s) rejected, mostly {top}; {hint}"


def format_summary(m: dict[str, Any], out: Path) -> str:
    """The end-of-run report for stdout."""
    s, r = m["summary"], m.get("run", {})
    lines = [
        f"{s['inputs']} inputs: {s['written']} written, {s['rejected']} rejected"
        + (f" ({', '.join(f'{k} {v}' for k, v in s['rejected_by_reason'].items())})" if s["rejected"] else ""),
    ]
    for split, info in m["splits"].items():
        grades = " ".join(f"{g}:{c}" for g, c in enumerate(info["grades"]))
        kind = "grades" if mf.labels_of(m) == GRADE else mf.labels_of(m)
        lines.append(
            f"  {split:5s} {info['count']:6d} samples in {info['shards']} shard(s)" + (f"  {kind} {grades}" if split != "test" else "")
        )
    if s["labels_without_image"]:
        shown = ", ".join(s["labels_without_image"][:5])
        more = len(s["labels_without_image"]) - 5
        lines.append(f"  {len(s['labels_without_image'])} label(s) without an image: {shown}" + (f" and {more} more" if more > 0 else ""))
    if r:
        lines.append(
            f"  {r['elapsed_s']}s, {r['images_per_s']} images/s, {r['input_mb_per_s']} MB/s input, "
            f"{r['workers']} worker(s); {r['resumed_shards']} shard(s) resumed, {r['built_shards']} built"
        )
    if r.get("full_decodes"):
        lines.append(
            f"  {r['full_decodes']} PNG/TIFF input(s) decoded at full size through Pillow (no DCT-scaled decode: slower than JPEG)"
        )
    lines.append(f"  manifest: {out / mf.MANIFEST}   rejects: {out / rejects_csv.FILE}")
    return "\n".join(lines)
