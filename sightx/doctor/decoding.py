"""Decoding: which libjpeg-turbo decodes SightX's JPEGs and whether its SIMD code can run, the
measured DCT-scaled decode rate on a generated full-resolution photo, the shard bytes per image at
--size on that photo, and the cores and memory that decide --workers."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Iterator
from pathlib import Path

from sightx.doctor import env, system
from sightx.doctor.check import FAIL, OK, WARN, Check
from sightx.doctor.context import Context

SECTION = "decoding"
PHOTO = (3888, 2592)  # the commonest EyePACS camera
QUICK_PHOTO = (1024, 683)
WORKER_MEMORY = 400_000_000  # per shard worker: a 15 MP decode, the crop, the encode, headroom
LOADER_MEMORY = 600_000_000  # per DataLoader worker at 512 px with a shuffle buffer


def checks(ctx: Context) -> Iterator[Check]:
    yield from _decoder(ctx)
    yield _machine()


def libjpeg_turbo() -> tuple[str | None, bool]:
    """(libjpeg-turbo version, SIMD compiled in) from simplejpeg's extension module: the library is
    linked into it statically, so its own strings are the only record."""
    import simplejpeg

    version, simd = None, False
    for lib in Path(simplejpeg.__file__).parent.glob("_jpeg*"):
        blob = lib.read_bytes()
        m = re.search(rb"libjpeg-turbo version ([0-9.]+)", blob)
        version = m.group(1).decode() if m else version
        simd = simd or b"JSIMD_FORCENONE" in blob  # read only by the SIMD dispatcher
    return version, simd


def cpu_simd() -> str | None:
    """The best SIMD extension libjpeg-turbo uses on this CPU, as the OS reports it."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "NEON"
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.is_file() else []
    for flag, name in (("avx2", "AVX2"), ("sse2", "SSE2")):
        if flag in flags:
            return name
    return "SSE2" if machine in ("x86_64", "amd64") else None


def _decoder(ctx: Context) -> Iterator[Check]:
    try:
        import simplejpeg
    except Exception as e:
        yield Check(SECTION, "jpeg", FAIL, f"cannot import simplejpeg ({type(e).__name__}: {e})".splitlines()[0], env.install_fix())
        return
    version, simd_built = libjpeg_turbo()
    simd = cpu_simd()
    forced_off = os.environ.get("JSIMD_FORCENONE") == "1"
    data = {"simplejpeg": simplejpeg.__version__, "libjpeg_turbo": version, "simd_built": simd_built, "cpu_simd": simd}
    what = f"simplejpeg {simplejpeg.__version__}, libjpeg-turbo {version or '(version not found)'}"
    if forced_off:
        yield Check(
            SECTION, "jpeg", WARN, f"{what}: SIMD switched off by JSIMD_FORCENONE=1 (decodes 2-4x slower)", "unset JSIMD_FORCENONE", data
        )
    elif not simd_built or simd is None:
        yield Check(SECTION, "jpeg", WARN, f"{what}: no SIMD code for this CPU ({platform.machine()})", "", data)
    else:
        yield Check(SECTION, "jpeg", OK, f"{what}, SIMD {simd}", data=data)
    yield _rate(ctx)


def _rate(ctx: Context) -> Check:
    """Decode a generated photo at the DCT scale sightx-shard would pick, against a full decode."""
    from sightx.image import codec
    from sightx.synth.render import ImageSpec, render

    photo = QUICK_PHOTO if ctx.quick else PHOTO
    jpeg = render(ImageSpec((15, 0), 2, False, photo, 90, 0.0)).jpeg
    megapixels = photo[0] * photo[1] / 1e6
    side = ctx.size

    def best(min_size: tuple[int, int] | None, reps: int = 3) -> tuple[float, float]:
        times, scale = [], 1.0
        for _ in range(reps):
            start = time.perf_counter()
            _, scale = codec.decode(jpeg, min_size)
            times.append(time.perf_counter() - start)
        return min(times), scale

    scaled, scale = best((side, side))
    full, _ = best(None, reps=1)
    data = {
        "photo": list(photo),
        "scaled_ms": round(scaled * 1e3, 1),
        "full_ms": round(full * 1e3, 1),
        "scale": scale,
        "ms_per_megapixel": round(scaled * 1e3 / megapixels, 2),
        "images_per_s_per_core": round(1 / scaled, 1),
    }
    detail = (
        f"{photo[0]}x{photo[1]} photo ({len(jpeg) / 1e6:.2f} MB) at 1/{round(1 / scale)} for --size {side}: "
        f"{scaled * 1e3:.1f} ms ({1 / scaled:.0f} images/s per core), full decode {full * 1e3:.1f} ms"
    )
    data["shard_bytes_per_image"] = ctx.measured_bytes_per_image = shard_bytes(jpeg, ctx.size)
    if scale < 1 and scaled > 0.8 * full:
        return Check(SECTION, "decode rate", WARN, detail + ": DCT scaling is not saving time", "check the jpeg line above (SIMD?)", data)
    return Check(SECTION, "decode rate", OK, detail, data=data)


def shard_bytes(jpeg: bytes, size: int) -> int:
    """Bytes one sample of this photo takes in a shard at --size: the JPEG plus tar headers and .cls/.json."""
    from sightx.image.preprocess import PreprocessOptions, preprocess_bytes

    return len(preprocess_bytes(jpeg, PreprocessOptions(size=size)).jpeg) + 2048


def recommended_workers(n_cores: int, available: int | None) -> tuple[int, int]:
    """(sightx-shard --workers, sightx-train --workers): every core for sharding (CPU-bound, one
    process per core), one core left to the training loop, both capped by the memory they need."""
    shard = n_cores
    train = max(1, min(8, n_cores - 1))
    if available is not None:
        shard = max(1, min(shard, available // WORKER_MEMORY))
        train = max(1, min(train, available // LOADER_MEMORY))
    return shard, train


def _machine() -> Check:
    n = system.cores()
    total, available = system.memory()
    shard, train = recommended_workers(n, available)
    mem = f"{system.human(total)} RAM, {system.human(available)} available" if total and available else "memory unknown"
    data = {"cores": n, "memory_total": total, "memory_available": available, "shard_workers": shard, "train_workers": train}
    detail = f"{n} core(s), {mem}: sightx-shard --workers {shard}, sightx-train --workers {train}"
    if available is not None and available < 2 * WORKER_MEMORY:
        return Check(SECTION, "machine", WARN, detail + " (little free memory)", "close other programs, or --workers 1", data)
    return Check(SECTION, "machine", OK, detail, data=data)
