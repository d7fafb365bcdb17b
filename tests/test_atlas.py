"""Names read off geometry, and the atlas site (driven in headless Chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dfe
from dfe.extraction.mesh import MOUTH_CORNERS, canonical_mesh
from dfe.views.naming import name_displacement

from conftest import run_dfe

STARTER = Path(dfe.__file__).parent / "data" / "starter.dfe"
V = canonical_mesh().vertices
RIGHT_CORNER, LEFT_CORNER = MOUTH_CORNERS  # 61 on the person's right (-x), 291 on the left (+x)
CHIN = 152


def bump(vertex: int, vector, radius: float = 0.8) -> np.ndarray:
    """A smooth displacement of the canonical face around one vertex (built here, not from the
    naming model's reference shapes)."""
    d2 = ((V - V[vertex]) ** 2).sum(1)
    return np.exp(-d2 / (2 * radius**2))[:, None] * np.asarray(vector, float)[None]


def aus(name) -> list[str]:
    return [a["au"] for a in name.action_units]


def test_names_from_geometry():
    up_out = bump(LEFT_CORNER, [0.4, 0.5, -0.2]) + bump(RIGHT_CORNER, [-0.4, 0.5, -0.2])
    smile = name_displacement(up_out)
    assert aus(smile)[0] == "AU12" and "lip corners" in smile.name and "up" in smile.name and "out" in smile.name
    down = name_displacement(bump(LEFT_CORNER, [0.1, -0.5, 0]) + bump(RIGHT_CORNER, [-0.1, -0.5, 0]))
    assert aus(down)[0] == "AU15" and "lip corners pulled down" in down.name
    left = name_displacement(bump(LEFT_CORNER, [0.4, 0.5, -0.2]))
    assert left.name.startswith("left lip corner") and left.action_units[0]["side"] == "left"
    right = name_displacement(bump(RIGHT_CORNER, [-0.4, 0.5, -0.2]))
    assert right.name.startswith("right lip corner") and right.action_units[0]["side"] == "right"
    jaw = name_displacement(bump(CHIN, [0, -1.0, -0.3], radius=2.5))
    assert aus(jaw)[0] == "AU26/27" and "jaw dropped" in jaw.name
    noise = name_displacement(np.random.default_rng(0).normal(scale=0.05, size=V.shape))
    assert noise.name == "unnamed" and noise.similarity < 0.5
    assert name_displacement(np.zeros_like(V)).name == "unnamed"


def test_blendshape_codes_get_the_same_kind_of_names():
    from dfe.extraction.face import BLENDSHAPE_NAMES
    from dfe.views.naming import blendshape_geometry

    scores = np.zeros(len(BLENDSHAPE_NAMES))
    scores[BLENDSHAPE_NAMES.index("jawOpen")] = 0.8
    name = name_displacement(blendshape_geometry(scores))
    assert aus(name)[0] == "AU26/27" and "jaw dropped" in name.name


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("DFE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (DFE_REQUIRE_CHROMIUM is set) but not installed")
        pytest.skip("chromium not installed (.ci/run installs it and requires it)")
    return found


def dump_dom(url: str, tmp_path: Path) -> str:
    run = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    return run.stdout


def test_atlas_site(extracted, tmp_path):
    from dfe.tokens.tokenizer import Tokenizer
    from dfe.views.atlas import build_atlas

    tok = Tokenizer.load(STARTER)
    wolfgang = [extracted / "WolfgangLanger_Pexels.parquet"]
    photos = sorted(extracted.glob("0*_*.parquet"))[:30]
    a = build_atlas(tok, tmp_path / "a", tables=wolfgang, progress=False, model_path=str(STARTER))
    b = build_atlas(tok, tmp_path / "b", tables=photos, progress=False)
    cards_a = {c: json.loads((tmp_path / "a" / "codes" / f"code_{c:04d}.json").read_text()) for c in a.codes}
    cards_b = {c: json.loads((tmp_path / "b" / "codes" / f"code_{c:04d}.json").read_text()) for c in b.codes}
    shared = set(cards_a) & set(cards_b)
    assert shared and all(cards_a[c]["name"] == cards_b[c]["name"] for c in shared)  # names never come from tables
    # a code's page links its pictures, faces and the command that reproduces them
    c = a.codes[0]
    page = (tmp_path / "a" / "codes" / f"code_{c:04d}.html").read_text()
    for src in re.findall(r"src='([^']+)'", page):
        assert (tmp_path / "a" / "codes" / src).is_file(), src
    assert f"dfe show {wolfgang[0]}:" in page and cards_a[c]["usage"] == int(sum(cards_a[c]["usage_per_level"]))
    # each code on its own colour scale: 0 to its own peak (issue 27: small codes were black squares)
    assert all(card["colour_scale_cm"] == pytest.approx(card["peak_cm"], abs=1e-3) for card in cards_a.values())
    per_code = sum(f.stat().st_size for f in a.files) / len(a.codes)
    assert per_code < 150_000
    # the index, driven in a browser: a filter in the URL shows exactly the matching codes
    want = sum(1 for card in cards_a.values() if card["name"] != "unnamed"
               and "AU12" in [u["au"] for u in card["action_units"]] and card["level"] == 1)
    dom = dump_dom(a.index.as_uri() + "?au=AU12&level=1", tmp_path)
    rows = re.findall(r'<tr class="code" data-code="(\d+)"', dom)
    assert len(rows) == want > 0, (len(rows), want)
    assert len(re.findall(r'<tr class="code" data-code="\d+"', dump_dom(a.index.as_uri(), tmp_path))) == len(a.codes)


def test_atlas_cli(real_model, extracted, tmp_path):
    labels = tmp_path / "labels.csv"
    rows = ["video,expression"] + [f"{p.stem},{p.stem.split('_')[1]}" for p in extracted.glob("0*_*.parquet")]
    labels.write_text("\n".join(rows) + "\n")
    out = tmp_path / "atlas"
    run = run_dfe("atlas", str(real_model), "-o", str(out),
                          "--tables", str(extracted), "--labels", str(labels))
    assert run.returncode == 0, run.stderr
    page = (out / "index.html").read_text()
    assert "Codes over-represented per expression" in page and "Expression templates" in page
    codes = json.loads((out / "codes.js").read_text().removeprefix("const CODES = ").rstrip(";\n"))
    assert len(codes) == len(list((out / "codes").glob("code_*.json")))


@pytest.mark.slow
def test_atlas_of_1024_codes(tmp_path):
    import time

    from dfe.extraction.synthetic import action_corpus
    from dfe.tokens.tokenizer import Tokenizer
    from dfe.views.atlas import build_atlas

    corpus = action_corpus(n_train=6000, n_test=10)
    tok = Tokenizer.fit(corpus.train, progress=False, codebook_size=1024, epochs=2, quantizer="rvq-vae")  # 1,024 code pages
    start = time.perf_counter()
    result = build_atlas(tok, tmp_path / "atlas", progress=False)
    seconds = time.perf_counter() - start
    per_code = sum(f.stat().st_size for f in result.files) / len(result.codes)
    print(f"atlas of {len(result.codes)} codes: {seconds:.1f} s, {per_code / 1024:.1f} KB per code")
    assert len(result.codes) == 1024 and per_code <= 150_000
    dom = dump_dom(result.index.as_uri() + "?sort=peak", tmp_path)
    assert len(re.findall(r'<tr class="code" data-code="\d+"', dom)) == 1024
