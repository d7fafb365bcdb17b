"""Scale: extraction on 1 vs 2 workers, compact vs dfe 0.2 tables, fitting on 1M vectors.

    python bench/scale.py [--copies 14] [--fit-vectors 1000000] [--skip-fit]

1. Extraction: the shared videos copied ``--copies`` times under distinct names (about 60-70 s of
   single-core work here), extracted with ``--workers 1`` then ``--workers 2`` (each a fresh
   ``dfe extract`` process): frames/s, their ratio, peak RSS of the largest process.
2. Tables: bytes per frame of the tables just written (compact) vs the same tables in dfe 0.2's
   layout (wide float64 Parquet), and read-back time of psi for all of them: ``read_arrays`` vs
   dfe 0.2's ``pd.read_parquet`` + ``psi_array``.
3. Fit: ``Tokenizer.fit`` on ``--fit-vectors`` synthetic 1404-d vectors for one epoch, in a fresh
   process: seconds and peak RSS; then the same with ``--max-frames`` style sampling to 200k.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def run_child(args: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB, largest single process among it and its children) of a command."""
    code = ("import resource, subprocess, sys, time; s = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:]); t = time.perf_counter() - s; "
            "print(t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds, rss_kb, rc = out.stdout.split()[-3:]
    if int(rc) != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(seconds), int(rss_kb) / 1024


def corpus(folder: Path, copies: int) -> list[Path]:
    videos = [SHARED / "videos" / n for n in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "noface_face.mov")]
    out = []
    for k in range(copies):
        for v in videos:
            dst = folder / f"{v.stem}_{k:03d}{v.suffix}"
            shutil.copyfile(v, dst)
            out.append(dst)
    return out


def extraction(work: Path, copies: int) -> Path:
    from dfe.extraction.pipeline import media_frames

    media = work / "media"
    media.mkdir()
    files = corpus(media, copies)
    frames = sum(media_frames(f) for f in files)
    rates = {}
    for workers in (1, 2):
        out = work / f"tables_w{workers}"
        seconds, rss = run_child([sys.executable, "-m", "dfe.cli", "extract", str(media), "-o", str(out),
                                  "--workers", str(workers)])
        rates[workers] = frames / seconds
        print(f"extract, {workers} worker(s): {len(files)} videos, {frames} frames in {seconds:.1f} s = "
              f"{rates[workers]:.0f} frames/s; peak RSS of the largest process {rss:.0f} MiB")
    print(f"speed-up 2 workers / 1: {rates[2] / rates[1]:.2f}x (target >= 1.7x)")
    return work / "tables_w2"


def tables(folder: Path) -> None:
    from dfe.table import psi_array, read_arrays

    paths = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    old_dir = folder.parent / "tables_old"
    old_dir.mkdir()
    frames = 0
    for p in paths:
        from dfe.table import read_table

        df = read_table(p)
        frames += len(df)
        df.to_parquet(old_dir / p.name, index=False)  # dfe 0.2 wrote exactly this
    new_bytes = sum(p.stat().st_size for p in paths)
    old_bytes = sum((old_dir / p.name).stat().st_size for p in paths)
    print(f"tables: {frames} frames; compact {new_bytes / frames:.0f} bytes/frame vs dfe 0.2 {old_bytes / frames:.0f} "
          f"({old_bytes / new_bytes:.1f}x smaller)")
    start = time.perf_counter()
    n_new = sum(len(read_arrays(p, ["psi"], successful_only=True)["psi"]) for p in paths)
    t_new = time.perf_counter() - start
    start = time.perf_counter()
    n_old = sum(len(psi_array(pd.read_parquet(old_dir / p.name))) for p in paths)
    t_old = time.perf_counter() - start
    assert n_new == n_old
    print(f"read psi back: read_arrays {n_new / t_new:,.0f} frames/s vs dfe 0.2 read_parquet + psi_array "
          f"{n_old / t_old:,.0f} frames/s ({t_old / t_new:.1f}x faster)")


FIT_CODE = """
import sys, time, resource, numpy as np
from dfe.tokens.tokenizer import Tokenizer
from dfe.tokens.tables import sample_sizes
n, keep = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
groups = np.repeat(np.arange(1000), n // 1000)
if keep < n:  # what fit_tables --max-frames keeps: a sample stratified by video
    take = sample_sizes([n // 1000] * 1000, keep)
    idx = np.concatenate([np.sort(rng.choice(n // 1000, k, replace=False)) + g * (n // 1000) for g, k in enumerate(take)])
else:
    idx = np.arange(n)
psi = np.empty((len(idx), 1404), np.float32)
for i in range(0, len(idx), 100_000):
    psi[i:i + 100_000] = rng.normal(scale=0.3, size=(min(100_000, len(idx) - i), 1404))
start = time.perf_counter()
tok = Tokenizer.fit(psi, groups=groups[idx], progress=False, epochs=1, codebook_size=256)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(psi))
"""


def fit(n: int) -> None:
    for keep in (n, min(n, 200_000)):
        out = subprocess.run([sys.executable, "-c", FIT_CODE, str(n), str(keep)], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-1500:])
            return
        seconds, rss, used = out.stdout.split()[-3:]
        print(f"fit, 1 epoch on {int(used):,} of {n:,} vectors (1404-d): {float(seconds):.0f} s, peak RSS {float(rss):,.0f} MiB "
              f"(psi alone {int(used) * 1404 * 4 / 2**20:,.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=14)
    ap.add_argument("--fit-vectors", type=int, default=1_000_000)
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--fit-only", action="store_true")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores")
    if args.fit_only:
        fit(args.fit_vectors)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = extraction(Path(tmp), args.copies)
        tables(folder)
    if not args.skip_fit:
        fit(args.fit_vectors)


if __name__ == "__main__":
    main()
