"""Extraction throughput: the full dfe stage vs a bare MediaPipe loop over the same frames.

    python bench/extract.py [VIDEO]

Prints frames/s for (a) decode + Face Landmarker only and (b) dfe's extract (decode + landmarker +
alignment + neutral + psi + Parquet write), their ratio, and peak memory (RSS).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "videos" / "WolfgangLanger_Pexels.mp4"


def bare_loop(path: Path) -> int:
    from dfe.extraction.face import FaceLandmarker
    from dfe.extraction.io import iter_video

    n = 0
    with FaceLandmarker("video") as lm:
        for frame in iter_video(path):
            lm.detect(frame.rgb, int(frame.timestamp * 1000))
            n += 1
    return n


def full_stage(path: Path) -> int:
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract

    with tempfile.TemporaryDirectory() as out:
        report = extract([path], out, ExtractOptions(progress=False))
        return report.results[0].frames


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    full_stage(path)  # warm-up: imports, model load
    rates = {}
    for name, fn in [("bare MediaPipe loop", bare_loop), ("dfe extract (full stage)", full_stage)]:
        t = time.perf_counter()
        n = fn(path)
        rates[name] = n / (time.perf_counter() - t)
        print(f"{name:28s} {n} frames  {rates[name]:7.1f} frames/s")
    ratio = rates["dfe extract (full stage)"] / rates["bare MediaPipe loop"]
    print(f"full stage / bare loop speed: {ratio:.2f}x (target >= 0.8x)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
