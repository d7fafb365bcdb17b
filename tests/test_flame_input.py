"""FLAME input in the exact layouts EMOCA/DECA, inferno, SMIRK and a CSV write, and the FLAME mesh."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch

from dfe.extraction.flame import FlameInputError, FlameModel, find_flame_units, read_unit
from dfe.runs.import_flame import import_flame
from dfe.table import read_table

from conftest import run_dfe

RNG = np.random.default_rng(0)


def emoca_item(folder, exp, pose, extra=True):
    folder.mkdir(parents=True)
    np.save(folder / "exp.npy", exp.reshape(1, -1).astype(np.float32))
    np.save(folder / "pose.npy", pose.reshape(1, -1).astype(np.float32))
    if extra:  # what --save_codes writes beside them
        np.save(folder / "shape.npy", RNG.normal(size=(1, 100)).astype(np.float32))
        np.save(folder / "tex.npy", RNG.normal(size=(1, 50)).astype(np.float32))
        np.save(folder / "detail.npy", RNG.normal(size=(1, 128)).astype(np.float32))


def flame_cols(df, n=53):
    return df[[f"flame_{i}" for i in range(n)]].to_numpy(float)


def test_emoca_image_folders(tmp_path):
    src = tmp_path / "emoca_out"
    exps, poses = RNG.normal(size=(12, 50)), RNG.normal(scale=0.1, size=(12, 6))
    poses[3, :3] = [0.0, 0.2, 0.0]  # a head turned 0.2 rad about y: yaw 11.46 degrees
    for i in range(12):
        emoca_item(src / f"img{i + 1}", exps[i], poses[i])  # img1 .. img12: natural order
    run = run_dfe("import-flame", str(src), "-o", str(tmp_path / "t"))
    assert run.returncode == 0, run.stderr
    df = read_table(tmp_path / "t" / "emoca_out.parquet")
    assert len(df) == 12 and df["psi_kind"].eq("flame").all()
    np.testing.assert_allclose(flame_cols(df)[:, :50], exps, atol=1e-6)
    np.testing.assert_allclose(flame_cols(df)[:, 50:], poses[:, 3:6], atol=1e-6)  # jaw = pose[3:6]
    assert df["file"].iloc[9].endswith("img10")
    np.testing.assert_allclose(df.loc[3, ["pose_yaw", "pose_pitch", "pose_roll"]].to_numpy(float),
                               [np.degrees(0.2), 0, 0], atol=1e-4)
    # a rerun resumes
    again = run_dfe("import-flame", str(src), "-o", str(tmp_path / "t"))
    assert "1 up to date" in again.stdout


def test_emoca_video_results_and_faces(tmp_path):
    src = tmp_path / "out"
    truth = {}
    for video in ("clipA", "clipB"):
        for frame in range(1, 6):
            for face in ((0, 1) if frame in (2, 3) else (0,)):
                exp, pose = RNG.normal(size=50), RNG.normal(scale=0.1, size=6)
                truth[(video, frame, face)] = (exp, pose)
                emoca_item(src / video / "results" / "EMOCA_v2_lr_mse_20" / f"{frame:06d}_{face:03d}", exp, pose,
                           extra=False)
    units = find_flame_units(src)
    assert [u.id for u in units] == ["clipA", "clipB"]
    import_flame(src, tmp_path / "t")
    for video in ("clipA", "clipB"):
        df = read_table(tmp_path / "t" / f"{video}.parquet")
        assert len(df) == 7 and df["frame"].tolist() == [1, 2, 2, 3, 3, 4, 5]
        assert df["face_id"].tolist() == [0, 0, 1, 0, 1, 0, 0]
        for _, row in df.iterrows():
            exp, pose = truth[(video, row["frame"], row["face_id"])]
            np.testing.assert_allclose(flame_cols(row.to_frame().T)[0], np.r_[exp, pose[3:6]], atol=1e-6)


def test_inferno_smirk_pkl_pt_and_csv(tmp_path):
    inferno = tmp_path / "inferno"
    exp, jaw, glob = RNG.normal(size=(3, 50)), RNG.normal(size=(3, 3)), RNG.normal(size=(3, 3))
    for i in range(3):
        d = inferno / f"face{i}"
        d.mkdir(parents=True)
        np.save(d / "exp.npy", exp[i][None])
        np.save(d / "jawpose.npy", jaw[i][None])
        np.save(d / "globalpose.npy", glob[i][None])
        np.save(d / "cam.npy", np.ones((1, 3)))
    import_flame(inferno, tmp_path / "t")
    df = read_table(tmp_path / "t" / "inferno.parquet")
    np.testing.assert_allclose(flame_cols(df), np.hstack([exp, jaw]), atol=1e-6)
    assert df["pose_yaw"].notna().all()

    smirk = tmp_path / "smirk.npz"  # stacked (T, 50) with eyelids -> flame+eyelids
    e, j, lid = RNG.normal(size=(40, 50)), RNG.normal(size=(40, 3)), RNG.random((40, 2))
    np.savez(smirk, expression_params=e, jaw_params=j, eyelid_params=lid)
    import_flame(smirk, tmp_path / "t")
    df = read_table(tmp_path / "t" / "smirk.parquet")
    assert df["psi_kind"].eq("flame+eyelids").all()
    np.testing.assert_allclose(flame_cols(df, 55), np.hstack([e, j, lid]), atol=1e-6)

    pts = tmp_path / "pt_frames"  # one frame per .pt file, natural order
    pts.mkdir()
    for i in range(11):
        torch.save({"exp": torch.tensor(e[i]), "pose": torch.tensor(np.r_[glob[0], j[i]])}, pts / f"f{i}.pt")
    import_flame(pts, tmp_path / "t")
    np.testing.assert_allclose(flame_cols(read_table(tmp_path / "t" / "pt_frames.parquet")), np.hstack([e[:11], j[:11]]),
                               atol=1e-6)
    with open(tmp_path / "one.pkl", "wb") as fh:
        pickle.dump({"expcode": e[:5], "jawpose": j[:5]}, fh)
    import_flame(tmp_path / "one.pkl", tmp_path / "t")
    assert len(read_table(tmp_path / "t" / "one.parquet")) == 5

    csv = pd.DataFrame(np.hstack([e[:4], j[:4]]), columns=[f"exp_{i}" for i in range(50)] + ["jaw_0", "jaw_1", "jaw_2"])
    csv["frame"] = [10, 11, 12, 13]
    csv.to_csv(tmp_path / "mine.csv", index=False)
    import_flame(tmp_path / "mine.csv", tmp_path / "t")
    df = read_table(tmp_path / "t" / "mine.parquet")
    assert df["frame"].tolist() == [10, 11, 12, 13]
    np.testing.assert_allclose(flame_cols(df), np.hstack([e[:4], j[:4]]), atol=1e-5)


def test_bad_flame_outputs_are_one_sentence(tmp_path):
    bad = tmp_path / "short"
    emoca_item(bad / "img1", RNG.normal(size=20), RNG.normal(size=6), extra=False)
    with pytest.raises(FlameInputError, match="img1.*20 values"):
        read_unit(find_flame_units(bad)[0])
    nan = tmp_path / "nan.npz"
    np.savez(nan, exp=np.full((3, 50), np.nan), jaw=np.zeros((3, 3)))
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, something=np.zeros(3))
    mixed = tmp_path / "mixed"
    emoca_item(mixed / "img1", RNG.normal(size=50), RNG.normal(size=6), extra=False)
    np.savez(mixed / "loose.npz", exp=np.zeros(50), jaw=np.zeros(3))
    out = tmp_path / "o"
    for src, words in ((nan, "NaN"), (nokey, "no expression array"), (bad, "20 values")):
        run = run_dfe("import-flame", str(src), "-o", str(out))
        assert run.returncode == 1 and words in run.stderr and src.name in run.stderr and "Traceback" not in run.stderr
    run = run_dfe("import-flame", str(mixed), "-o", str(out))
    assert run.returncode == 2 and "mixes" in run.stderr and "Traceback" not in run.stderr


# ------------------------------------------------------------------------------ the FLAME mesh

def fake_flame_pickle(path, V=12, E=4):
    """A FLAME-like pickle with the real key structure, chumpy objects and a sparse J_regressor,
    written while a stand-in `chumpy` module exists (it is gone when the test loads it)."""
    import scipy.sparse

    ch = types.ModuleType("chumpy")
    ch_ch = types.ModuleType("chumpy.ch")

    class Ch:  # what chumpy pickles: an object whose state holds the array as 'x'
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_ch.Ch = Ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = ch, ch_ch
    rng = np.random.default_rng(1)
    v = rng.normal(size=(V, 3))
    shapedirs = rng.normal(size=(V, 3, 300 + E)) * 0.01
    posedirs = rng.normal(size=(V, 3, 36)) * 0.01
    jreg = np.zeros((5, V))
    jreg[np.arange(5), np.arange(5)] = 1.0  # joint j sits on vertex j
    weights = np.zeros((V, 5))
    weights[:, 2] = 1.0  # every vertex follows the jaw
    model = {"v_template": v, "shapedirs": Ch(shapedirs), "posedirs": posedirs,
             "J_regressor": scipy.sparse.csc_matrix(jreg), "weights": Ch(weights),
             "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), "f": np.array([[0, 1, 2]]),
             "bs_style": "lbs", "bs_type": "lrotmin"}
    try:
        with open(path, "wb") as fh:
            pickle.dump(model, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    return v, shapedirs, posedirs


def test_flame_pickle_without_chumpy_and_hand_computed_meshes(tmp_path):
    from scipy.spatial.transform import Rotation

    v, shapedirs, posedirs = fake_flame_pickle(tmp_path / "generic_model.pkl")
    assert "chumpy" not in sys.modules
    model = FlameModel.load(tmp_path / "generic_model.pkl")
    np.testing.assert_allclose(model.mesh(np.zeros(4)), v, atol=1e-12)
    e = np.array([0.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(model.mesh(e), v + 2.0 * shapedirs[:, :, 301], atol=1e-12)
    # jaw rotation: every vertex is skinned to joint 2 (vertex 2 of the expression-free mesh),
    # pose correctives add posedirs @ (R - I) of joints 1..4 (only the jaw's is non-zero)
    jaw = np.array([0.3, 0.0, 0.0])
    R = Rotation.from_rotvec(jaw).as_matrix()
    feature = np.zeros((4, 3, 3))
    feature[1] = R - np.eye(3)
    posed = v + posedirs @ feature.ravel()
    expected = (posed - v[2]) @ R.T + v[2]
    np.testing.assert_allclose(model.mesh(np.zeros(4), jaw), expected, atol=1e-10)
    with pytest.raises(FlameInputError, match="missing"):
        with open(tmp_path / "other.pkl", "wb") as fh:
            pickle.dump({"v_template": v}, fh)
        FlameModel.load(tmp_path / "other.pkl")


@pytest.mark.slow
def test_flame_fit_encode_atlas_evaluate_end_to_end(tmp_path):
    """Synthetic FLAME psi of 12 videos (two kinds of expression) -> import -> fit -> encode ->
    atlas (profiles, and the FLAME face from a FLAME-like model file) -> evaluate -> evaluate-task."""
    src = tmp_path / "smirk"
    src.mkdir()
    rng = np.random.default_rng(3)
    labels = []
    for v in range(12):
        kind = v % 2
        exp = rng.normal(scale=0.3, size=(60, 50))
        exp[:, 0 if kind == 0 else 1] += np.linspace(0, 3, 60)  # each kind moves its own component
        np.savez(src / f"video{v}.npz", expression_params=exp, jaw_params=rng.normal(scale=0.05, size=(60, 3)))
        labels.append((f"video{v}", "a" if kind == 0 else "b", f"p{v // 2}"))
    tables = tmp_path / "tables"
    for v in range(12):
        import_flame(src / f"video{v}.npz", tables)
    model = tmp_path / "flame.dfe"

    def dfe(*args):
        run = run_dfe(*map(str, args))
        assert run.returncode == 0, run.stderr[-2000:]
        return run

    dfe("fit", tables, "-o", model, "--psi-kind", "flame", "-N", "16", "--epochs", "4")
    dfe("encode", tables, "--model", model, "--in-place")
    assert read_table(tables / "video0.parquet")[[f"tok_{k}" for k in range(1, 5)]].ge(0).all().all()
    dfe("atlas", model, "--tables", tables, "-o", tmp_path / "atlas", "--max-codes", "3")
    assert len(list((tmp_path / "atlas" / "codes").glob("code_*_profile.png"))) == 3
    fake = tmp_path / "generic_model.pkl"
    v, _, _ = fake_flame_pickle(fake, V=30, E=50)
    dfe("atlas", model, "--tables", tables, "-o", tmp_path / "atlas3d", "--max-codes", "2", "--flame-model", fake)
    assert "FLAME" in (tmp_path / "atlas3d" / "index.html").read_text()
    assert len(list((tmp_path / "atlas3d" / "codes").glob("code_*_front.webp"))) == 2
    dfe("evaluate", tables, "--model", model, "-o", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "no blendshape columns" in report and "dfe tokens" in report
    pd.DataFrame(labels, columns=["video", "kind", "person"]).to_csv(tmp_path / "labels.csv", index=False)
    dfe("evaluate-task", tables, "--labels", tmp_path / "labels.csv", "--target", "kind", "--group", "person",
        "--folds", "3", "-o", tmp_path / "task")
    comp = pd.read_csv(tmp_path / "task" / "comparison.csv")
    assert comp["features"].tolist() == ["dfe tokens (BoW)"]
    assert "left out" in (tmp_path / "task" / "comparison.md").read_text()
