"""One face, neutral and six synthesized units side by side (the picture in the README's dfe synth
section). The photo is a real person's: write the PNG outside the repository.

    python scripts/synth_figure.py /tmp/dfe_synth_units.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dfe.extraction.synth import load_photo, synthesize_face  # noqa: E402
from dfe.extraction.units import parse_units  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PANELS = [([], "neutral (d = 0)"), (["AU1=0.6", "AU2=0.6"], "AU1+AU2 brows raised"), (["AU4=0.6"], "AU4 brow lowerer"),
          (["AU6=0.6", "AU12=0.6"], "AU6+AU12 smile"), (["AU15=0.6"], "AU15 lip corners down"),
          (["AU24=0.6"], "AU24 lip press"), (["AU26/27=0.6"], "AU26 jaw drop")]
CREDIT = ("Photo: DeBruine & Jones (2017), Face Research Lab London Set, CC BY 4.0, "
          "doi:10.6084/m9.figshare.5047666.v5; warped by dfe synth at 0.6 cm")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("output", type=Path)
    ap.add_argument("--photo", type=Path, default=REPO.parent / "shared" / "faces" / "london" / "001_neutral.jpg")
    args = ap.parse_args(argv)
    rgb, face = load_photo(args.photo)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    px = face.pixels
    (x0, y0), (x1, y1) = px.min(0), px.max(0)
    pad = 0.08 * (x1 - x0)
    box = slice(max(int(y0 - pad), 0), int(y1 + pad)), slice(max(int(x0 - pad), 0), int(x1 + pad))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(2.3 * len(PANELS), 3.3))
    for ax, (specs, title) in zip(axes, PANELS):
        out = synthesize_face(bgr, face, parse_units(specs), args.photo.name).image
        ax.imshow(cv2.cvtColor(out, cv2.COLOR_BGR2RGB)[box])
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.text(0.5, 0.02, CREDIT, ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
