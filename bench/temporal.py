"""Can a code be a movement? A temporal-window tokenizer on the fast-vs-slow-onset sequences.

    python bench/temporal.py [--window 6]

An experiment, not a dfe feature (``dfe fit --temporal-window`` is not built): each frame is
replaced by the window of its last ``--window`` frames of psi (the first frames of a video repeat
its first frame), and the same shared-codebook residual VQ is fitted on those windows (a vector
kind, 48 chunks). The tokenizer is fitted on an independent draw of sequences (seed 1), so the
evaluated videos (seed 0) are unseen. Reported: grouped 5-fold macro-F1 of the static bag of
tokens (no bigrams) for per-frame tokens and for window tokens, each with the null control.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from dfe.analysis.features import BagOfTokens
from dfe.analysis.task import TaskData, cross_validate
from dfe.extraction.synthetic import event_sequences
from dfe.table import psi_array
from dfe.tokens.tokenizer import Tokenizer


def windows(psi: np.ndarray, w: int) -> np.ndarray:
    """(n, D) -> (n, w*D): each frame with the w-1 frames before it (the first frame repeated)."""
    idx = np.clip(np.arange(len(psi))[:, None] - np.arange(w - 1, -1, -1)[None], 0, None)
    return psi[idx].reshape(len(psi), -1)


def bag_f1(token_lists: list[np.ndarray], y: np.ndarray, ids: list[str], N: int) -> float:
    videos = [pd.DataFrame({**{f"tok_{k + 1}": t[:, k] for k in range(t.shape[1])}, "success": 1, "video": i})
              for t, i in zip(token_lists, ids)]
    data = TaskData(videos, ids, y, np.asarray(ids), "classification", [])
    folds, _ = cross_validate(data, N, 5, 0, progress=False, sets={"static": BagOfTokens(N, weighting="log", norm="l2")})
    return float(folds["macro_f1"].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=6)
    args = ap.parse_args()
    train, test = event_sequences(seed=1), event_sequences(seed=0)
    ids = [str(v["video"].iloc[0]) for v in test.videos]
    for w in (1, args.window):
        fit_x = np.concatenate([windows(psi_array(v), w) for v in train.videos])
        start = time.perf_counter()
        kind = {"psi_kind": "geometry"} if w == 1 else {"psi_kind": f"window{w}", "chunk": fit_x.shape[1] // 48}
        tok = Tokenizer.fit(fit_x, groups=np.repeat(np.arange(len(train.videos)), len(train.videos[0])),
                            progress=False, codebook_size=64, **kind)
        tokens = [tok.encode(windows(psi_array(v), w)) for v in test.videos]
        real = bag_f1(tokens, test.y, ids, 64)
        null = bag_f1(tokens, test.y_null, ids, 64)
        print(f"window {w} frame(s): fitted in {time.perf_counter() - start:.0f} s (held-out cosine "
              f"{tok.summary.val_cosine:.3f}); static bag macro-F1 fast vs slow onset {real:.2f}, null control {null:.2f}")


if __name__ == "__main__":
    main()
