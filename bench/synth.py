"""The ceiling of dfe on synthesized facial actions: how much of a known displacement MediaPipe and
dfe's alignment see.

For every photo of a corpus from ``scripts/build_synth_corpus.py``: MediaPipe's landmarks on the
warped photo and on its real neutral source, both aligned by dfe; psi = warped - source (the
person's own neutral photo as reference, so identity plays no part) against the applied
displacement d (the photo's ``.truth`` table):

- ``cos``: cosine(psi, d); ``gain``: psi . d / |d|^2 (the share of d that psi shows along d);
- ``cos_align``: cosine(psi, d less its similarity part), the most a similarity alignment on the
  33 basis points can leave of d (``dfe.extraction.synth.alignable_part``): cos_align << 1 is the landmarker
  not following the warp, cos < cos_align is the alignment removing part of d;
- blendshapes that rise: mean change of MediaPipe's blendshapes (warped - source) above 0.05;
- control rows (d = 0): mean absolute pixel error against the source and the peak |psi| (cm).

Nothing here is fitted: the unit shapes are ICT FaceKit's, MediaPipe is pretrained, so every
person is held out. Per unit means over the corpus' people; ``failed`` counts photos the corpus
could not make (the warp would fold the mesh).

    python scripts/build_synth_corpus.py /tmp/synth_corpus --people 10 --intensities 0.6
    python bench/synth.py /tmp/synth_corpus
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.extraction.expression import align_to_canonical
from dfe.extraction.face import BLENDSHAPE_NAMES, FaceLandmarker
from dfe.extraction.io import read_image
from dfe.extraction.synth import alignable_part


def _cos(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else float("nan")


def observe(lm: FaceLandmarker, path: str | Path):
    rgb = read_image(path, max_side=1 << 30).rgb
    found = lm.detect(rgb)
    if not found:
        return None
    h, w = rgb.shape[:2]
    return align_to_canonical(found[0].landmarks, w, h).mesh, found[0].blendshapes.astype(float), rgb


def measure(corpus: Path) -> pd.DataFrame:
    index = pd.read_csv(corpus / "index.csv", keep_default_na=False)
    rows, sources = [], {}
    with FaceLandmarker("image", 1) as lm:
        for r in index.itertuples():
            row = {"condition": r.condition, "units": r.units, "person": r.person, "status": r.status}
            if r.status != "ok":
                rows.append(row)
                continue
            if r.source not in sources:
                sources[r.source] = observe(lm, r.source)
            src, seen = sources[r.source], observe(lm, corpus / r.photo)
            if src is None or seen is None:
                rows.append({**row, "status": "no face seen"})
                continue
            psi = seen[0] - src[0]
            truth = pd.read_parquet(corpus / r.truth)
            d = truth[["dx_cm", "dy_cm", "dz_cm"]].to_numpy(np.float64)
            row["delta_bs"] = seen[1] - src[1]
            if not np.abs(d).any():  # the d = 0 control
                row.update(pixel_error=float(np.abs(seen[2].astype(int) - src[2]).mean()),
                           psi_peak_cm=float(np.linalg.norm(psi, axis=1).max()))
            else:
                row.update(cos=_cos(psi, d), gain=float(psi.ravel() @ d.ravel() / (d.ravel() @ d.ravel())),
                           cos_align=_cos(psi, alignable_part(d)))
            rows.append(row)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, min_rise: float = 0.05) -> pd.DataFrame:
    out = []
    for cond, g in df.groupby("condition", sort=False):
        ok = g[g["status"] == "ok"]
        rise = np.mean(np.stack(ok["delta_bs"].to_list()), 0) if len(ok) else np.zeros(len(BLENDSHAPE_NAMES))
        top = [f"{BLENDSHAPE_NAMES[i]} +{rise[i]:.2f}" for i in np.argsort(-rise)[:3] if rise[i] > min_rise]
        item = {"condition": cond, "units": g["units"].iloc[0], "people": len(ok), "failed": len(g) - len(ok)}
        if "cos" in ok and ok["cos"].notna().any():
            item.update(cos=ok["cos"].mean(), gain=ok["gain"].mean(), cos_align=ok["cos_align"].mean())
        if "pixel_error" in ok and ok["pixel_error"].notna().any():
            item.update(pixel_error=ok["pixel_error"].mean(), psi_peak_cm=ok["psi_peak_cm"].mean())
        item["blendshapes that rise"] = ", ".join(top) or "-"
        out.append(item)
    cols = ["condition", "units", "people", "failed", "cos", "gain", "cos_align", "pixel_error", "psi_peak_cm",
            "blendshapes that rise"]
    table = pd.DataFrame(out)
    return table[[c for c in cols if c in table]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="a folder from scripts/build_synth_corpus.py")
    ap.add_argument("--json", type=Path, default=None, help="also write the per-unit table as JSON here")
    args = ap.parse_args(argv)
    df = measure(args.corpus)
    table = summary(df)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    units = table[table["condition"] != "control"]
    if "cos" in units:
        print(f"\nover {len(units)} conditions: cos median {units['cos'].median():.2f} "
              f"(range {units['cos'].min():.2f}-{units['cos'].max():.2f}), gain median {units['gain'].median():.2f}, "
              f"cos_align median {units['cos_align'].median():.2f}; {int(units['failed'].sum())} photos not made (folds)")
    if args.json:
        args.json.write_text(json.dumps(table.to_dict(orient="records"), indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
