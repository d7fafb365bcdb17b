"""Events and dynamic features for one hour of 30 fps frames: seconds and memory.

    python bench/events.py [--minutes 60] [--model src/dfe/data/starter.dfe]

The hour is synthetic: psi made from the model's own code deformations with smoothly varying
intensities (a few codes on at a time, each for 0.2-3 s) plus noise, encoded with the model. Timed:
- encode (baseline stage, tokens + strength columns),
- events from the table (tokens + strength columns, no model: no hold),
- events with the model (strength of every used code in every frame, hold on),
- dynamic features (EventFeatures.transform) vs the static bag of tokens (the baseline) on the
  same table.
Memory: Python-allocated peak (tracemalloc) above what the inputs already hold.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.analysis.features import BagOfTokens, EventFeatures
from dfe.analysis.events import EventOptions, token_events, track_events
from dfe.tokens.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def synthetic_hour(tok: Tokenizer, minutes: float, fps: float = 30.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * fps)
    deformations = tok.code_deformations()
    coarse = np.unique(tok.encode(tok.decode(rng.integers(0, tok.codebook_size, (512, 1))))[:, 0])
    psi = np.zeros((n, deformations.shape[1]), dtype=np.float32)
    t = 0
    while t < n:  # one "action" after another, overlapping
        length = int(rng.uniform(0.2, 3.0) * fps)
        code = rng.choice(coarse)
        rise = max(1, int(length * rng.uniform(0.1, 0.5)))
        profile = np.concatenate([np.linspace(0, 1, rise), np.linspace(1, 0, length - rise)]) * rng.uniform(0.5, 1.2)
        end = min(n, t + length)
        psi[t:end] += profile[: end - t, None] * deformations[code]
        t += max(1, int(length * rng.uniform(0.3, 1.0)))
    psi += rng.normal(scale=0.02, size=psi.shape).astype(np.float32)
    return psi


def timed(fn):
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--model", type=Path, default=ROOT / "src" / "dfe" / "data" / "starter.dfe")
    args = ap.parse_args()
    tok = Tokenizer.load(args.model)
    psi = synthetic_hour(tok, args.minutes)
    n = len(psi)
    print(f"{n} frames ({args.minutes:g} min at 30 fps), psi {psi.nbytes / 2**20:.0f} MiB, model {args.model.name}")
    tokens, s_enc, m_enc = timed(lambda: tok.encode(psi))
    strength = tok.strength(psi, tokens)
    print(f"encode (baseline stage)            {s_enc:7.1f} s  {n / s_enc:9.0f} frames/s  peak +{m_enc:6.0f} MiB")
    table = pd.DataFrame({"video": "hour", "frame": np.arange(n), "timestamp": np.arange(n) / 30.0, "face_id": 0,
                          "success": 1})
    for k in range(tok.levels):
        table[f"tok_{k + 1}"] = tokens[:, k]
        table[f"strength_{k + 1}"] = strength[:, k]
    ev, s_tab, m_tab = timed(lambda: token_events(table))
    print(f"events from the table (no hold)    {s_tab:7.1f} s  {n / s_tab:9.0f} frames/s  peak +{m_tab:6.0f} MiB  "
          f"{len(ev)} events")
    t = table["timestamp"].to_numpy()
    ev_m, s_mod, m_mod = timed(lambda: track_events(
        t, tokens, strength, EventOptions(),
        lambda codes: (tok.code_strength(psi, codes), tok.code_peaks()[codes])))
    print(f"events with the model (hold)       {s_mod:7.1f} s  {n / s_mod:9.0f} frames/s  peak +{m_mod:6.0f} MiB  "
          f"{len(ev_m)} events")
    _, s_bag, m_bag = timed(lambda: BagOfTokens(tok.codebook_size).fit_transform([table]))
    feats = EventFeatures(tok.codebook_size)
    X, s_dyn, m_dyn = timed(lambda: feats.fit_transform([table]))
    print(f"static bag of tokens (baseline)    {s_bag:7.1f} s  {n / s_bag:9.0f} frames/s  peak +{m_bag:6.0f} MiB")
    print(f"dynamic features (fit_transform)   {s_dyn:7.1f} s  {n / s_dyn:9.0f} frames/s  peak +{m_dyn:6.0f} MiB  "
          f"{X.shape[1]} features kept of {6 * tok.codebook_size + 2 * tok.codebook_size ** 2}")
    print(f"dynamic / static time: {s_dyn / s_bag:.0f}x; events with the model / encode: {s_mod / s_enc:.2f}x")


if __name__ == "__main__":
    main()
