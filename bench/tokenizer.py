"""Tokenizer throughput: encode vectors/s (batch 4096, CPU) and training time on 100k vectors.

    python bench/tokenizer.py [--train-vectors 100000]

Baselines in the same run: a plain MLP encoder + nearest-code lookup of the same size, i.e. the
cheapest possible encoder, to show what the encoder costs; and, with ``--dfe07``, the dictionary as dfe
0.4-0.7 trained and encoded it (per-level update, actions free to repeat).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from dfe.extraction.synthetic import action_corpus
from dfe.tokens.tokenizer import Tokenizer, cosine_rows


def rate(fn, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-vectors", type=int, default=100_000)
    ap.add_argument("--dfe07", action="store_true", help="also fit and time the dictionary as dfe 0.4-0.7 did")
    args = ap.parse_args()
    corpus = action_corpus(n_train=args.train_vectors, n_test=20_000)
    x = np.tile(corpus.test, (1, 1))
    runs = {"dfe tokenizer": {}}
    if args.dfe07:
        runs["dfe 0.7 dictionary (per-level, repeats)"] = {"codebook_update": "per-level", "distinct_actions": False}
    fitted = {}
    for name, knobs in runs.items():
        t = time.perf_counter()
        tok = fitted[name] = Tokenizer.fit(corpus.train, progress=True, **knobs)
        train_s = time.perf_counter() - t
        s = tok.summary
        print(f"{name}: training on {args.train_vectors} vectors: {train_s:.0f} s, {s.epochs_run} epochs (best "
              f"{s.best_epoch}), held-out cosine {cosine_rows(tok.decode(tok.encode(corpus.test)), corpus.test).mean():.3f}; "
              f"encode {rate(lambda: tok.encode(x, batch_size=4096), len(x)):,.0f} vectors/s")
    tok = fitted["dfe tokenizer"]
    enc = rate(lambda: tok.encode(x, batch_size=4096), len(x))
    mlp = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    cb = tok.model.codebook

    @torch.no_grad()
    def baseline():
        for i in range(0, len(x), 4096):
            r = mlp(torch.from_numpy(x[i : i + 4096]))
            for _ in range(tok.levels):
                idx = torch.cdist(r, cb).argmin(1)
                r = r - cb[idx]

    base = rate(baseline, len(x))
    print(f"encode (dfe tokenizer, batch 4096): {enc:,.0f} vectors/s (target >= 50,000)")
    print(f"encode (baseline MLP + RVQ lookup): {base:,.0f} vectors/s  -> dfe at {enc / base:.2f}x of baseline")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
