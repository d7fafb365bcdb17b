"""Dictionaries at equal bits on held-out people: dfe tokens vs residual k-means vs one k-means word
vs PCA vs a blendshape ridge, for real smiles and synthesized unit photos separately (issue 25).

    python bench/dictionary.py prepare /tmp/t25            # held-out face model + tables (minutes)
    python bench/dictionary.py compare /tmp/t25 [--seeds 5] [--quantizers shape-gain rvq-vae]

Held out: the people in TEST_LONDON and TEST_CANADA. ``prepare`` builds a face model WITHOUT them
(identity from the other neutrals, expression rig from the other smiles and the videos), extracts the
shared media and the synthesized unit photos of the test people (``--synth``, a corpus written by
scripts/build_synth_corpus.py) with it. ``compare`` fits every encoding on the training people's real
frames only (optionally plus synthesized photos of training people, ``--train-synth``) and scores
reconstruction cosine of held-out psi; means over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

TEST_LONDON = [f"{i:03d}" for i in range(1, 17)]
TEST_CANADA = ["003f", "008f", "010f", "019f", "020f"]
TEST_PEOPLE = set(TEST_LONDON) | set(TEST_CANADA)


def person_of(path: Path) -> str:
    """Person id of a table: London '001_smiling' -> '001', Canada '003f', pose 'lisa', videos by name."""
    stem = path.stem.split("-")[0]  # tables of same-named photos in different folders get "-<hash>"
    if stem.startswith(("lisa", "zoom")):
        return "lisa"
    return stem.split("_")[0] if stem[:3].isdigit() else stem


def build_heldout_face_model(shared: Path, out: Path) -> Path:
    """The face model of scripts/build_face_model.py without the test people."""
    from build_face_model import CREDITS, collect_face_data, training_sets
    from dfe.extraction.identity import build_face_model

    data = collect_face_data(shared)
    canada_ids = [p.stem for p in sorted((shared / "faces" / "canada").glob("*.jpg"))]
    keep_c = [i for i, p in enumerate(canada_ids) if p not in TEST_PEOPLE]
    data.canada, data.canada_bs = data.canada[keep_c], data.canada_bs[keep_c]
    keep_l = [i for i, p in enumerate(data.persons) if p not in TEST_PEOPLE]
    data.persons = [data.persons[i] for i in keep_l]
    for name in ("london_neutral", "london_neutral_bs", "london_smiling", "london_smiling_bs"):
        setattr(data, name, getattr(data, name)[keep_l])
    model = build_face_model(**training_sets(data), meta={"built_by": "bench/dictionary.py (test people held out)",
                                                         "sources": CREDITS, "held_out": sorted(TEST_PEOPLE)})
    model.save(out)
    return out


def prepare(args) -> None:
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fm = work / "face_model_heldout.npz"
    t = time.perf_counter()
    if not fm.exists():
        build_heldout_face_model(args.shared, fm)
        print(f"face model without the test people: {time.perf_counter() - t:.0f} s", flush=True)
    opts = ExtractOptions(progress=False, face_model=str(fm), landmarks=False)
    faces = args.shared / "faces"
    extract([faces / "london", faces / "canada", faces / "pose", args.shared / "videos"], work / "tables" / "shared", opts)
    print(f"shared media extracted: {time.perf_counter() - t:.0f} s", flush=True)
    if args.synth:
        extract([args.synth], work / "tables" / "synth_test", opts)
        print(f"test unit photos extracted: {time.perf_counter() - t:.0f} s", flush=True)
    if args.train_synth:
        extract([args.train_synth], work / "tables" / "synth_train", opts)
        print(f"training unit photos extracted: {time.perf_counter() - t:.0f} s", flush=True)


def load_tables(folder: Path) -> list[dict]:
    """Every table of a folder: person, condition (the synth folder, or 'real'), psi, blendshapes."""
    from dfe.table import blendshapes_array, find_tables, psi_array, read_table

    out = []
    for path in find_tables([folder]):
        df = read_table(path)
        if "success" not in df.columns or not (df["success"] == 1).any():
            continue
        source = Path(str(df["file"].iloc[0])) if "file" in df.columns else path
        cond = source.parent.name if "synth" in folder.name else "real"
        out.append({"name": path.stem, "person": person_of(path), "condition": cond,
                    "psi": psi_array(df), "blend": blendshapes_array(df)})
    return out


def is_smile(condition: str) -> bool:
    return "AU12" in condition


def split(work: Path, train_synth: bool = False) -> dict:
    """Training frames (people not held out) and the two held-out test sets."""
    shared = load_tables(work / "tables" / "shared")
    train = [t for t in shared if t["person"] not in TEST_PEOPLE]
    if train_synth and (work / "tables" / "synth_train").is_dir():
        train += [t for t in load_tables(work / "tables" / "synth_train") if t["person"] not in TEST_PEOPLE]
    smiles = [t for t in shared if t["person"] in TEST_LONDON and t["name"].endswith("_smiling")]
    units = [t for t in load_tables(work / "tables" / "synth_test")
             if t["person"] in TEST_PEOPLE and t["condition"] != "control" and not is_smile(t["condition"])]

    def stack(ts, key):
        return np.concatenate([t[key] for t in ts]).astype(np.float32)

    return {"train": stack(train, "psi"), "train_blend": stack(train, "blend"),
            "train_people": sorted({t["person"] for t in train}),
            "tests": {"smiles": (stack(smiles, "psi"), stack(smiles, "blend")),
                      "unit photos (no AU12)": (stack(units, "psi"), stack(units, "blend"))}}


def mean_cosine(recon: np.ndarray, psi: np.ndarray) -> float:
    from dfe.tokens.tokenizer import cosine_rows

    moving = np.linalg.norm(psi, axis=1) > 1e-6
    return float(cosine_rows(recon[moving], psi[moving]).mean())


def residual_kmeans(train: np.ndarray, levels: int, n_codes: int, seed: int):
    """One k-means codebook per level on the previous levels' residuals; returns a quantize function."""
    from sklearn.cluster import KMeans

    books, r = [], train.copy()
    for _ in range(levels):
        km = KMeans(min(n_codes, len(r)), n_init=1, random_state=seed).fit(r)
        books.append(km.cluster_centers_.astype(np.float32))
        r = r - books[-1][km.labels_]

    def quantize(x):
        out, r = np.zeros_like(x), x.copy()
        for cb in books:
            idx = np.argmin((cb**2).sum(1)[None] - 2 * r @ cb.T, axis=1)
            out += cb[idx]
            r -= cb[idx]
        return out
    return quantize


def encoders(data: dict, seed: int, quantizers: list[str], bits: int, levels: int) -> dict:
    """name -> (fit seconds, reconstruct function) for every encoding at ``levels`` x ``bits`` bits."""
    from sklearn.cluster import KMeans
    from sklearn.linear_model import Ridge

    from dfe.analysis.evaluate import pca_bits
    from dfe.tokens.tokenizer import Tokenizer

    train, n = data["train"], 2**bits
    out = {}
    for q in quantizers:
        name, cfg = QUANTIZERS[q]
        t = time.perf_counter()
        tok = Tokenizer.fit(train, progress=False, seed=seed, levels=levels, codebook_size=n, **cfg)
        out[name.format(K=levels, b=bits)] = (time.perf_counter() - t, lambda x, b, tok=tok: tok.decode(tok.encode(x)))
    t = time.perf_counter()
    rkm = residual_kmeans(train, levels, n, seed)
    out[f"residual k-means ({levels} x {bits} bits)"] = (time.perf_counter() - t, lambda x, b: rkm(x))
    t = time.perf_counter()
    km = KMeans(min(n, len(train)), n_init=1, random_state=seed).fit(train)
    out[f"one k-means word ({bits} bits)"] = (time.perf_counter() - t, lambda x, b: km.cluster_centers_[km.predict(x)])
    out[f"PCA ({levels} x {bits} bits)"] = (0.0, lambda x, b: pca_bits(train, x, levels, bits))
    ridge = Ridge(alpha=1.0).fit(data["train_blend"], train)
    out["blendshape ridge (52 floats)"] = (0.0, lambda x, b: ridge.predict(b))
    return out


QUANTIZERS = {
    "shape-gain": ("dfe shape-gain tokens ({K} x {b} bits: 32 actions x 4 gains)", {"quantizer": "shape-gain", "gain_levels": 4}),
    "shape-gain-2": ("dfe shape-gain tokens ({K} x {b} bits: 64 actions x 2 gains)", {"quantizer": "shape-gain", "gain_levels": 2}),
    "rvq-vae": ("dfe rvq-vae tokens ({K} x {b} bits, transformer)", {"quantizer": "rvq-vae"}),
}


def compare(args) -> None:
    data = split(Path(args.work), args.train_synth)
    tests = data["tests"]
    print(f"training: {len(data['train'])} frames of {len(data['train_people'])} people/videos; held out: "
          + ", ".join(f"{k} {len(v[0])} frames" for k, v in tests.items()), flush=True)
    scores: dict[str, dict[str, list[float]]] = {}
    fit_s: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        qs = [q for q in args.quantizers if q != "rvq-vae" or seed < args.rvq_seeds]
        for name, (secs, fn) in encoders(data, seed, qs, args.bits, args.levels).items():
            fit_s.setdefault(name, []).append(secs)
            for test, (psi, blend) in tests.items():
                scores.setdefault(name, {}).setdefault(test, []).append(mean_cosine(fn(psi, blend), psi))
        print(f"seed {seed} done", flush=True)
    cols = list(tests)
    print("\n| encoding | " + " | ".join(f"{c} ({len(tests[c][0])})" for c in cols) + " | fit s | seeds |")
    print("|---|" + "---|" * (len(cols) + 2))
    for name, per in scores.items():
        cells = " | ".join(f"{np.mean(per[c]):.3f} ± {np.std(per[c]):.3f}" for c in cols)
        print(f"| {name} | {cells} | {np.mean(fit_s[name]):.1f} | {len(per[cols[0]])} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"scores": scores, "fit_s": fit_s}, indent=1))


def synth_train(args) -> None:
    """Unit photos of training people only (every unit, side and combination of
    scripts/build_synth_corpus.py at ``--intensities``), into WORK/synth_train."""
    from build_synth_corpus import conditions
    from dfe.extraction.synth import close_landmarker
    from dfe.runs.synth import synthesize

    faces = args.shared / "faces"
    london = [p for p in sorted((faces / "london").glob("*_neutral.jpg")) if p.stem.split("_")[0] not in TEST_PEOPLE]
    canada = [p for p in sorted((faces / "canada").glob("*.jpg")) if p.stem not in TEST_PEOPLE]
    half = args.people // 2
    photos = london[:half] + canada[: args.people - half]
    out = Path(args.work) / "synth_train"
    t = time.perf_counter()
    for name, specs in conditions(args.intensities).items():
        if name != "control":
            synthesize(photos, out / name, specs, progress=False)
    close_landmarker()
    print(f"{len(photos)} training people's unit photos: {time.perf_counter() - t:.0f} s", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("work")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    p.add_argument("--synth", type=Path, help="unit-photo corpus of the test people")
    p.add_argument("--train-synth", type=Path, help="unit-photo corpus of training people")
    p.set_defaults(fn=prepare)
    st = sub.add_parser("synth-train")
    st.add_argument("work")
    st.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    st.add_argument("--people", type=int, default=12)
    st.add_argument("--intensities", type=float, nargs="+", default=[0.3, 0.7])
    st.set_defaults(fn=synth_train)
    c = sub.add_parser("compare")
    c.add_argument("work")
    c.add_argument("--seeds", type=int, default=5)
    c.add_argument("--rvq-seeds", type=int, default=2, help="seeds for the (slow) rvq-vae fits")
    c.add_argument("--quantizers", nargs="+", default=["shape-gain", "shape-gain-2", "rvq-vae"], choices=list(QUANTIZERS))
    c.add_argument("--bits", type=int, default=7)
    c.add_argument("--levels", type=int, default=4)
    c.add_argument("--train-synth", action="store_true", help="add unit photos of training people to training")
    c.add_argument("--json")
    c.set_defaults(fn=compare)
    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
