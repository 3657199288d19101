"""The benchmark result as a plain-text table (stdout) or Markdown (for the README), and the
per-core targets it is judged against."""

from __future__ import annotations

from typing import Any

# (description, where to look, comparison, threshold, shown as): per core (at 1 worker) unless said.
TARGETS = (
    ("SightX >= 5x naive PIL per core", ("shard", "sightx_ratio", "naive-pil", "1"), ">=", 5.0, "ratio"),
    ("SightX time <= 1.3x decode floor per core", ("shard", "decode_floor_multiple", "1"), "<=", 1.3, "ratio"),
    ("SightX >= 4x img2dataset per core", ("shard", "sightx_ratio", "img2dataset", "1"), ">=", 4.0, "ratio"),
    ("SightX scaling efficiency >= 90% (2 workers >= 1.8x one)", ("shard", "scaling_efficiency", "sightx"), ">=", 0.9, "percent"),
    ("SightX stream >= ImageFolder", ("load", "sightx_ratio"), ">=", 1.0, "ratio"),
    ("split parts >= 0.95x the folder, 1 worker", ("sources", "ratio", "split parts", "1"), ">=", 0.95, "ratio"),
    ("split parts >= 0.95x the folder, N workers", ("sources", "ratio", "split parts", "top"), ">=", 0.95, "ratio"),
    ("competition zip (streamed) >= 0.9x the folder, N workers", ("sources", "ratio", "competition zip", "top"), ">=", 0.9, "ratio"),
    ("serve: N clients >= 1.5x one client (first model)", ("serve", "headline_clients_gain"), ">=", 1.5, "ratio"),
    # Runtimes (last model compared, ResNet50 at 512 px by default): the model call at batch 1 against eager PyTorch.
    ("serve: fastest float runtime >= 2x eager PyTorch, batch 1", ("serve", "runtime_targets", "float", "x_eager"), ">=", 2.0, "ratio"),
    ("serve: its grades = eager's on >= 99% of photos", ("serve", "runtime_targets", "float", "grade_agreement"), ">=", 0.99, "percent"),
    ("serve: fastest int8 runtime >= 3x eager PyTorch, batch 1", ("serve", "runtime_targets", "int8", "x_eager"), ">=", 3.0, "ratio"),
    ("serve: int8 grades = eager's on >= 98% of photos", ("serve", "runtime_targets", "int8", "grade_agreement"), ">=", 0.98, "percent"),
)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value (None when that part did not run)."""
    rows = []
    for name, path, op, threshold, shown_as in TARGETS:
        value: Any = result
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        rows.append({"target": name, "value": value, "met": met, "shown_as": shown_as})
    return rows


def render(result: dict[str, Any], markdown: bool) -> str:
    """Every section that ran, in order, with the notes a reader needs to trust the numbers."""
    parts = [_heading(result, markdown)]
    if "shard" in result:
        parts += _shard(result["shard"], markdown)
    if "load" in result:
        parts += _load(result["load"], markdown)
    if "train" in result:
        parts += _train(result["train"], markdown)
    if "sources" in result:
        parts += _sources(result["sources"], markdown)
    if "serve" in result:
        parts += _serve(result["serve"], markdown)
    parts.append(_table(["target (per core)", "measured", "met"], [_target_row(t) for t in result["targets"]], markdown))
    return "\n\n".join(parts) + "\n"


def _heading(result: dict[str, Any], markdown: bool) -> str:
    m, o = result["machine"], result["options"]
    runs = f"median of {o['reps']} repetition(s)" + (" after a warm-up" if o["warmup"] else ", no warm-up") + ", (min-max)"
    line = f"sightx-bench on {m['cpus']} CPU core(s), {m['platform']}, Python {m['python']}; {runs}; {result['elapsed_s']} s in all"
    if m["load_average_start"] is not None:
        line += f"; load average {m['load_average_start']:g} at start, {m['load_average_end']:g} at end"
    if o["quick"]:
        line += "; --quick: smoke-test sizes, the numbers mean nothing"
    return ("### " if markdown else "") + line


def _rate(fig: dict[str, float]) -> str:
    return f"{fig['median']:g} ({fig['min']:g}-{fig['max']:g})"


def _shard(s: dict[str, Any], markdown: bool) -> list[str]:
    inp = s["input"]
    counts = s["worker_counts"]
    top = counts[-1]
    kind = "synthetic, EyePACS camera mix" if inp["synthetic"] else "from --input"
    title = (
        f"shard: {inp['images']} full-resolution images ({kind}), {inp['mb']} MB -> {s['recipe']['size']} px q{s['recipe']['quality']}; "
        f"images/s in steady state (start-up, timed on {inp['startup_images']} image(s), excluded), "
        "each repetition a fresh process, the engines taking turns; "
        "shard size "
        + " / ".join(f"{v} at {w} w" for w, v in s["shard_size"].items())
        + " (SightX: "
        + " / ".join(f"{v}" for v in s["sightx_shard_size"].values())
        + ", eight shards per worker: its unit of work)"
    )
    headers = (
        ["engine"]
        + [f"images/s, {w} worker(s)" for w in counts]
        + [
            f"MB/s ({top} w)",
            "scaling",
            "SightX x (" + " / ".join(f"{w} w" for w in counts) + ")",
            "start-up s",
            "peak RSS MB",
            "retina/side",
            "output",
        ]
    )
    rows = []
    for name, e in s["engines"].items():
        if "error" in e:
            rows.append([e["label"], f"not available: {e['error']}"] + [""] * (len(headers) - 2))
            continue
        runs = [e["runs"][str(w)] for w in counts]
        ratio = s["sightx_ratio"].get(name, {})
        rows.append(
            [e["label"]]
            + [_rate(r["images_per_s"]) for r in runs]
            + [
                f"{runs[-1]['mb_per_s']:g}",
                f"{s['scaling_efficiency'][name]:.0%}" if top > 1 else "-",
                " / ".join(f"{ratio[str(w)]:g}" for w in counts) if ratio and name != "sightx" else "-",
                f"{runs[-1]['startup_s']:g}",
                f"{max(r['peak_rss_mb'] for r in runs):g}",
                "-" if runs[-1]["field_fill"] is None else f"{runs[-1]['field_fill']:g}",
                e["output"],
            ]
        )
    notes = [
        f"scaling = images/s at {top} workers / ({top} x images/s at 1); "
        "retina/side = median width of the visible retina over the output side (resolution spent on the eye).",
    ]
    floor = s["decode_floor_multiple"]
    if floor:
        times = " / ".join(f"{v:g}x at {w} w" for w, v in floor.items())
        notes.append(f"SightX time per image = {times} the decode-only floor (DCT-scaled decode alone).")
    parts = [_title(title, markdown), _table(headers, rows, markdown), _notes(notes, markdown)]
    if "steps_ms" in s["breakdown"]:
        parts += _breakdown(s["breakdown"], markdown)
    p = s["projection"]
    proj = [[s["engines"][e]["label"], _hours(h["2"]), _hours(h["10"])] for e, h in p["hours"].items() if e != "decode-floor"]
    parts += [
        _title(f"projection for the full {p['images']:,}-image EyePACS set ({p['basis']})", markdown),
        _table(["engine", "2 workers", "10 workers"], proj, markdown),
    ]
    return parts + (_dask(s["dask"], markdown) if "dask" in s else [])


def _dask(d: dict[str, Any], markdown: bool) -> list[str]:
    """Dask's overhead against the pool, the per-core rate, and the cluster it projects to with its filesystem bound."""
    if "error" in d:
        return [_notes([f"Dask figures not available: {d['error']}"], markdown)]
    workers = list(d["overhead_per_image"])
    rows = [[f"{w} worker(s)", f"{d['overhead_per_image'][w]:+.1%}", f"{d['images_per_s_per_core'][w]:g}"] for w in workers]
    p = d["projection"]
    cluster = [[w, f"{c['images_per_s']:g}", f"{c['read_mb_per_s']:g}", f"{c['eyepacs_minutes']:g}"] for w, c in p["workers"].items()]
    notes = [
        "overhead per image = Dask's time per image / the pool's - 1, at the same worker count on the same files "
        "(a few images per shard here; a real set has hundreds, over which Dask's per-task cost spreads).",
        f"every image is read once from the shared filesystem: {d['input_mb_per_image']:g} MB per image, "
        f"{d['read_mb_per_s_per_core']:g} MB/s per worker core; a filesystem serving 1 GB/s bounds a cluster at "
        f"{d['images_per_s_per_gb_s']:g} images/s whatever its size.",
    ]
    return [
        _title("Dask (LocalCluster, one single-threaded worker process per core) against the process pool", markdown),
        _table(["", "overhead per image", "images/s per worker core"], rows, markdown),
        _title(f"cluster projection ({p['basis']}, scaling {d['scaling_efficiency']:.0%})", markdown),
        _table(["worker cores", "images/s", "filesystem read MB/s", "EyePACS minutes"], cluster, markdown),
        _notes(notes, markdown),
    ]


def _breakdown(b: dict[str, Any], markdown: bool) -> list[str]:
    """Each step's ms per image and its share of the profiled engine run."""
    rows = [[step, f"{ms:.2f}", f"{ms / b['total_ms']:.0%}"] for step, ms in b["steps_ms"].items()]
    rows.append(["total (profiled, so a little slower than above)", f"{b['total_ms']:.2f}", "100%"])
    title = "where SightX's time goes: cProfile of one 1-worker engine run on the same files"
    return [_title(title, markdown), _table(["step", "ms/image", "share"], rows, markdown)]


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def _load(s: dict[str, Any], markdown: bool) -> list[str]:
    title = (
        f"load: {s['samples']} samples ({s['distinct_images']} distinct SightX-preprocessed images) -> training augmentation at "
        f"{s['image_size']} px, batch {s['batch_size']}, {s['workers']} DataLoader worker(s), class-balanced sampling"
    )
    rows = []
    for name, p in s["pipelines"].items():
        if "error" in p:
            rows.append([p["label"], f"failed: {p['error']}", "", ""])
            continue
        ratio = f"{s['sightx_ratio']:g}" if "sightx_ratio" in s else "-"
        rows.append([p["label"], _rate(p["images_per_s"]), "1" if name == "sightx" else ratio, f"{p['peak_rss_mb']:g}"])
    return [_title(title, markdown), _table(["pipeline", "images/s", "SightX x", "peak RSS MB"], rows, markdown)]


def _train(s: dict[str, Any], markdown: bool) -> list[str]:
    title = f"train: {s['arch']} at {s['image_size']} px, batch {s['batch_size']}, forward + backward + AdamW step on fixed batches"
    if "error" in s:
        return [_title(title, markdown), f"failed: {s['error']}"]
    keeps = s.get("loader_over_model")
    verdict = "-" if keeps is None else ("keeps up" if keeps >= 1 else "loader-bound")
    loader = "-" if keeps is None else f"{s['loader_images_per_s']:g}"
    row = [
        f"{s['device']} (amp {s['amp']}, {s['threads']} threads)",
        _rate(s["images_per_s"]),
        loader,
        "-" if keeps is None else f"{keeps:g}",
        verdict,
        f"{s['peak_rss_mb']:g}",
    ]
    notes = ["loader/model >= 1: the stream feeds the model fast enough. On a CPU device both share the cores: the real margin is smaller."]
    return [
        _title(title, markdown),
        _table(["device", "model images/s", "loader images/s", "loader/model", "verdict", "peak RSS MB"], [row], markdown),
        _notes(notes, markdown),
    ]


def _sources(s: dict[str, Any], markdown: bool) -> list[str]:
    inp, counts = s["input"], s["worker_counts"]
    top = counts[-1]
    title = (
        f"sources: the same {inp['images']} images ({inp['mb']} MB) from each form of the download -> {s['recipe']['size']} px; "
        f"images/s in steady state (start-up, timed on {inp['startup_images']} image(s) in the same kind of archive, excluded), "
        "each repetition a fresh process, the sources taking turns"
    )
    headers = (
        ["source"]
        + [f"images/s, {w} worker(s)" for w in counts]
        + [
            "x folder (" + " / ".join(f"{w} w" for w in counts) + ")",
            f"input MB/s ({top} w)",
            "reader MB/s (read only)",
            "start-up s",
            "same bytes",
        ]
    )
    rows = []
    for name, row in s["sources"].items():
        runs = [row["runs"][str(w)] for w in counts]
        rows.append(
            [name]
            + [_rate(r["images_per_s"]) for r in runs]
            + [
                " / ".join(f"{s['ratio'][name][str(w)]:g}" for w in counts),
                f"{runs[-1]['mb_per_s']:g}",
                f"{runs[-1]['read_mb_per_s']:g}",
                f"{runs[-1]['startup_s']:g}",
                "yes" if row["same_bytes_as_folder"] else "NO",
            ]
        )
    d = s["download"]
    user = [
        [
            "unzip the outer zip, join the parts, extract, then shard",
            f"{_rate(d['unpack_then_shard_s'])} (unpacking {d['unpack_s']['median']:g})",
            f"{d['unpacked_extra_mb']:g} MB ({d['unpacked_extra_x_download']:g}x the download, nothing deleted on the way)",
        ],
        ["sightx-shard straight from the zip", _rate(d["direct_s"]), "none (outputs only)"],
    ]
    notes = [
        "reader MB/s = image bytes delivered by the source alone (listing and reading, no decoding), one process.",
        "same bytes = shards, manifest (less timings) and rejects.csv identical to the folder's (same shard size), every repetition.",
    ]
    return [
        _title(title, markdown),
        _table(headers, rows, markdown),
        _notes(notes, markdown),
        _title(
            f"from the {d['download_mb']:g} MB download, {d['workers']} worker(s), end to end (start-up included, as a user feels it)",
            markdown,
        ),
        _table(["path", "seconds", "extra disk"], user, markdown),
    ]


def _serve(s: dict[str, Any], markdown: bool) -> list[str]:
    p, n = s["photo"], s["clients"]
    trained = [m.get("trained", False) for m in s["models"].values() if "error" not in m]
    models = "trained checkpoints, as named" if trained and all(trained) else "untrained checkpoints of each shape, built in the run"
    if any(trained) and not all(trained):
        models = "untrained checkpoints of each shape built in the run, and the trained ones named"
    title = (
        f"serve: the real sightx-serve process on 127.0.0.1 (--device {s['device']}), one {p['width']}x{p['height']} synthetic photo "
        f"({p['mb']:g} MB) per request as a raw JPEG body; {models}"
    )
    headers = [
        "model",
        "batch tuned to (model ms per photo, by batch size)",
        "1 client: p50 / p95 ms",
        "1 client photos/s",
        f"{n} clients photos/s (x 1 client)",
        f"{n} clients: p50 / p95 ms, mean batch",
        f"{n} clients, --max-batch 1: photos/s",
        "micro-batching x",
        "server RSS MB: early -> end (requests)",
        "peak RSS MB",
    ]
    rows = []
    for spec, m in s["models"].items():
        if "error" in m:
            rows.append([spec, f"failed: {m['error']}"] + [""] * (len(headers) - 2))
            continue
        one, many, unbatched, mem = m["one_client"], m["n_clients"], m["n_clients_max_batch_1"], m["memory"]
        end = f"{mem['end']['rss_mb']:g} ({mem['end']['requests']}{', time cap' if mem['stopped_by_time'] else ''})"
        rows.append(
            [
                f"{m['arch']} at {m['image_size']} px, {m['field']} px fields",
                f"{m['tuned_batch']} ({', '.join(f'{k}: {v:g}' for k, v in m['batch_ms_per_photo'].items())})",
                f"{one['p50_ms']:g} / {one['p95_ms']:g}",
                f"{one['photos_per_s']:g}",
                f"{many['photos_per_s']:g} ({m['clients_gain']:g}x)",
                f"{many['p50_ms']:g} / {many['p95_ms']:g}, {many['mean_batch']:g}",
                f"{unbatched['photos_per_s']:g}",
                f"{m['batching_gain']:g}",
                f"{mem['early']['rss_mb']:g} ({mem['early']['requests']}) -> {end}: {mem['growth_mb']:+g}",
                "-" if mem["peak_rss_mb"] is None else f"{mem['peak_rss_mb']:g}",
            ]
        )
    notes = [
        "batch tuned to = the batch size the server chose at start (sightx-serve --tune-batch, the default): the largest,"
        " up to --max-batch 8, within 10% of the fastest per photo.",
        "micro-batching x = photos/s at the same clients with --max-batch 8 (tuned) over --max-batch 1 (a server each).",
        "the clients run on the same machine as the server and take some of its CPU.",
    ]
    out = [_title(title, markdown), _table(headers, rows, markdown), _notes(notes, markdown)]
    if any(m.get("runtimes") for m in s["models"].values()):
        from sightx.bench.runtimes import rows as runtime_rows

        r_headers, r_rows, r_notes = runtime_rows(s)
        out += [_title("serve: runtimes, against eager PyTorch in the same run", markdown), _table(r_headers, r_rows, markdown)]
        out.append(_notes(r_notes, markdown))
    return out + _hostile(s.get("hostile"), markdown)


def _hostile(h: dict[str, Any] | None, markdown: bool) -> list[str]:
    if not h:
        return []
    if "error" in h:
        return [_notes([f"hostile clients: failed: {h['error']}"], markdown)]
    where = "each from its own loopback address" if h["distinct_addresses"] else "all from 127.0.0.1 (--max-per-client raised)"
    rows = [
        [label, f"{h[key]['p50_ms']:g}", f"{h[key]['p95_ms']:g}", f"{h[key]['max_ms']:g}"]
        for key, label in (
            ("alone", "alone"),
            ("with_slow_clients", f"{h['slow_clients']} slow clients holding connections"),
            ("with_slow_clients_and_a_slow_photo", "the same, and a 20 MP PNG decoding all the while"),
        )
    ]
    b = h["bombs"]
    bomb = [
        [
            f"{b['requests']} requests of {b['photos_per_request']} {b['photo_mp']} MP speckled PNGs from {b['clients']} clients",
            f"{b['burst_s']:g} s, status {', '.join(map(str, b['statuses']))}",
            f"{b['rss_mb_before']:g} -> {b['rss_mb_peak']:g} -> {b['rss_mb_after']:g} ({b['kept_mb']:+g})",
        ],
        [
            f"1 request of {b['over_limit']['photos']} {b['over_limit']['photo_mp']} MP speckled PNGs",
            f"{b['over_limit']['ms']:g} ms, status {b['over_limit']['status']}",
            "",
        ],
    ]
    return [
        _title(f"serve, hostile clients: a normal client's latency (ms) while slow clients ({where}) send a byte a second", markdown),
        _table(["normal client", "p50", "p95", "max"], rows, markdown),
        _title("serve, a burst of decompression bombs: server RSS MB before -> peak -> after 1.5 s idle", markdown),
        _table(["burst", "took", "RSS MB"], bomb, markdown),
    ]


def _target_row(t: dict[str, Any]) -> list[str]:
    if t["value"] is None:
        value = "-"
    else:
        value = f"{t['value']:.0%}" if t["shown_as"] == "percent" else f"{t['value']:g}x"
    met = "not measured" if t["met"] is None else ("yes" if t["met"] else "NO")
    return [t["target"], value, met]


def _title(text: str, markdown: bool) -> str:
    return f"**{text}**" if markdown else text


def _notes(lines: list[str], markdown: bool) -> str:
    return "\n".join(("- " if markdown else "  ") + line for line in lines)


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [headers, ["-" * w for w in widths], *rows])
