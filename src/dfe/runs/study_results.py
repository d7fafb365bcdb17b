"""results.json of a study: every number it measured, where each came from and what was held out, and the methods paragraph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
from dataclasses import asdict
from pathlib import Path
import numpy as np
import pandas as pd
from dfe.version import __version__
from dfe.extraction.io import media_kind
from dfe.table import read_table, token_columns
from dfe.extraction.identity import face_model_provenance
from dfe.views.naming import name_codes
from dfe.views.figures import label_log_odds
from dfe.runs.study_plan import StudyConfig, StudyPlan
from dfe.runs.study_plan import DFE_NAME

if TYPE_CHECKING:  # the driver's record of a run (runs/study.py imports this module)
    from dfe.runs.study import _StudyRun


def dictionary_saw(tok, ids: list[str]) -> list[str]:
    """The tested table ids the dictionary was trained or validated on (by id)."""
    seen = tok.seen_groups
    if seen is None:
        seen = set(map(str, (tok.summary.data or {}).get("videos", [])))
    return sorted(set(ids) & seen)


def _input_rows(outcomes, enc_failed, table_ids: dict) -> list[dict]:
    """One row per input of the corpus (failed ones with their sentence), then per failed encode."""
    id_of = {str(Path(k)): v for k, v in table_ids.items()}
    rows = [{"input": str(o.input), "id": o.id or id_of.get(str(o.input), ""), "kind": media_kind(o.input) or "other",
             "status": "failed" if o.status == "failed" else "ok", "frames": int(o.frames), "faces": int(o.faces),
             "error": o.error} for o in sorted(outcomes, key=lambda o: str(o.input))]
    return rows + [{"input": str(o.input), "id": o.id, "kind": "table", "status": "failed", "frames": 0, "faces": 0,
                    "error": f"encode: {o.error}"} for o in enc_failed]


def _label_of(lab: pd.DataFrame, vid: str, column: str | None) -> str | None:
    """The labels file's value of ``column`` for table ``vid`` as text, or None where it has none."""
    if not column or vid not in lab.index or pd.isna(lab.at[vid, column]):
        return None
    return str(lab.at[vid, column])


def _videos_and_label_codes(run: _StudyRun, ok_ids: list[str], lab: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Per-table rows of the report, and each label's most typical codes (smoothed log-odds of each
    code's frames per label over every labelled frame; descriptive, nothing held out)."""
    tok, target = run.tok, run.config.target
    frames_tok, frames_lab, per_video = [], [], []
    for vid in ok_ids:
        path = run.out / "encoded" / f"{vid}.parquet"
        if not path.is_file():
            continue
        df = read_table(path)
        ok = df[df["success"] == 1]
        toks = ok[token_columns(ok)].to_numpy()
        ev_path, timeline = run.out / "events" / f"{vid}.events.parquet", run.out / "events" / f"{vid}.timeline.png"
        label = _label_of(lab, vid, target)
        per_video.append({"id": vid, "frames": int(len(df)), "faces": int(len(ok)),
                          "events": int(len(pd.read_parquet(ev_path))) if ev_path.is_file() else 0,
                          "timeline": f"events/{timeline.name}" if timeline.is_file() else None, "label": label})
        if label is not None and len(toks):
            frames_tok.append(toks)
            frames_lab += [label] * len(toks)
    if not frames_tok:
        return per_video, []
    lo = label_log_odds(np.vstack(frames_tok), np.asarray(frames_lab), tok.codebook_size)
    best = (lo[(lo["count"] > 0) & (lo["log_odds"] > 0)].sort_values(["label", "log_odds"], ascending=[True, False])
            .groupby("label").head(4))
    names = name_codes(tok, sorted(set(best["code"].astype(int))))
    return per_video, [{"label": str(r.label), "code": int(r.code), "log_odds": float(r.log_odds), "frames": int(r.count),
                        "name": names[int(r.code)].name} for r in best.itertuples()]


def _top_codes(atlas: Path, n: int = 12) -> list[dict]:
    """The atlas's most used codes, from its code cards."""
    cards = [json.loads(p.read_text()) for p in sorted((atlas / "codes").glob("code_*.json"))]
    cards.sort(key=lambda c: (-int(c["usage"]), int(c["code"])))
    return [{"code": c["code"], "name": c["name"], "level": c["level"], "usage": c["usage"], "peak_cm": c.get("peak_cm"),
             "action_units": [a["au"] for a in c.get("action_units", [])]} for c in cards[:n]]


def _dictionary_summary(config: StudyConfig, tok, saw: list[str]) -> dict:
    s = tok.summary
    return {"source": "fitted on the study's tables" if config.fit else (config.model or "the bundled starter dictionary"),
            "file": "dictionary.dfe", "fingerprint": tok.fingerprint(), "codebook_size": tok.codebook_size,
            "levels": tok.levels, "train_frames": s.n_train, "val_frames": s.n_val, "val_cosine": s.val_cosine,
            "dead_code_share": s.dead_code_share, "seed": tok.config.seed,
            "saw_tested_inputs": len(saw), "saw_tested_ids": saw[:50]}


def _provenance(config: StudyConfig, tok, ev: dict | None, ev_skipped: str | None, prediction: dict, saw: list[str],
                n_tested: int, saw_labelled: list[str], n_labelled: int, face: dict, dictionary: dict) -> dict:
    """What each figure of the report was measured on, and what was held out of it."""
    if not ev:
        fidelity = f"Not measured: {ev_skipped}."
    else:
        held = ev["split"]
        fidelity = (f"Held out by {held['by']}: {held['n_test_groups']} groups, {held['test_frames']} frames "
                    f"(seed {held['seed']}); the baselines were fitted on the {held['train_frames']} training frames. "
                    + (f"The study's dictionary had seen held-out videos ({ev['refit']['reason']}), so a dictionary of "
                       "its configuration was fitted on the training split and scored instead."
                       if ev.get("refit") else "The dictionary never saw a held-out video."))
    if "skipped" in prediction:
        pred = f"Not run: {prediction['skipped']}."
    else:
        seeds = prediction["seeds"]
        pred = (f"{prediction['folds']}-fold grouped CV ({'by ' + config.group if config.group else 'each video its own group'}),"
                f" {len(seeds)} fold assignment(s) (seeds {seeds[0]}..{seeds[-1]});"
                " every model (and feature fit: blendshape words, events) saw only the training people of its fold. "
                f"Tokens: {prediction['tokens']}.")
        pred += (" No tested person's frames shaped the codes." if config.fit else
                 f" The dictionary that made those tokens saw {len(saw_labelled)} of the {n_labelled} tested inputs.")
    return {
        "corpus": "Counts from the run manifest of tables/ (every input, failed ones with their sentence).",
        "dictionary": (f"The dictionary ({dictionary['source']}) was trained on {tok.summary.n_train:,} frames"
                       + (f", including {len(saw)} of the {n_tested} study inputs" if saw else
                          ", none of them from this study's inputs") + ". Atlas, top codes, per-label codes and timelines "
                       "describe the whole corpus with it (descriptive, nothing held out). " + face["statement"]),
        "fidelity": fidelity + " " + face["statement"],
        "prediction": pred + " " + face["statement"],
        "per_label_codes": ("Smoothed log-odds of each code's frames within each label vs the rest, over every labelled "
                            "frame with the study's dictionary: a description of the corpus, not a held-out result."),
        "events": "dfe events with default options (gap 0.1 s, min duration 0.1 s, hold 0.9) on the encoded tables.",
    }


def collect_results(run: _StudyRun) -> dict:
    """results.json: every number of the study, with each figure's provenance."""
    config, tok, out = run.config, run.tok, run.out
    inputs = _input_rows(run.outcomes, run.enc_failed, run.table_ids)
    ok_ids = [i["id"] for i in inputs if i["status"] == "ok"]
    lab = run.labels.set_index("video")
    people = sorted({g for i in ok_ids if (g := _label_of(lab, i, config.group)) is not None})
    per_video, per_label = _videos_and_label_codes(run, ok_ids, lab)
    ev_path = out / "evaluate" / "report.json"
    ev = json.loads(ev_path.read_text()) if ev_path.is_file() else None
    ev_skipped = None if ev else json.loads((out / "evaluate" / "skipped.json").read_text())["reason"]
    saw = dictionary_saw(tok, ok_ids)
    labelled_ids = [i for i in ok_ids if _label_of(lab, i, config.target) is not None]
    face = face_model_provenance(ok_ids, config.face_model)
    dictionary = _dictionary_summary(config, tok, saw)
    provenance = _provenance(config, tok, ev, ev_skipped, run.prediction, saw, len(ok_ids),
                             sorted(set(saw) & set(labelled_ids)), len(labelled_ids), face, dictionary)
    methods = methods_paragraph(config, run.plan, inputs, people, dictionary, ev, run.prediction, face)
    return {"dfe_version": __version__, "config": asdict(config),
            "corpus": {"inputs": inputs, "n_inputs": len(inputs), "n_ok": len(ok_ids),
                       "n_failed": sum(i["status"] == "failed" for i in inputs),
                       "videos": sum(i["kind"] == "video" and i["status"] == "ok" for i in inputs),
                       "photos": sum(i["kind"] == "image" and i["status"] == "ok" for i in inputs),
                       "people": len(people), "frames": int(sum(i["frames"] for i in inputs)),
                       "faces": int(sum(i["faces"] for i in inputs)), "labelled": len(labelled_ids)},
            "dictionary": dictionary, "top_codes": _top_codes(out / "atlas"), "per_label_codes": per_label,
            "fidelity": ({"split": ev["split"], "refit": ev.get("refit"), "rows": ev["fidelity"],
                          "level_curve_cosine": ev["level_curve_cosine"], "diversity": ev["diversity"],
                          "retrieval": ev["retrieval"]} if ev else {"skipped": ev_skipped}),
            "prediction": run.prediction, "videos": per_video, "face_model": face,
            "provenance": provenance, "methods": methods}


def methods_paragraph(config: StudyConfig, plan: StudyPlan, inputs, people, dictionary, ev, prediction, face) -> str:
    ok = [i for i in inputs if i["status"] == "ok"]
    dict_text = (f"a dictionary of {dictionary['codebook_size']} codes shared by {dictionary['levels']} residual levels "
                 f"fitted on the study's frames (seed {config.seed}, {config.epochs} epochs)" if config.fit else
                 f"{dictionary['source']} ({dictionary['codebook_size']} codes, {dictionary['levels']} levels)")
    text = (f"Faces in {len(ok)} inputs ({sum(i['kind'] == 'video' for i in ok)} videos, {sum(i['kind'] == 'image' for i in ok)} "
            f"photos{f', {len(people)} people' if people else ''}; {sum(i['faces'] for i in ok):,} frames with a face) were "
            f"tracked with MediaPipe Face Landmarker and turned into identity-free 3D expression displacements (psi, cm on "
            f"MediaPipe's canonical face) with dfe {__version__} (Discrete Facial Encoding, arXiv 2510.01662). "
            f"{face['statement']} Frames were tokenized with {dict_text}. ")
    if ev:
        fid = ev["fidelity"][0]
        text += (f"Fidelity was measured on {ev['split']['test_frames']} frames of {ev['split']['n_test_groups']} held-out "
                 f"groups ({ev['split']['by']}): held-out cosine {fid['cosine_mean']:.3f} with all levels"
                 + (" (a dictionary of the same configuration refitted on the training split, as the study's dictionary had "
                    "seen the held-out videos)" if ev.get("refit") else "") + ". ")
    if "skipped" in prediction:
        return text + f"Prediction was not run: {prediction['skipped']}."
    rows = {r["features"]: r for r in prediction["rows"]}
    key = prediction["metric"]
    best = rows.get(DFE_NAME, {})
    return text + (
        f"{config.target!r} was predicted per input with "
        f"{'logistic regression' if prediction['task'] == 'classification' else 'ridge regression'} "
        f"(regularisation chosen by inner CV) in {prediction['folds']}-fold cross-validation grouped by "
        f"{config.group or 'input'}, repeated over {len(prediction['seeds'])} fold assignment(s); "
        + ("the dictionary was refitted in every outer fold on that fold's training people only. " if config.fit else
           f"tokens came from the study's dictionary ({prediction['tokens']}). ")
        + f"dfe's bag of tokens reached {key} {best.get(key, float('nan')):.3f} (95% CI {best.get('ci95_low', float('nan')):.3f}"
        f"-{best.get('ci95_high', float('nan')):.3f}, bootstrap over inputs), against "
        + "; ".join(f"{n} {r[key]:.3f} (dfe minus this {r['dfe_minus_this']:+.3f}, paired 95% CI "
                    f"{r['dfe_minus_this_ci95_low']:+.3f}..{r['dfe_minus_this_ci95_high']:+.3f})"
                    for n, r in rows.items() if n != DFE_NAME)
        + f"; chance {prediction['chance']:.2f}.")


