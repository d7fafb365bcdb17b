"""Break dfe on purpose, one bug at a time, and check that the tests notice.

    python scripts/deliberate_bugs.py [--only NAME ...] [--list]

Each bug is a one-line text substitution applied to a throwaway copy of the repository; the tests
named beside it run against that copy (``PYTHONPATH`` points at the copy's ``src``). A bug the
tests do not catch is a hole in the suite. The list is the one from the "tests that catch
breakage" issue; add to it whenever a bug slips through. Results: tests/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = [
    Bug("flame-zero-expression", "FLAME import sets all 50 expression values to zero", "src/dfe/extraction/flame.py",
        'exp = _rows(exp, N_EXPRESSION, "the expression", where)[:, :N_EXPRESSION]',
        'exp = 0 * _rows(exp, N_EXPRESSION, "the expression", where)[:, :N_EXPRESSION]', ("tests/test_flame.py",)),
    Bug("no-downscaling", "huge frames are no longer downscaled", "src/dfe/extraction/io.py",
        "scale = min(1.0, max_side / max(h, w))", "scale = 1.0",
        ("tests/test_extract.py::test_huge_image_is_downscaled",)),
    Bug("per-level-from-level-1", "BagOfTokens per-level counts built from level 1 K times", "src/dfe/analysis/features.py",
        "counts[k] = np.bincount(tokens[:, k],", "counts[k] = np.bincount(tokens[:, 0],",
        ("tests/test_bow.py::test_bag_counts_by_hand",)),
    Bug("bigram-self-pairs", "bigrams count each frame paired with itself", "src/dfe/analysis/features.py",
        "first_level[:-1] * codebook_size + first_level[1:]", "first_level[:-1] * codebook_size + first_level[:-1]",
        ("tests/test_bow.py::test_bag_counts_by_hand",)),
    Bug("rq-returns-input", "residual_quantize returns its input", "src/dfe/analysis/evaluate.py",
        "        resid -= codebook[idx]\n    return out", "        resid -= codebook[idx]\n    return psi",
        ("tests/test_eval.py::test_helpers",)),
    Bug("evaluate-wrong-tokens", "evaluate gives each held-out frame another frame's tokens", "src/dfe/analysis/evaluate.py",
        "tokens_test = tok.encode(psi[test])", "tokens_test = np.roll(tok.encode(psi[test]), 1, axis=0)",
        ("tests/test_eval.py::test_evaluate_report_on_real_tables",)),
    Bug("empty-bags", "BagOfTokens returns empty bags", "src/dfe/analysis/features.py",
        "sparse.vstack([sparse.csr_matrix(row) for row in rows])", "sparse.vstack([sparse.csr_matrix(row * 0) for row in rows])",
        ("tests/test_bow.py::test_bag_counts_by_hand", "tests/test_bow.py::test_london_smile_task_end_to_end")),
    Bug("encode-table-shuffled", "encode_table shuffles tokens across frames", "src/dfe/tokens/tables.py",
        "block[ok] = tokens", "block[ok] = np.roll(tokens, 1, axis=0)",
        ("tests/test_tokenizer.py::test_fit_and_encode_real_tables_cli",)),
    Bug("rejected-alignment", "extraction aligns with the rejected robust scheme (the face model's anchors ignored)",
        "src/dfe/extraction/identity.py",
        'return str(self.meta.get("anchors", "basis"))', 'return "robust"',
        ("tests/test_extract.py::test_pose_invariance_vs_smile",)),
    Bug("cv-trains-on-test", "cross-validation trains on the test fold too", "src/dfe/analysis/task.py",
        "model.fit([videos[i] for i in tr], data.y[tr])", "model.fit(videos, data.y)",
        ("tests/test_bow.py::test_cross_validation_never_trains_on_test_groups",)),
    Bug("identity-ignores-expression", "the identity fit ignores the expression covariance (absorbs smiles)",
        "src/dfe/extraction/identity.py", "inner = np.linalg.solve(s2 * np.eye(len(f)) + f @ f.T, f)",
        "inner = 0 * np.linalg.solve(s2 * np.eye(len(f)) + f @ f.T, f)",
        ("tests/test_identity.py::test_expression_like_identity_is_left_to_expression",
         "tests/test_identity.py::test_single_photo_psi_is_identity_free_on_unseen_people")),
    # dfe 0.3: events, names, honest evaluation, scale
    Bug("events-gaps-split", "every absence, however short, ends an event", "src/dfe/analysis/events.py",
        "breaks = np.flatnonzero(absent > max_gap + eps)", "breaks = np.flatnonzero(absent > -1)",
        ("tests/test_events.py::test_segments_bridge_short_gaps_and_drop_flicker_by_hand",
         "tests/test_events.py::test_track_events_timing_strength_and_resting_by_hand")),
    Bug("events-no-hold", "events are never held by strength", "src/dfe/analysis/events.py",
        "if options.hold is not None and typical >= 0.5 * peaks[j]:", "if False:",
        ("tests/test_events.py::test_wolfgang_events_match_hand_marked_intervals",)),
    Bug("transitions-reversed", "transition counts run backwards in time", "src/dfe/analysis/features.py",
        "np.add.at(trans, c[:-1] * N + c[1:], 1)", "np.add.at(trans, c[1:] * N + c[:-1], 1)",
        ("tests/test_events.py::test_event_statistics_by_hand",)),
    Bug("naming-sides-swapped", "the person's left and right are swapped in names", "src/dfe/views/naming.py",
        '{"right": self._near(spec.right_centres, spec.radius_cm),\n'
        '                     "left": self._near(spec.left_centres, spec.radius_cm)}',
        '{"right": self._near(spec.left_centres, spec.radius_cm),\n'
        '                     "left": self._near(spec.right_centres, spec.radius_cm)}',
        ("tests/test_atlas.py::test_names_from_geometry",)),
    Bug("evaluate-never-refits", "evaluate scores a model on videos it was trained on", "src/dfe/analysis/evaluate.py",
        "if overlap is not None and not overlap:", "if True:",
        ("tests/test_eval.py::test_evaluate_refits_an_old_model_and_says_how_long_first",)),
    Bug("compact-drops-landmarks", "compact tables lose the landmarks", "src/dfe/table.py",
        "        if not cols:\n            continue", "        if not cols or name == \"lm\":\n            continue",
        ("tests/test_scale.py::test_compact_tables_read_old_ones",)),
    Bug("sample-not-stratified", "--max-frames takes as many frames from a short video as from a long one",
        "src/dfe/tokens/tables.py",
        "    exact = np.asarray(counts, dtype=float) * max_frames / total",
        "    exact = np.asarray(counts, dtype=float) * 0 + max_frames / len(counts)",
        ("tests/test_scale.py::test_fit_from_a_stratified_sample",)),
    Bug("synth-rotation-transposed", "dfe synth maps canonical points back with R^T instead of R", "src/dfe/extraction/synth.py",
        "/ alignment.scale) @ alignment.rotation", "/ alignment.scale) @ alignment.rotation.T",
        ("tests/test_synth.py::test_round_trip_on_canonical_face_removes_only_the_similarity_part",)),
    Bug("synth-no-y-flip", "dfe synth forgets that pixel rows run down", "src/dfe/extraction/synth.py",
        "return np.stack([points[:, 0], -points[:, 1]], axis=1)", "return np.stack([points[:, 0], points[:, 1]], axis=1)",
        ("tests/test_synth.py",)),
    Bug("synth-weak-warp", "dfe synth warps by a third of the displacement it records", "src/dfe/extraction/synth.py",
        "    dst = target_pixels(face.alignment, d)", "    dst = target_pixels(face.alignment, 0.3 * d)",
        ("tests/test_synth.py::test_warp_moves_mediapipes_landmarks_by_the_intended_displacement",)),
    Bug("synth-no-fold-check", "dfe synth writes photos whose mesh folds", "src/dfe/extraction/synth.py",
        "    if len(folded):", "    if False:", ("tests/test_synth.py::test_no_face_and_fold_fail_their_photo_only",)),
    Bug("synth-no-range", "intensities out of range are accepted", "src/dfe/extraction/units.py",
        "    if not np.isfinite(x) or not 0.0 <= x <= MAX_INTENSITY_CM:", "    if not np.isfinite(x):",
        ("tests/test_synth.py::test_bad_units_are_one_sentence_naming_the_photo",)),
    Bug("au-sides-summed", "a bilateral unit's _r sums its sides instead of averaging them", "src/dfe/extraction/action_units.py",
        "out[:, j] = coef[:, cols].mean(1)", "out[:, j] = coef[:, cols].sum(1)",
        ("tests/test_openface.py::test_intensities_read_the_unit_scale",)),
    Bug("au25-pressed-lips", "AU25 counts pressed lips as parted", "src/dfe/extraction/action_units.py",
        "return np.clip(v[:, upper, 1] - v[:, lower, 1], 0.0, None)", "return np.abs(v[:, upper, 1] - v[:, lower, 1])",
        ("tests/test_openface.py::test_lip_separation_is_au25",)),
    Bug("gaze-head-rotation-inverted", "gaze turns the eye direction by the inverse head rotation", "src/dfe/extraction/gaze.py",
        'g_img = np.einsum("nji,nj->ni", rot, g_head)', 'g_img = np.einsum("nij,nj->ni", rot, g_head)',
        ("tests/test_openface.py::test_gaze_follows_eyes_and_head",)),
    Bug("gaze-camera-axes", "gaze vectors left in dfe's image axes (y up, z to the camera)", "src/dfe/extraction/gaze.py",
        "vectors[ok, eye] = g_img * np.array([1.0, -1.0, -1.0])", "vectors[ok, eye] = g_img",
        ("tests/test_openface.py::test_gaze_follows_eyes_and_head",)),
    Bug("openface-pose-axes", "pose_R* not converted to OpenFace's y-down axes", "src/dfe/extraction/openface.py",
        "Rotation.from_matrix(_FLIP @ head @ _FLIP)", "Rotation.from_matrix(head)",
        ("tests/test_openface.py::test_head_pose_in_openface_units",)),
    Bug("openface-frame-0-based", "the OpenFace CSV keeps dfe's 0-based frame numbers", "src/dfe/extraction/openface.py",
        '"frame": df["frame"].to_numpy(int) + 1', '"frame": df["frame"].to_numpy(int)',
        ("tests/test_openface.py::test_extract_openface_format_and_landmarks",)),
    Bug("presence-one-threshold", "AU*_c ignores the neutral source: a real neutral gets the face-model fit's thresholds",
        "src/dfe/extraction/action_units.py", "if thresholds is None and real_neutral is not None\n",
        "if False\n", ("tests/test_openface.py::test_presence_thresholds_follow_the_neutral",)),
    Bug("au-fit-on-ict-shapes", "AU*_r fitted on ICT's shapes again by default (dfe 0.6's basis)",
        "src/dfe/extraction/action_units.py", 'def unit_coefficients(psi: np.ndarray, basis: str = "measured")',
        'def unit_coefficients(psi: np.ndarray, basis: str = "shapes")',
        ("tests/test_openface.py::test_measured_basis_reads_each_unit_where_it_acts",)),
    Bug("au-gains-ignored", "the measured basis' per-unit gains are dropped (intensities off the synth scale)",
        "src/dfe/extraction/action_units.py", "return fit_coefficients(solver, psi) * gain",
        "return fit_coefficients(solver, psi)", ("tests/test_openface.py::test_measured_basis_reads_each_unit_where_it_acts",)),
    Bug("au-versions-mixed", "a study mixes tables of two AU versions silently",
        "src/dfe/runs/study.py", "    if len(by_version) == 1:\n", "    if True:\n",
        ("tests/test_openface.py::test_action_unit_versions_do_not_mix",)),
    Bug("gain-bag-ignores-gains", "BagOfTokens(gains=) counts actions but forgets their intensity",
        "src/dfe/analysis/features.py", "weights, tokens = gains[tokens % len(gains)], tokens // len(gains)",
        "weights, tokens = None, tokens // len(gains)",
        ("tests/test_dictionary.py::test_gain_weighted_bag_counts_actions_with_their_intensity",)),
    Bug("joint-update-on-residuals", "the joint codebook update solves for the last level's residuals, not the frames",
        "src/dfe/tokens/dictionary.py", "vectors = joint_directions(z, actions, gains[gain_idx], len(dirs))",
        "vectors = joint_directions(r, actions, gains[gain_idx], len(dirs))",
        ("tests/test_dictionary.py::test_joint_update_rebuilds_real_frames_better_than_per_level",)),
    Bug("actions-repeat", "the encoder lets a frame use one action twice",
        "src/dfe/tokens/networks.py", "        if not (group and taken):", "        if True:",
        ("tests/test_dictionary.py::test_a_frame_uses_each_action_once_and_old_models_may_repeat_them",)),
]


def copy_repo(dest: Path, source: Path = ROOT) -> Path:
    """The tracked files of ``source`` (as they are in its working tree) copied to ``dest``."""
    files = subprocess.run(["git", "ls-files"], cwd=source, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / f, dest / f)
    return dest


def run_bug(bug: Bug, repo: Path) -> tuple[bool, str, float]:
    path = repo / bug.file
    original = path.read_text()
    if original.count(bug.old) != 1:
        return False, f"the text to break is not found once in {bug.file} (update this list)", 0.0
    path.write_text(original.replace(bug.old, bug.new))
    try:
        env = {**os.environ, "PYTHONPATH": str(repo / "src"), "DFE_SHARED": str(ROOT.parent / "shared")}
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", "-m", "slow or not slow", *bug.tests],
                             cwd=repo, env=env, capture_output=True, text=True)
        failed = [line.split(" ")[1] for line in res.stdout.splitlines() if line.startswith("FAILED ")]
        return res.returncode == 1, ", ".join(failed) or res.stdout.strip().splitlines()[-1], time.perf_counter() - start
    finally:
        path.write_text(original)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="names of the bugs to try (default: all)")
    ap.add_argument("--list", action="store_true", help="list the bugs and stop")
    args = ap.parse_args()
    bugs = [b for b in BUGS if not args.only or b.name in args.only]
    if args.list:
        for b in bugs:
            print(f"{b.name:28s} {b.what}  [{b.file}; {', '.join(b.tests)}]")
        return
    caught = 0
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_repo(Path(tmp))
        print(f"{'bug':28s} {'caught':7s} {'s':>5s}  failing test(s)")
        for bug in bugs:
            ok, detail, seconds = run_bug(bug, repo)
            caught += ok
            print(f"{bug.name:28s} {'yes' if ok else 'NO':7s} {seconds:5.0f}  {detail}", flush=True)
    print(f"{caught} of {len(bugs)} deliberate bugs caught")
    sys.exit(0 if caught == len(bugs) else 1)


if __name__ == "__main__":
    main()
