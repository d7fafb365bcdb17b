"""Build a corpus of facial-action photos from the 80 neutral faces of ../shared/faces.

Every unit of dfe's AU table (both sides, and each side alone for lateral units), common
combinations (AU1+AU2, AU4+AU7, AU6+AU12, AU1+AU4+AU15, AU9+AU10, AU17+AU24; AU20 and AU26/27 are
units of their own, AU25 has no ICT FaceKit shape: low AU26/27 parts the lips) at several
intensities, plus a d = 0 control per person (resampling and JPEG only). One folder per condition
(``AU12L_0.6/``, ``AU1+AU2_0.6/``, ``control/``), each written by ``dfe.runs.synth.synthesize`` with its
manifest; ``index.csv`` lists every photo with its condition, person, source and status.

The corpus holds derived photos of real people: write it OUTSIDE the repository.

    python scripts/build_synth_corpus.py /tmp/synth_corpus                      # 80 people, 0.2 0.4 0.6
    python scripts/build_synth_corpus.py /tmp/synth_corpus --people 10 --intensities 0.6
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from dfe.extraction.synth import close_landmarker
from dfe.runs.synth import synthesize
from dfe.extraction.units import ACTION_UNITS, is_bilateral

REPO = Path(__file__).resolve().parents[1]
COMBINATIONS = [("AU1", "AU2"), ("AU4", "AU7"), ("AU6", "AU12"), ("AU1", "AU4", "AU15"), ("AU9", "AU10"),
                ("AU17", "AU24")]


def conditions(intensities: list[float]) -> dict[str, list[str]]:
    """Folder name -> unit specs."""
    out: dict[str, list[str]] = {"control": []}
    for x in intensities:
        for au in ACTION_UNITS:
            for side in ("", "L", "R") if is_bilateral(au) else ("",):
                out[f"{au.replace('/', '-')}{side}_{x:g}"] = [f"{au}{side}={x:g}"]
        for combo in COMBINATIONS:
            out[f"{'+'.join(combo)}_{x:g}"] = [f"{au}={x:g}" for au in combo]
    return out


def neutral_faces(faces: Path, people: int | None) -> list[Path]:
    """The 40 London neutrals and 40 Canada faces, interleaved (a subsample keeps both sets)."""
    london = sorted((faces / "london").glob("*_neutral.jpg"))
    canada = sorted((faces / "canada").glob("*.jpg"))
    both = [p for pair in zip(london, canada) for p in pair] + london[len(canada):] + canada[len(london):]
    return both[:people] if people else both


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", type=Path, help="corpus folder, outside the repository")
    ap.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    ap.add_argument("--people", type=int, default=None, help="only the first N faces (London and Canada alternately)")
    ap.add_argument("--intensities", type=float, nargs="+", default=[0.2, 0.4, 0.6])
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    out = args.output.resolve()
    if out == REPO or REPO in out.parents:
        ap.error(f"{out} is inside the repository: write the corpus elsewhere (it holds photos of real people)")
    photos = neutral_faces(args.faces, args.people)
    if not photos:
        ap.error(f"no neutral faces under {args.faces}")
    logging.getLogger("dfe").setLevel(logging.CRITICAL)  # folds are counted below and listed in index.csv
    rows = []
    plan = conditions(args.intensities)
    for k, (name, specs) in enumerate(plan.items(), 1):
        outcomes = synthesize(photos, out / name, specs, workers=args.workers, progress=False)
        for o in outcomes:
            card = {}
            if o.status in ("ok", "skipped"):
                card = json.loads((out / name / f"{o.id}.json").read_text())
            rows.append({"condition": name, "units": " + ".join(specs) or "d=0", "person": Path(o.input).stem,
                         "source": o.input, "status": "ok" if card else "failed", "error": o.error or "",
                         "photo": f"{name}/{card['photo']}" if card else "",
                         "truth": f"{name}/{card['truth']}" if card else "",
                         "peak_cm": card.get("peak_cm"), "px_per_cm": card.get("px_per_cm")})
        failed = sum(o.status == "failed" for o in outcomes)
        print(f"[{k}/{len(plan)}] {name}: {len(outcomes) - failed} photos" + (f", {failed} failed" if failed else ""),
              file=sys.stderr)
    close_landmarker()
    index = pd.DataFrame(rows)
    index.to_csv(out / "index.csv", index=False)
    ok = (index["status"] == "ok").sum()
    print(f"{ok} photos, {len(index) - ok} failed (folds), {len(plan)} conditions x {len(photos)} people -> {out / 'index.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
