"""Time per stage of `dfe study` on the shared media, first run and rerun.

    python bench/study.py [--people 40] [--fit] [--seeds 5] [--out /tmp/dfe_bench_study]

The study: the London photos of the first ``--people`` people (smiling vs neutral, grouped by
person, London's own labels file) plus the shared videos (unlabelled: they get events and
timelines, not predictions). Prints the plan's estimate, the measured seconds per step of a first
run, and of a rerun into the same folder (every step up to date), and the study's headline numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from dfe.runs.study_plan import StudyConfig, plan_study
from dfe.runs.study import run_study

SHARED = Path(os.environ.get("DFE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default="/tmp/dfe_bench_study")
    a = ap.parse_args()
    london = SHARED / "faces" / "london"
    media = [str(london / f"{i:03d}_{e}.jpg") for i in range(1, 100) for e in ("neutral", "smiling")
             if (london / f"{i:03d}_{e}.jpg").is_file()][: 2 * a.people]
    media += [str(p) for p in sorted((SHARED / "videos").iterdir()) if p.suffix.lower() in (".mp4", ".mov")]
    shutil.rmtree(a.out, ignore_errors=True)
    config = StudyConfig(media=media, labels=str(SHARED / "faces" / "london.csv"), target="expression", group="person",
                         output=a.out, fit=a.fit, seeds=a.seeds, folds=a.folds, workers=a.workers)
    plan = plan_study(config.resolved())
    print(plan.text())
    runs = {}
    for name in ("first run", "rerun"):
        t = time.perf_counter()
        result = run_study(config, say=lambda m: None)
        runs[name] = (time.perf_counter() - t, result.results["timing"])
    print("\n| step | estimate (s) | first run (s) | rerun (s) |\n|---|---|---|---|")
    for s in plan.steps:
        print(f"| {s.name} | {s.estimate_s:.0f} | {runs['first run'][1].get(s.name, 0):.1f} | {runs['rerun'][1].get(s.name, 0):.1f} |")
    print(f"| total | {plan.estimate_s:.0f} | {runs['first run'][0]:.1f} | {runs['rerun'][0]:.1f} |")
    r = result.results
    print(f"\nsteps on rerun: {json.dumps(runs['rerun'][1]['steps'])}")
    print(f"corpus: {r['corpus']['n_ok']} inputs ok, {r['corpus']['n_failed']} failed, {r['corpus']['faces']} faces")
    if "rows" in r["fidelity"]:
        print(f"fidelity: held-out cosine {r['fidelity']['rows'][0]['cosine_mean']:.3f} on {r['fidelity']['split']['test_frames']} frames")
    if "rows" in r["prediction"]:
        for row in r["prediction"]["rows"]:
            print(f"  {row['features']:<50} {row['macro_f1']:.3f} ({row['ci95_low']:.3f}-{row['ci95_high']:.3f})")


if __name__ == "__main__":
    main()
