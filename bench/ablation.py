"""Ablation of the tokenizer's design choices, on the synthetic action corpus and real tables.

    python bench/ablation.py [--tables DIR] [--train 20000] [--epochs 40]

One row per setting (the default model is the baseline row): held-out reconstruction cosine,
share of dead codes, actions recovered (synthetic; a code within cosine 0.9 of an action), and
held-out cosine on real tables when --tables is given.
"""

from __future__ import annotations

import argparse
import time


from dfe.extraction.synthetic import action_corpus, action_recovery
from dfe.tokens.tokenizer import Tokenizer, codebook_stats, cosine_rows
from dfe.tokens.tables import fit_tables

SETTINGS = {
    "default (N=256, K=4, sparsity 0.1, linear)": {},
    "K=1": {"levels": 1},
    "K=2": {"levels": 2},
    "K=8": {"levels": 8},
    "N=64": {"codebook_size": 64},
    "N=1024": {"codebook_size": 1024},
    "sparsity off": {"sparsity_weight": 0.0},
    "orthogonality on (0.1)": {"orthogonal_weight": 0.1},
    "joint MLP decoder": {"decoder": "mlp"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", help="folder of extracted tables for the real-data column")
    ap.add_argument("--train", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--only", nargs="*", help="names of settings to run (default: all)")
    args = ap.parse_args()
    corpus = action_corpus(n_train=args.train)
    print("| setting | synthetic cosine | dead codes | actions recovered | real cosine | real dead codes | fit s |")
    print("|---|---|---|---|---|---|---|")
    for name, cfg in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        tok = Tokenizer.fit(corpus.train, progress=False, epochs=args.epochs, **cfg)
        tokens = tok.encode(corpus.test)
        cos = cosine_rows(tok.decode(tokens), corpus.test).mean()
        dead = codebook_stats(tok.encode(corpus.train), tok.codebook_size)["dead_code_share"]
        found = (action_recovery(tok.code_deformations(), corpus.actions) >= 0.9).sum()
        real = ("-", "-")
        if args.tables:
            rt = fit_tables([args.tables], progress=False, epochs=args.epochs, **cfg)
            real = (f"{rt.summary.val_cosine:.3f}", f"{rt.summary.dead_code_share:.0%}")
        print(f"| {name} | {cos:.3f} | {dead:.0%} | {found}/{len(corpus.actions)} | {real[0]} | {real[1]} | "
              f"{time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
