"""Dictionaries at equal bits on held-out people: dfe tokens vs residual k-means vs one k-means word
vs PCA vs a blendshape ridge, for real smiles and synthesized unit photos separately (issue 25).

    python bench/dictionary.py prepare /tmp/t25            # held-out face model + tables (minutes)
    python bench/dictionary.py compare /tmp/t25 [--seeds 5] [--quantizers shape-gain rvq-vae]
    python bench/dictionary.py recon [--bits 8]            # the same on the landmark cache (below)

Held out: the people in TEST_LONDON and TEST_CANADA. ``prepare`` builds a face model WITHOUT them
(identity from the other neutrals, expression rig from the other smiles and the videos), extracts the
shared media and the synthesized unit photos of the test people (``--synth``, a corpus written by
scripts/build_synth_corpus.py) with it. ``compare`` fits every encoding on the training people's real
frames only (optionally plus synthesized photos of training people, ``--train-synth``) and scores
reconstruction cosine of held-out psi; means over seeds. ``recon`` scores the same encodings with no
``prepare``, from the landmark cache of bench/expressions.py: the 40 London people held out of
everything (a Canada-only face model; training on Canada neutrals, Canada unit photos and the videos;
tests: their smiling photos and their non-smile unit photos, single photos).
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

from expressions import fit_psi  # noqa: E402  (bench/: psi of aligned photos through a face model)

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
    "shape-gain": ("dfe shape-gain tokens ({K} x {b} bits: 4 gains)", {"quantizer": "shape-gain", "gain_levels": 4}),
    "shape-gain-2": ("dfe shape-gain tokens ({K} x {b} bits: 2 gains)", {"quantizer": "shape-gain", "gain_levels": 2}),
    "shape-gain-per-level": ("dfe 0.7 shape-gain, per-level update ({K} x {b} bits: 4 gains)",
                             {"quantizer": "shape-gain", "gain_levels": 4, "codebook_update": "per-level",
                              "distinct_actions": False}),
    "shape-gain-repeats": ("dfe shape-gain, joint update, actions may repeat ({K} x {b} bits: 4 gains)",
                           {"quantizer": "shape-gain", "gain_levels": 4, "distinct_actions": False}),
    "rvq-vae": ("dfe rvq-vae tokens ({K} x {b} bits, transformer)", {"quantizer": "rvq-vae"}),
}


def compare(args) -> None:
    score_encoders(split(Path(args.work), args.train_synth), args)


def recon(args) -> None:
    """:func:`compare` on the landmark cache's held-out data (:func:`task_data`): the 40 London people
    out of everything, their smiling photos and their non-smile unit photos."""
    task = task_data(args.shared, args.cache)
    smiling = task["smile"]["label"] == "smiling"
    unit = ~np.isin(task["unit"]["label"], ["AU12", "AU6+AU12"])
    tests = {"London smiles": (task["smile"]["psi"][smiling], task["smile"]["blend"][smiling]),
             "London unit photos (no AU12)": (task["unit"]["psi"][unit], task["unit"]["blend"][unit])}
    tests = {k: (p[np.isfinite(p).all(1)], b[np.isfinite(p).all(1)]) for k, (p, b) in tests.items()}
    data = {"train": task["train"], "train_blend": task["train_blend"], "train_people": ["Canada", "videos"], "tests": tests}
    score_encoders(data, args)


def score_encoders(data: dict, args) -> None:
    """Reconstruction cosine of every encoding on every test set, means over seeds (a Markdown table)."""
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


def cache_frames(shared: Path, cache: Path, keep) -> dict:
    """psi (through the bundled face model, as users get it) of the shared photos and of the dfe
    synth photos in the landmark cache of scripts/build_face_model.py (every neutral face x the
    control and 28 units and sides at 0.6 cm), for the people ``keep(person)`` accepts (the 8 pose
    photos are person ``lisa``): psi (n, 1404), person and condition (``real`` or the unit) per frame."""
    from build_face_model import ANCHORS, align_data, collect_landmarks

    from dfe.extraction.identity import load_face_model

    d = collect_landmarks(shared, cache)
    a = align_data(d, ANCHORS)
    model = load_face_model()
    london = [str(p) for p in d["persons"]]
    canada = [p.stem for p in sorted((shared / "faces" / "canada").glob("*.jpg"))]
    parts: list[tuple[np.ndarray, list[str], str]] = []

    def add(aligned, bs, people, condition):
        rows = [i for i, p in enumerate(people) if keep(p)]
        if rows:
            psi = fit_psi(model, aligned[rows], bs[rows])
            parts.append((psi.reshape(len(rows), -1), [people[i] for i in rows], condition))

    add(a.london_neutral, d["london_neutral_bs"], london, "real")
    add(a.london_smiling, d["london_smiling_bs"], london, "real")
    add(a.canada, d["canada_bs"], canada, "real")
    add(a.pose, d["pose_bs"], ["lisa"] * len(a.pose), "real")
    synth_people = london[: int(d["synth_london"])] + canada
    for c, condition in enumerate(d["conditions"]):
        add(a.synth[c], d["synth_bs"][c], synth_people, str(condition))
    psi = np.concatenate([p[0] for p in parts])
    person = np.concatenate([p[1] for p in parts])
    condition = np.concatenate([[p[2]] * len(p[1]) for p in parts])
    ok = np.isfinite(psi).all(1)
    return {"psi": psi[ok].astype(np.float32), "person": person[ok], "condition": condition[ok]}


def atlas_figures(tok, psi: np.ndarray) -> dict:
    """The issue's atlas figures of a model over frames: used actions, how many are named, the
    distinct action units in their names, near-duplicates (cosine >= 0.9), the closest pair, named
    actions that peak under 0.1 cm, and the frames' reconstruction cosine."""
    from dfe.tokens.tokenizer import cosine_rows
    from dfe.views.atlas import near_duplicates
    from dfe.views.naming import name_codes

    tokens = tok.encode(psi)
    codes = sorted(set(tok.action_codes(tokens).ravel().tolist()))
    geometry = tok.code_deformations().reshape(tok.codebook_size, 468, 3)
    peaks = np.linalg.norm(geometry, axis=2).max(1)
    names = name_codes(tok, codes)
    named = [c for c in codes if names[c].name != "unnamed" and not names[c].name.startswith("faint")]
    aus = sorted({u["au"] for c in named for u in names[c].action_units})
    dups = near_duplicates(geometry, codes)
    g = geometry[codes].reshape(len(codes), -1)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    sim = g @ g.T
    np.fill_diagonal(sim, -1)
    return {"frames": len(psi), "cosine": float(cosine_rows(tok.decode(tokens), psi).mean()), "used": len(codes),
            "named": len(named), "action_units": aus, "near_duplicate_share": float(np.mean([bool(dups[c]) for c in codes])),
            "max_pair": float(sim.max()) if len(codes) > 1 else 0.0,
            "faint_named": int(sum(peaks[c] < 0.1 for c in named)), "names": {c: names[c] for c in codes}}


def atlas(args) -> None:
    from dfe.tokens.tokenizer import Tokenizer

    tok = Tokenizer.load(args.model)
    frames = cache_frames(args.shared, args.cache, lambda p: p in TEST_PEOPLE)
    f = atlas_figures(tok, frames["psi"])
    print(f"{args.model}: {f['frames']} frames of the {len(TEST_PEOPLE)} test people (real photos and unit photos; "
          f"held out of the dictionary, not of the bundled face model), reconstruction cosine {f['cosine']:.3f}")
    print(f"used actions {f['used']}, named {f['named']}; {len(f['action_units'])} distinct action units in their names "
          f"({', '.join(f['action_units'])}); near-duplicates {f['near_duplicate_share']:.0%} of used actions; closest pair "
          f"cosine {f['max_pair']:.3f}; named actions under 0.1 cm: {f['faint_named']}")
    for c, name in f["names"].items():
        print(f"  {c:4d} {name.name} ({', '.join(u['au'] for u in name.action_units)})")


TASK_COMBINATIONS = ("AU1+AU2", "AU4+AU7", "AU6+AU12")  # absent from the tasks' dictionary


def task_data(shared: Path, cache: Path) -> dict:
    """Held-out data for the two bag-of-words tasks, from the landmark cache: psi of the 40 London
    people through a face model built on Canada only (single photos), and a training corpus with no
    London person and none of :data:`TASK_COMBINATIONS`: Canada neutrals, Canada synth photos, the
    videos, all through that face model."""
    from build_face_model import ANCHORS, TEST_UNITS, VIDEOS, align_data, collect_landmarks, model_sets

    from dfe.extraction.identity import build_face_model, track_neutral

    d = collect_landmarks(shared, cache)
    a = align_data(d, ANCHORS)
    model = build_face_model(**model_sets(d, a, "synth+units"))
    nl = int(d["synth_london"])
    conds = [str(c) for c in d["conditions"]]

    def psi_of(aligned, bs):
        return fit_psi(model, aligned, bs).reshape(len(aligned), -1).astype(np.float32)

    train, train_bs = [psi_of(a.canada, d["canada_bs"])], [d["canada_bs"]]
    for c, name in enumerate(conds):
        if name not in TASK_COMBINATIONS:
            train.append(psi_of(a.synth[c, nl:], d["synth_bs"][c, nl:]))
            train_bs.append(d["synth_bs"][c, nl:])
    for v in VIDEOS:
        al, bs = a.videos[v], d[f"video_{v.split('.')[0]}_bs"]
        train.append((al - track_neutral(al, bs, True, "auto", model).mesh).reshape(len(al), -1).astype(np.float32))
        train_bs.append(bs)
    train, train_bs = np.concatenate(train), np.concatenate(train_bs)
    ok = np.isfinite(train).all(1)
    people = np.array([str(p) for p in d["persons"]])
    units = [c for c in conds if c in TEST_UNITS]
    unit_psi = np.concatenate([psi_of(a.synth[conds.index(u), :nl], d["synth_bs"][conds.index(u), :nl]) for u in units])
    return {"train": train[ok], "train_blend": train_bs[ok],
            "smile": {"psi": np.concatenate([psi_of(a.london_neutral, d["london_neutral_bs"]), psi_of(a.london_smiling, d["london_smiling_bs"])]),
                      "blend": np.concatenate([d["london_neutral_bs"], d["london_smiling_bs"]]),
                      "label": np.repeat(["neutral", "smiling"], len(people)), "person": np.tile(people, 2)},
            "unit": {"psi": unit_psi, "blend": np.concatenate([d["synth_bs"][conds.index(u), :nl] for u in units]),
                     "label": np.repeat(units, nl), "person": np.tile(people[:nl], len(units))}}


def task_scores(task: dict, tok, seed: int) -> pd.DataFrame:
    """Out-of-fold predictions (5 folds by person, logistic regression) of each feature set: bags of
    tokens (counts, strength-weighted, and actions weighted by their gain: ``BagOfTokens(gains=)``;
    not rescaled) and psi and
    blendshapes (standardised; a one-frame video's functionals are its values)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dfe.analysis.features import BagOfTokens

    ok = np.isfinite(task["psi"]).all(1) & np.isfinite(task["blend"]).all(1)
    psi, blend, y, person = task["psi"][ok], task["blend"][ok], task["label"][ok], task["person"][ok]
    tokens = tok.encode(psi)
    strength = tok.strength(psi, tokens)
    K = tokens.shape[1]
    frames = [pd.DataFrame({"success": [1], **{f"tok_{k + 1}": [tokens[i, k]] for k in range(K)},
                            **{f"strength_{k + 1}": [strength[i, k]] for k in range(K)}}) for i in range(len(psi))]
    features = {"bag of tokens": (BagOfTokens(tok.codebook_size).fit(frames).transform(frames).toarray(), False),
                "bag of tokens (strength)": (BagOfTokens(tok.codebook_size, strength=True).fit(frames).transform(frames).toarray(), False),
                "bag of actions (gain)": (BagOfTokens(tok.codebook_size, norm=None, gains=tok.intensities)
                                          .fit(frames).transform(frames).toarray(), False),
                "psi": (psi, True), "blendshapes": (blend, True)}
    rows = []
    for name, (x, scale) in features.items():
        pred = np.empty(len(y), dtype=object)
        for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, person):
            clf = LogisticRegression(C=1.0, max_iter=5000)
            clf = make_pipeline(StandardScaler(), clf) if scale else clf
            pred[te] = clf.fit(x[tr], y[tr]).predict(x[te])
        rows += [{"seed": seed, "features": name, "person": p, "truth": t, "pred": q} for p, t, q in zip(person, y, pred)]
    return pd.DataFrame(rows)


def macro_f1(df) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(df["truth"], df["pred"], average="macro"))


def paired_person_bootstrap(preds, a: str, b: str, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Macro-F1 of ``a`` minus ``b`` and its 95% interval over people resampled with replacement."""
    rng = np.random.default_rng(seed)
    people = preds["person"].unique()
    by = {p: g for p, g in preds.groupby("person")}
    diffs = []
    for _ in range(n):
        sample = pd.concat([by[p] for p in rng.choice(people, len(people))])
        diffs.append(macro_f1(sample[sample["features"] == a]) - macro_f1(sample[sample["features"] == b]))
    point = macro_f1(preds[preds["features"] == a]) - macro_f1(preds[preds["features"] == b])
    return point, float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def tasks(args) -> None:
    """The smile task and the which-unit task on held-out London people (see :func:`task_data`)."""
    from dfe.tokens.tokenizer import Tokenizer

    data = task_data(args.shared, args.cache)
    print(f"dictionary ({args.levels} levels): {len(data['train'])} frames (Canada neutrals and synth photos, the videos; no London person, "
          f"none of {', '.join(TASK_COMBINATIONS)}); face model: Canada only", flush=True)
    preds = {"smile": [], "unit": []}
    for seed in range(args.seeds):
        tok = Tokenizer.fit(data["train"], progress=False, seed=seed, levels=args.levels)
        for name in preds:
            preds[name].append(task_scores(data[name], tok, seed))
    for name, title in (("smile", "smiling vs neutral, 80 London photos of 40 people"),
                        ("unit", f"which unit, {data['unit']['label'].size} unit photos of the London people, "
                                 f"{len(set(data['unit']['label']))} classes")):
        p = pd.concat(preds[name])
        print(f"\n{title}; 5 folds by person, {args.seeds} seeds (dictionary and folds); macro-F1 (mean over seeds):")
        for feat in p["features"].unique():
            f = [macro_f1(g) for _, g in p[p["features"] == feat].groupby("seed")]
            print(f"  {feat:26s} {np.mean(f):.3f} ± {np.std(f):.3f}")
        for other in ("psi", "blendshapes"):
            for feat in ("bag of tokens", "bag of tokens (strength)", "bag of actions (gain)"):
                diff, lo, hi = paired_person_bootstrap(p, feat, other)
                print(f"  {feat} - {other}: {diff:+.3f} (95% CI {lo:+.3f} .. {hi:+.3f}, people resampled)")


def cache_args(parser):
    """``--shared`` and ``--cache`` (the landmark cache of bench/expressions.py)."""
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dfe_expressions.npz"))
    return parser


def encoding_args(parser, quantizers: list[str], rvq_seeds: int):
    """The options of :func:`score_encoders`: seeds, quantizers, bits and levels, ``--json``."""
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rvq-seeds", type=int, default=rvq_seeds, help="seeds for the (slow) rvq-vae fits")
    parser.add_argument("--quantizers", nargs="+", default=quantizers, choices=list(QUANTIZERS))
    parser.add_argument("--bits", type=int, default=7)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--json")
    return parser


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
    encoding_args(c, ["shape-gain", "shape-gain-2", "rvq-vae"], rvq_seeds=2)
    c.add_argument("--train-synth", action="store_true", help="add unit photos of training people to training")
    c.set_defaults(fn=compare)
    rc = cache_args(sub.add_parser("recon", help="compare's encodings on the landmark cache: London held out of everything"))
    encoding_args(rc, ["shape-gain", "shape-gain-repeats", "shape-gain-2", "shape-gain-per-level"], rvq_seeds=1)
    rc.set_defaults(fn=recon)
    at = sub.add_parser("atlas", help="the atlas figures of a model over the test people's photos and unit photos")
    at.add_argument("model", nargs="?", default=str(ROOT / "src" / "dfe" / "data" / "starter.dfe"))
    cache_args(at).set_defaults(fn=atlas)
    tk = cache_args(sub.add_parser("tasks", help="the smile and which-unit bag-of-words tasks on held-out London people"))
    tk.add_argument("--seeds", type=int, default=5)
    tk.add_argument("--levels", type=int, default=4, help="tokens a frame (the dictionary's K)")
    tk.set_defaults(fn=tasks)
    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
