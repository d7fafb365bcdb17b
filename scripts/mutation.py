"""Mutation testing of dfe's pure-function modules with cosmic-ray (not part of CI: slow).

    pip install cosmic-ray==8.7.0
    python scripts/mutation.py [--modules features eval ...] [--sample 40] [--seed 0] [--show-survivors]

For each module, cosmic-ray makes every mutant (an operator, comparison, number or boolean
changed) of a throwaway copy of the repository; this script keeps a random sample of those inside
the module's pure functions (``PURE``; the full set runs for hours), runs the module's fast test selection against each, and prints the
share killed per module. A surviving mutant is a change no test notices: either a missing test, or
an equivalent mutant (say which in tests/README.md). Results: tests/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deliberate_bugs import ROOT, copy_repo  # noqa: E402

# module -> the fast tests that cover it (no ../shared extraction where it can be avoided)
BOW_TESTS = "tests/test_bow.py -k 'by_hand or never_trains or options or recovers or bad_designs'"
MODULES = {
    "features": ("src/dfe/analysis/features.py", BOW_TESTS),
    "task": ("src/dfe/analysis/task.py", BOW_TESTS),
    "eval": ("src/dfe/analysis/evaluate.py", "tests/test_eval.py -k 'helpers or by_hand or exact'"),
    "expression": ("src/dfe/extraction/expression.py", "tests/test_expression.py"),
    "table": ("src/dfe/table.py", "tests/test_table.py"),
    "identity": ("src/dfe/extraction/identity.py",
                 "tests/test_identity.py -k 'not unseen and not smiling_only and not extract and not cli'"),
}
# the pure functions of each module (orchestration, file writing and plots are left to the
# end-to-end tests): mutants are sampled from these definitions only
PURE = {
    "features": ("_counts", "_video_counts", "level_counts", "bigram_counts", "video_tokens", "_weigh", "fit",
                 "transform", "functionals", "_ok"),
    "task": ("ccc", "scores", "split_windows", "check_folds"),
    "eval": ("_summary", "_score", "residual_quantize", "pca_bits", "level_curve", "distinct_per_1000", "diversity",
             "retrieval"),
    "expression": None,  # every function
    "table": None,
    "identity": ("rig_inputs", "expected_expression", "_gain", "fit", "fit_expression_rig", "build_face_model",
                 "track_neutral", "n_identity"),
}
# operators worth the time: arithmetic swaps, comparisons, numbers, booleans, break/continue, return values
KEEP = ("ReplaceBinaryOperator_Add_Sub", "ReplaceBinaryOperator_Sub_Add", "ReplaceBinaryOperator_Mul_Div",
        "ReplaceBinaryOperator_Div_Mul", "ReplaceBinaryOperator_Mul_Add", "ReplaceBinaryOperator_Pow_Mul",
        "ReplaceComparisonOperator", "NumberReplacer", "ReplaceTrueWithFalse", "ReplaceFalseWithTrue",
        "ReplaceAndWithOr", "ReplaceOrWithAnd", "AddNot", "ReplaceUnaryOperator_USub", "ZeroIterationForLoop",
        "ReplaceContinueWithBreak", "ReplaceBreakWithContinue")


def config(module_path: str, tests: str) -> str:
    return (f'[cosmic-ray]\nmodule-path = "{module_path}"\ntimeout = 300.0\nexcluded-modules = []\n'
            f'test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"\n\n'
            '[cosmic-ray.distributor]\nname = "local"\n')


def sample_jobs(session: Path, n: int, seed: int, functions: tuple[str, ...] | None) -> int:
    """Keep n random mutants of the operators in KEEP inside ``functions``; mark the rest skipped."""
    db = sqlite3.connect(session)
    jobs = db.execute("SELECT job_id, operator_name, definition_name FROM mutation_specs ORDER BY job_id").fetchall()
    wanted = [j for j, op, fn in jobs if any(k in op for k in KEEP) and (functions is None or fn in functions)]
    jobs = [(j, op) for j, op, _ in jobs]
    keep = set(random.Random(seed).sample(wanted, min(n, len(wanted))))
    skip = [(j,) for j, _ in jobs if j not in keep]
    db.executemany("INSERT OR REPLACE INTO work_results (job_id, worker_outcome, output, test_outcome, diff) "
                   "VALUES (?, 'SKIPPED', 'sampled out', 'SURVIVED', '')", skip)
    db.commit()
    return len(keep)


def results(session: Path) -> tuple[int, int, list[str]]:
    db = sqlite3.connect(session)
    rows = db.execute("SELECT r.test_outcome, s.operator_name, s.start_pos_row, r.diff FROM work_results r "
                      "JOIN mutation_specs s ON r.job_id = s.job_id WHERE upper(r.worker_outcome) != 'SKIPPED'").fetchall()
    # a mutant that breaks the tests (killed) or makes them crash (incompetent) is caught
    killed = sum(1 for outcome, *_ in rows if str(outcome).upper() in ("KILLED", "INCOMPETENT"))
    survivors = [f"line {row}: {op}\n{diff}" for outcome, op, row, diff in rows if str(outcome).upper() == "SURVIVED"]
    return killed, len(rows), survivors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", nargs="*", default=list(MODULES))
    ap.add_argument("--sample", type=int, default=40, help="mutants per module")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show-survivors", action="store_true")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to mutate (e.g. an older commit's worktree)")
    ap.add_argument("--select", nargs="*", default=[], metavar="MODULE=TESTS",
                    help="another test selection for a module, e.g. eval='tests/test_eval.py -k helpers'")
    args = ap.parse_args()
    modules = {**MODULES, **{k: (MODULES[k][0], v) for k, v in (item.split("=", 1) for item in args.select)}}
    print(f"{'module':12s} {'killed':>7s} {'run':>4s} {'score':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_repo(Path(tmp) / "repo", args.repo)
        env = {**os.environ, "PYTHONPATH": str(repo / "src"), "DFE_SHARED": str(ROOT.parent / "shared")}
        for name in args.modules:
            module_path, tests = modules[name]
            cfg, session = Path(tmp) / f"{name}.toml", Path(tmp) / f"{name}.sqlite"
            cfg.write_text(config(module_path, tests))
            subprocess.run(["cosmic-ray", "init", str(cfg), str(session)], cwd=repo, env=env, check=True,
                           capture_output=True)
            sample_jobs(session, args.sample, args.seed, PURE[name])
            subprocess.run(["cosmic-ray", "exec", str(cfg), str(session)], cwd=repo, env=env, check=True,
                           capture_output=True)
            killed, total, survivors = results(session)
            print(f"{name:12s} {killed:7d} {total:4d} {killed / max(total, 1):6.0%}", flush=True)
            if args.show_survivors:
                for s in survivors:
                    print("  survived:", s.replace("\n", "\n    "))


if __name__ == "__main__":
    main()
