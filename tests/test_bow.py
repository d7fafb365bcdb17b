"""Bag of tokens and the evaluate-task experiment: synthetic sessions, London smiles, video windows."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline

from dfe.analysis.features import BagOfTokens, BlendshapeFunctionals
from dfe.analysis.task import TaskData, check_folds, cross_validate, load_task

from conftest import run_dfe


def synthetic_sessions(n_per_class=30, n_frames=120, N=64, K=4, seed=0, shuffle=False):
    """Videos whose tokens are drawn with label-dependent frequencies."""
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.ones(N))
    shift = np.zeros(N)
    shift[:6] = 0.04  # class 1 over-uses six codes
    videos, y, groups = [], [], []
    for c in (0, 1):
        p = base + (shift if c else 0)
        p /= p.sum()
        for i in range(n_per_class):
            tokens = rng.choice(N, size=(n_frames, K), p=p)
            df = pd.DataFrame(tokens, columns=[f"tok_{k + 1}" for k in range(K)])
            df["success"] = 1
            df.loc[rng.random(n_frames) < 0.05, "success"] = 0  # some failed frames
            videos.append(df)
            y.append(c)
            groups.append(f"p{i}")  # person i recorded in both conditions
    y = np.asarray(y)
    if shuffle:
        y = rng.permutation(y)
    return videos, y, np.asarray(groups)


@pytest.mark.parametrize("shuffle", [False, True])
def test_bow_recovers_label_and_shuffled_control_is_chance(shuffle):
    videos, y, groups = synthetic_sessions(shuffle=shuffle)
    model = make_pipeline(BagOfTokens(64, weighting="tf", norm="l1"), LogisticRegression(C=100, max_iter=5000))
    pred = cross_val_predict(model, videos, y, groups=groups, cv=GroupKFold(5))
    f1 = f1_score(y, pred, average="macro")
    if shuffle:
        assert f1 < 0.7
    else:
        assert f1 >= 0.9


def test_bag_of_tokens_options():
    videos, _, _ = synthetic_sessions(n_per_class=2, n_frames=20)
    bow = BagOfTokens(64).fit(videos)
    X = bow.transform(videos)
    assert X.shape == (4, 64) and np.allclose(X.sum(1), 1)
    assert bow.n_skipped_ == sum(int((v["success"] == 0).sum()) for v in videos)
    assert BagOfTokens(64, levels="per_level", norm=None).fit_transform(videos).shape == (4, 256)
    tfidf = BagOfTokens(64, weighting="tfidf", norm="l2", bigrams=True).fit_transform(videos)
    assert tfidf.shape == (4, 64 + 64 * 64)
    assert np.allclose(np.sqrt(tfidf.multiply(tfidf).sum(1)), 1)


def test_clear_errors_for_bad_designs():
    one_group = TaskData([None] * 6, list("abcdef"), np.array([0, 1] * 3), np.array(["g"] * 6), "classification", [])
    with pytest.raises(ValueError, match="group"):
        check_folds(one_group, 5)
    lonely = TaskData([None] * 6, list("abcdef"), np.array([0, 0, 0, 0, 0, 1]), np.array(list("abcdef")),
                      "classification", [])
    with pytest.raises(ValueError, match="class 1 occurs in only 1 group"):
        check_folds(lonely, 5)
    few = TaskData([None] * 3, list("abc"), np.array([0, 1, 0]), np.array(list("abc")), "classification", [])
    with pytest.raises(ValueError, match="too few"):
        check_folds(few, 5)


@pytest.fixture(scope="module")
def encoded(extracted, real_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("encoded")
    run = run_dfe("encode", str(extracted), "--model", str(real_model),
                          "-o", str(out))
    assert run.returncode == 0, run.stderr
    return out


def test_london_smile_task_end_to_end(encoded, real_model, tmp_path):
    from conftest import FACES

    lab = pd.read_csv(FACES / "london.csv")
    lab["video"] = lab["file"].str.split("/").str[-1].str.rsplit(".", n=1).str[0]
    lab[["video", "expression", "person"]].assign(extra="x").to_csv(tmp_path / "labels.csv", index=False)
    # note: with --neutral auto, neutral photos have psi = 0; the task is still well-posed for the
    # blendshape baselines, and dfe sees "neutral = no deformation" tokens
    out = tmp_path / "report"
    run = run_dfe("evaluate-task", str(encoded), "--labels",
                          str(tmp_path / "labels.csv"), "--target", "expression", "--group", "person", "-o", str(out),
                          "--model", str(real_model), "--seeds", "2", "--folds", "3")
    assert run.returncode == 0, run.stderr
    assert "by a tokenizer trained on" in (out / "comparison.md").read_text()  # real_model saw every photo
    preds = pd.read_csv(out / "predictions.csv")
    probs = preds[[c for c in preds.columns if c.startswith("p_")]]
    assert probs.shape[1] == 2 and np.allclose(probs.sum(axis=1), 1.0)
    assert (preds["pred"] == np.where(probs.iloc[:, 0] > probs.iloc[:, 1], probs.columns[0][2:], probs.columns[1][2:])).all()
    comp = pd.read_csv(out / "comparison.csv")
    print(comp[["features", "macro_f1_mean", "accuracy_mean", "auroc_mean"]].to_string())
    assert set(comp["features"]) >= {"dfe tokens (BoW)", "blendshape functionals (AU-like)",
                                     "blendshape BoW (k-means)", "psi functionals"}
    assert comp["macro_f1_mean"].notna().all()
    # two fold assignments: the spread of their means is reported, and the pooled predictions hold both
    assert comp["macro_f1_seed_std"].notna().all() and sorted(preds["seed"].unique()) == [0, 1]
    folds = pd.read_csv(out / "fold_scores.csv")
    per_seed = folds[folds["features"] == "psi functionals"].groupby("seed")["macro_f1"].mean()
    assert np.isclose(comp.set_index("features").loc["psi functionals", "macro_f1_seed_std"], per_seed.std(ddof=0))
    assert "repeated with 2 seeds" in (out / "comparison.md").read_text()
    assert "Face model (if the tables were extracted with the bundled one): Identity was removed" in (out / "comparison.md").read_text()
    # smiles vs neutral photos (psi against the person's neutral photo): dfe separates them
    assert comp.set_index("features").loc["dfe tokens (BoW)", "macro_f1_mean"] >= 0.9
    # a shape-gain model also gets the bag of its actions weighted by their intensity
    assert comp.set_index("features").loc["dfe actions x intensity (BoW)", "macro_f1_mean"] >= 0.9
    assert (out / "comparison.md").read_text().count("|") > 20 and (out / "comparison.png").stat().st_size > 0
    assert "tables have no label" in (out / "comparison.md").read_text()  # the videos are not in london.csv


def test_folds_do_not_follow_how_person_ids_are_written(encoded, tmp_path):
    """The same tables and seed with person ids written '61' or '061' give the same folds and scores."""
    from conftest import FACES

    lab = pd.read_csv(FACES / "london.csv", dtype=str)
    lab["video"] = lab["file"].str.split("/").str[-1].str.rsplit(".", n=1).str[0]
    results = []
    for width in (1, 3):
        lab["person"] = [str(int(p)).zfill(width) for p in lab["video"].str[:3]]
        path = tmp_path / f"labels{width}.csv"
        lab[["video", "expression", "person"]].to_csv(path, index=False)
        data = load_task([encoded], path, "expression", group="person")
        sets = {"blendshape functionals (AU-like)": BlendshapeFunctionals()}
        folds, preds = cross_validate(data, 64, n_folds=3, seed=3, progress=False, sets=sets)
        results.append((folds, preds.sort_values(["features", "video"]).reset_index(drop=True)))
    (f1, p1), (f3, p3) = results
    assert set(p1["group"]) != set(p3["group"])  # the ids really were written differently
    pd.testing.assert_frame_equal(f1, f3)
    pd.testing.assert_frame_equal(p1.drop(columns="group"), p3.drop(columns="group"))


def test_ids_stay_text(encoded, tmp_path):
    src = sorted(encoded.glob("*.parquet"))[0]
    for name in ("001", "010"):
        (tmp_path / f"{name}.parquet").symlink_to(src)
    (tmp_path / "labels.csv").write_text("video,y,person\n001,a,007\n010,b,070\n")
    data = load_task([tmp_path], tmp_path / "labels.csv", "y", group="person")
    assert data.ids == ["001", "010"] and list(data.groups) == ["007", "070"] and list(data.y) == ["a", "b"]


@pytest.mark.slow
def test_video_windows_task(encoded, tmp_path):
    labels = pd.DataFrame({"video": ["WolfgangLanger_Pexels", "single_face", "face_noface", "noface_face"],
                           "speaker": ["woman", "man", "man", "man"]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    data = load_task([encoded], tmp_path / "labels.csv", "speaker", window=2.0)
    assert len(data.videos) > 10 and all("@" in i for i in data.ids)
    out = tmp_path / "report"
    run = run_dfe("evaluate-task", str(encoded), "--labels",
                          str(tmp_path / "labels.csv"), "--target", "speaker", "--window", "2", "--folds", "2",
                          "-o", str(out))
    # grouped by video: 'woman' has one video only -> a clear sentence, not a traceback
    assert run.returncode == 2 and "occurs in only 1 group" in run.stderr and "Traceback" not in run.stderr
    labels["speaker"] = ["a", "b", "a", "b"]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    run = run_dfe("evaluate-task", str(encoded), "--labels",
                          str(tmp_path / "labels.csv"), "--target", "speaker", "--window", "2", "--folds", "2",
                          "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert len(pd.read_csv(out / "comparison.csv")) == 4


def test_bag_counts_by_hand():
    """Counts computed by hand for a 4-code vocabulary; the failed frame (success=0) is skipped and
    the bigram joins the frames on either side of it."""
    df = pd.DataFrame({"tok_1": [1, 1, -1, 2, 3], "tok_2": [2, 3, -1, 2, 3], "success": [1, 1, 0, 1, 1]})
    pooled = BagOfTokens(4, norm=None).fit_transform([df]).toarray()[0]
    np.testing.assert_array_equal(pooled, [0, 2, 3, 3])  # 1,1,2,3 at level 1 + 2,3,2,3 at level 2
    per_level = BagOfTokens(4, levels="per_level", norm=None).fit_transform([df]).toarray()[0]
    np.testing.assert_array_equal(per_level, [0, 2, 1, 1, 0, 0, 2, 2])
    weighted = BagOfTokens(4, levels="weighted", norm=None).fit_transform([df]).toarray()[0]
    np.testing.assert_allclose(weighted, [0, 2, 1 + 2 / 2, 1 + 2 / 2])
    bi = BagOfTokens(4, norm=None, bigrams=True).fit_transform([df]).toarray()[0][4:].reshape(4, 4)
    expected = np.zeros((4, 4))
    expected[1, 1] = expected[1, 2] = expected[2, 3] = 1  # level-1 sequence 1 -> 1 -> 2 -> 3
    np.testing.assert_array_equal(bi, expected)
    assert BagOfTokens(4).fit([df]).transform([df]).sum() == pytest.approx(1.0)
    empty = pd.DataFrame({"tok_1": [-1], "tok_2": [-1], "success": [0]})
    assert BagOfTokens(4, norm=None).fit_transform([empty]).sum() == 0


def test_cross_validation_never_trains_on_test_groups():
    """A spy feature set records what each fold trains on and predicts: never the same video, never
    the same group; and every video is predicted exactly once."""
    from sklearn.base import BaseEstimator, TransformerMixin

    import dfe.analysis.task as bow

    seen = []

    class Spy(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            seen.append(("fit", {id(v) for v in X}))
            return self

        def transform(self, X):
            seen.append(("transform", {id(v) for v in X}))
            return np.array([[len(v), float(v["tok_1"].mean())] for v in X])

    videos, y, groups = synthetic_sessions(n_per_class=10, n_frames=30)
    data = TaskData(videos, [f"v{i}" for i in range(len(videos))], y, groups, "classification", [])
    original = bow.feature_sets
    bow.feature_sets = lambda *a, **k: {"spy": Spy()}
    try:
        folds, preds = bow.cross_validate(data, 64, n_folds=5, progress=False)
    finally:
        bow.feature_sets = original
    assert sorted(preds["video"]) == sorted(data.ids)
    by_id = {id(v): g for v, g in zip(videos, groups)}
    fits = [s for kind, s in seen if kind == "fit"]
    for f, fold in preds.groupby("fold"):
        test_ids = {id(videos[data.ids.index(v)]) for v in fold["video"]}
        train = fits[f]
        assert not (train & test_ids)
        assert not ({by_id[i] for i in train} & {by_id[i] for i in test_ids})


def test_functionals_and_scores_by_hand():
    from dfe.analysis.task import ccc, scores
    from dfe.analysis.features import functionals

    v = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    f = functionals(v, threshold=1.5).reshape(6, 2)
    np.testing.assert_allclose(f[:, 0], [2.0, np.sqrt(2.0), 0.4, 2.0, 3.6, 0.6])  # mean std p10 p50 p90 share>1.5
    np.testing.assert_allclose(f[:, 1], [1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert np.isnan(functionals(np.zeros((0, 2)))).all() and functionals(np.zeros((0, 2))).shape == (10,)
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(y, y) == pytest.approx(1.0) and ccc(y, y + 1) == pytest.approx(2 * 1.25 / (2.5 + 1))
    s = scores("classification", np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert s["accuracy"] == 0.75 and s["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    r = scores("regression", y, y * 2)
    assert r["mae"] == pytest.approx(2.5) and r["pearson_r"] == pytest.approx(1.0)


def test_weightings_and_errors_by_hand():
    a = pd.DataFrame({"tok_1": [0, 0, 1], "success": 1})
    b = pd.DataFrame({"tok_1": [1, 2, 2], "success": 1})
    tfidf = BagOfTokens(3, weighting="tfidf", norm=None).fit([a, b])
    idf = np.log(3 / np.array([2, 3, 2])) + 1  # (1 + videos) / (1 + videos with the code)
    np.testing.assert_allclose(tfidf.idf_, idf)
    np.testing.assert_allclose(tfidf.transform([a]).toarray()[0], [(1 + np.log(2)) * idf[0], idf[1], 0])
    np.testing.assert_allclose(BagOfTokens(3, weighting="log", norm=None).fit_transform([a]).toarray()[0],
                               [1 + np.log(2), 1, 0])
    np.testing.assert_allclose(BagOfTokens(3, weighting="binary", norm=None).fit_transform([a]).toarray()[0], [1, 1, 0])
    np.testing.assert_allclose(BagOfTokens(3, norm="l2").fit_transform([a]).toarray()[0], [2 / np.sqrt(5), 1 / np.sqrt(5), 0])
    with pytest.raises(ValueError, match="token id 2 >= codebook_size 2"):
        BagOfTokens(2).fit([b])
    assert BagOfTokens(3).fit([np.array([[0], [1], [-1]])]).n_skipped_ == 1
    from dfe.analysis.features import functionals
    from dfe.analysis.task import split_windows

    assert functionals(np.zeros((0, 2)), threshold=0.5).shape == (12,)
    video = pd.DataFrame({"timestamp": [0.0, 0.5, 1.0, 1.9, 2.0], "video": "v", "success": 1})
    parts = split_windows(video, 1.0)
    assert [len(p) for p in parts] == [2, 2, 1] and [p["video"].iloc[0] for p in parts] == ["v@0", "v@1", "v@2"]


def test_fold_counts_scores_and_edge_cases_by_hand():
    from dfe.analysis.task import scores

    # 2 groups are enough; the folds shrink to the groups of the rarest class
    two = TaskData([None] * 4, list("abcd"), np.array([0, 1, 0, 1]), np.array(["g1", "g1", "g2", "g2"]),
                   "classification", [])
    assert check_folds(two, 5) == 2
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    groups = np.array(["a", "b", "c", "d", "e", "f", "g", "h"])
    assert check_folds(TaskData([None] * 8, list(groups), y, groups, "classification", []), 5) == 3
    reg = TaskData([None] * 8, list(groups), np.arange(8.0), groups, "regression", [])
    assert check_folds(reg, 5) == 5  # no class limit for regression
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.8, 0.2]])
    s = scores("classification", np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]), proba, np.array([0, 1]))
    assert s["auroc"] == 1.0  # class-1 probabilities rank both positives first
    assert np.isnan(scores("regression", np.arange(4.0), np.ones(4))["pearson_r"])
    assert BagOfTokens(4, norm=None).fit([pd.DataFrame({"tok_1": [1], "success": 1})]).transform([]).shape == (0, 4)
    with pytest.raises(ValueError, match="weighting"):
        BagOfTokens(4, weighting="nonsense").fit_transform([pd.DataFrame({"tok_1": [1], "success": 1})])
    with pytest.raises(ValueError, match="levels"):
        BagOfTokens(4, levels="nonsense").fit([pd.DataFrame({"tok_1": [1], "success": 1})])


def test_psi_functionals_and_small_variance_correlation_by_hand():
    from dfe.analysis.features import PsiFunctionals
    from dfe.analysis.task import scores

    df = pd.DataFrame({"psi_0": [3.0, 0.0], "psi_1": [4.0, 0.0], "psi_2": [0.0, 0.0],
                       "psi_3": [0.0, 1.0], "psi_4": [0.0, 0.0], "psi_5": [0.0, 0.0], "success": [1, 1]})
    f = PsiFunctionals().fit_transform([df])[0].reshape(5, 2)  # per vertex: |(3,4,0)|=5, 0 then 0, 1
    np.testing.assert_allclose(f[0], [2.5, 0.5])  # means
    np.testing.assert_allclose(f[1], [2.5, 0.5])  # standard deviations
    y = np.array([0.0, 0.1, 0.2, 0.3])  # small spread: still a defined correlation
    assert scores("regression", y, 2 * y)["pearson_r"] == pytest.approx(1.0)


def test_bootstrap_metric_equals_scikit_learn_per_resample():
    """The vectorised metric of the paired bootstrap is scikit-learn's macro-F1 (and dfe's CCC) on every row."""
    from sklearn.metrics import f1_score

    from dfe.analysis.task import ccc, primary_metric

    rng = np.random.default_rng(0)
    y, pred = rng.choice(["a", "b", "c"], (40, 25)), rng.choice(["a", "b", "c", "d"], (40, 25))
    expected = [f1_score(a, b, average="macro", zero_division=0) for a, b in zip(y, pred)]
    np.testing.assert_allclose(primary_metric("classification", y, pred), expected, atol=1e-12)
    yr = rng.normal(size=(10, 30))
    pr = yr + rng.normal(size=(10, 30))
    np.testing.assert_allclose(primary_metric("regression", yr, pr), [ccc(a, b) for a, b in zip(yr, pr)], atol=1e-12)


def test_infer_task_rule_by_hand():
    from dfe.analysis.task import infer_task

    assert infer_task(np.array(["happy", "sad"]))[0] == "classification"
    assert infer_task(np.array([0, 1, 1, 0]))[0] == "classification"
    assert infer_task(np.array([0.0, 1.0, 1.0]))[0] == "classification"  # whole numbers read as floats
    assert infer_task(np.array([True, False]))[0] == "classification"
    assert infer_task(np.arange(10) + 1)[0] == "classification"  # a 1-10 rating: 10 classes
    task, reason = infer_task(np.arange(11))
    assert task == "regression" and "11 distinct whole numbers (more than 10)" in reason
    task, reason = infer_task(np.array([0.5, 1.0, 1.5, 0.5]))
    assert task == "regression" and "non-integer" in reason


def _tiny_task(tmp_path, targets: list, n_frames: int = 20, top_token: int = 15):
    """Tables with random tokens (0 .. top_token), and a labels CSV giving each table the next of
    ``targets`` and a person (two tables each)."""
    from dfe.table import write_table

    rng = np.random.default_rng(0)
    rows = []
    for i, target in enumerate(targets):
        vid = f"v{i}"
        df = pd.DataFrame(rng.integers(0, top_token + 1, (n_frames, 2)), columns=["tok_1", "tok_2"])
        df.insert(0, "frame", np.arange(n_frames))
        df.insert(1, "timestamp", np.arange(n_frames) / 25.0)
        df["success"], df["face_id"] = 1, 0
        write_table(df, tmp_path / "tables" / f"{vid}.parquet")
        rows.append((vid, target, f"p{i // 2}"))
    pd.DataFrame(rows, columns=["video", "y", "person"]).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path / "tables", tmp_path / "labels.csv"


def test_load_task_takes_the_given_task_over_the_rule(tmp_path):
    from dfe.analysis.task import TaskError

    tables, labels = _tiny_task(tmp_path, list(range(12)))
    data = load_task([tables], labels, "y")
    assert data.task == "regression" and "12 distinct whole numbers" in data.task_reason
    given = load_task([tables], labels, "y", task="classification")
    assert given.task == "classification" and given.task_reason == "chosen by the caller"
    with pytest.raises(TaskError, match="task must be 'classification' or 'regression', not 'ordinal'"):
        load_task([tables], labels, "y", task="ordinal")
    text_tables, text_labels = _tiny_task(tmp_path / "text", ["a", "b"] * 4)
    with pytest.raises(TaskError, match="holds text .* regression needs numbers"):
        load_task([text_tables], text_labels, "y", task="regression")


def test_vocabulary_comes_from_the_model_not_the_largest_token(tmp_path):
    from types import SimpleNamespace

    from dfe.analysis.task import TaskError, TaskOptions, vocabulary_size

    tables, labels = _tiny_task(tmp_path, ["a", "b"] * 4, top_token=15)
    data = load_task([tables], labels, "y")
    assert vocabulary_size(data, TaskOptions(), SimpleNamespace(codebook_size=64)) == (
        64, "64 codes (the codebook of the model that encoded the tables)")
    assert vocabulary_size(data, TaskOptions())[0] == 256  # TokenizerConfig's default, no model given
    refit = TaskOptions(refit_tokenizer=True, tokenizer_settings={"codebook_size": 32})
    assert vocabulary_size(data, refit, SimpleNamespace(codebook_size=64))[0] == 32
    assert vocabulary_size(data, TaskOptions(refit_tokenizer=True))[0] == 256
    with pytest.raises(TaskError, match="table v0 has token 15, beyond the 12 codes of the codebook of the model"):
        vocabulary_size(data, TaskOptions(), SimpleNamespace(codebook_size=12))


def test_task_options_say_what_is_wrong():
    from dfe.analysis.task import TaskError, TaskOptions

    with pytest.raises(TaskError, match="give them with refit_tokenizer=True"):
        TaskOptions(tokenizer_settings={"codebook_size": 64})
    with pytest.raises(TaskError, match="unknown tokenizer options: codebooks"):
        TaskOptions(refit_tokenizer=True, tokenizer_settings={"codebooks": 64})
    with pytest.raises(TaskError, match="n_folds must be at least 2"):
        TaskOptions(n_folds=1)


def test_evaluate_task_with_options_reports_the_rule_and_the_vocabulary(tmp_path):
    from types import SimpleNamespace

    from dfe.analysis.task import TaskOptions, evaluate_task

    tables, labels = _tiny_task(tmp_path, list(range(12)))  # a regression target: RidgeCV fits fast
    model = SimpleNamespace(codebook_size=64, seen_groups=set())
    options = TaskOptions(group="person", n_folds=2, seeds=1, progress=False)
    summary = evaluate_task([tables], labels, "y", tmp_path / "report", options, model=model)
    assert summary["features"].tolist() == ["dfe tokens (BoW)"]  # the tables have tokens only
    report = (tmp_path / "report" / "comparison.md").read_text()
    assert "Regression: the target has 12 distinct whole numbers (more than 10)." in report
    assert "bags of 64 codes (the codebook of the model that encoded the tables)" in report
    assert "12 videos, 6 groups (by person), 2-fold grouped CV, repeated with 1 seed (0..0)" in report
    assert "by a tokenizer that saw none of the 12 videos" in report
