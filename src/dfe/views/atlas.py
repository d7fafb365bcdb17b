"""The codebook atlas: a small static site that opens offline, like a FACS manual for a model.

``index.html`` lists every drawn code (filter by level, region, action unit, usage and words;
sort by any column; the filters also read the URL, e.g. ``index.html?au=AU12&level=1``), then
expression templates (the most frequent token sets, named from their codes) and, with labels, the
codes over-represented per label. ``codes/code_0017.html`` shows one code: heatmaps (a shared
colour scale per level, arrows for the direction), the displaced face at a few strengths, the
code's name and closest action units, where it is used (face crops with the ``dfe show`` command
that reproduces them), co-occurring codes and near-duplicates. ``codes/code_0017.json`` is the
code's card for papers. Pictures are WebP, drawn by :mod:`dfe.views.render`.
"""

from __future__ import annotations

import html
import json
import logging
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.analysis.labels import read_labels
from dfe.extraction.io import MediaError, read_frames
from dfe.progress import counted
from dfe.table import BBOX_COLUMNS, FRAME_COLUMNS, find_tables, read_table, token_column_names, video_id
from dfe.tokens.tables import encode_table
from dfe.tokens.tokenizer import Tokenizer
from dfe.views.figures import crop_face, geometry_of, label_log_odds, profile_figure, surface_for
from dfe.views.naming import CodeName, name_codes, name_displacement
from dfe.views.render import Camera, colour_bar, encode_image, heatmap, shaded

log = logging.getLogger(__name__)

NEAR_DUPLICATE = 0.9  # cosine between two codes' deformations
ATLAS_VIEWS = {"front": (0.0, 320, 360), "side": (35.0, 220, 250)}  # heatmap: yaw (degrees), width, height (px)
STRENGTH_PICTURE_SIZE = (150, 170)  # width, height (px) of each face in the strength strip
STRENGTHS = (0.0, 1.0, 3.0)  # the strip shows the face moved by the code times each of these


@dataclass
class AtlasResult:
    index: Path
    codes: list[int]
    files: list[Path] = field(default_factory=list)

    @property
    def images(self) -> list[Path]:
        return [f for f in self.files if f.suffix in (".webp", ".jpg", ".png")]


@dataclass
class Usage:
    """How an encoded corpus uses the codes."""

    per_level: np.ndarray  # (N, K) counts
    frames: pd.DataFrame | None = None  # successful frames: table, frame, face_id, file, bbox_*, tok_*
    tokens: np.ndarray | None = None  # (n, K)

    @property
    def level(self) -> np.ndarray:
        """(N,) the level (1-based) each code is used at most; 0 when unused."""
        lv = np.argmax(self.per_level, axis=1) + 1
        return np.where(self.per_level.sum(1) > 0, lv, 0)

    def cooccurring(self, top: int = 5) -> dict[int, list[tuple[int, int]]]:
        if self.tokens is None or not len(self.tokens):
            return {}
        from scipy import sparse

        n, K = self.tokens.shape
        N = self.per_level.shape[0]
        m = sparse.csr_matrix((np.ones(n * K), (np.repeat(np.arange(n), K), self.tokens.ravel())), shape=(n, N))
        m.sum_duplicates()
        m.data = np.minimum(m.data, 1)  # a code twice in one frame counts once
        co = (m.T @ m).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        out = {}
        for c in range(N):
            row = co.getrow(c)
            order = np.argsort(-row.data)[:top]
            out[c] = [(int(row.indices[i]), int(row.data[i])) for i in order]
        return out


def corpus_usage(tok: Tokenizer, tables: list | None) -> Usage:
    """Encode the tables (their own tokens are not trusted: they may come from another model)."""
    N, K = tok.codebook_size, tok.levels
    if not tables:
        return Usage(np.zeros((N, K), dtype=np.int64))
    parts = []
    for path in find_tables(tables):
        df = read_table(path)
        if "success" not in df.columns:
            continue
        df = encode_table(df, tok)
        keep = [c for c in FRAME_COLUMNS + ["face_id"] + BBOX_COLUMNS if c in df.columns] + token_column_names(K)
        ok = df.loc[df["success"] == 1, keep].copy()
        ok.insert(0, "table", str(path))
        parts.append(ok)
    frames = pd.concat(parts, ignore_index=True) if parts else None
    if frames is None or frames.empty:
        return Usage(np.zeros((N, K), dtype=np.int64))
    tokens = tok.action_codes(frames[token_column_names(K)].to_numpy(np.int64))
    frames[token_column_names(K)] = tokens  # shape-gain: one page per action, any intensity
    per_level = np.stack([np.bincount(tokens[:, k], minlength=N) for k in range(K)], 1)
    return Usage(per_level, frames, tokens)


def near_duplicates(deformations: np.ndarray, codes: list[int], threshold: float = NEAR_DUPLICATE) -> dict[int, list[tuple[int, float]]]:
    """For each code, the other drawn codes whose deformation has cosine >= ``threshold`` with it."""
    d = deformations[codes].reshape(len(codes), -1)
    unit = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -1)
    out = {}
    for i, c in enumerate(codes):
        js = np.flatnonzero(sim[i] >= threshold)
        out[c] = sorted(((codes[j], round(float(sim[i, j]), 3)) for j in js), key=lambda x: -x[1])
    return out


# ---------------------------------------------------------------------------- pictures

class Painter:
    """The pictures of one atlas: same cameras and colour scales for every code."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray):
        self.vertices, self.triangles = vertices, triangles
        self.cameras = {k: Camera.fit(vertices, yaw, w, h) for k, (yaw, w, h) in ATLAS_VIEWS.items()}
        self.strength_camera = Camera.fit(vertices, 20.0, *STRENGTH_PICTURE_SIZE)

    def code_images(self, displacement: np.ndarray, vmax: float) -> dict[str, bytes]:
        front = heatmap(self.cameras["front"], self.vertices, self.triangles, displacement, vmax, arrows=28)
        front = np.vstack([front, colour_bar(vmax, front.shape[1])])
        side = heatmap(self.cameras["side"], self.vertices, self.triangles, displacement, vmax)
        strip = np.hstack([shaded(self.strength_camera, self.vertices + s * displacement, self.triangles)
                           for s in STRENGTHS])
        return {"front": encode_image(front), "side": encode_image(side), "steps": encode_image(strip)}


def _write(path: Path, data: bytes | str, files: list[Path]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    files.append(path)
    return path.name


def face_crops(rows: list[pd.Series], size: int = 96) -> list[bytes | None]:
    """JPEG face crops of table rows, reading each source file once (None where the media is gone)."""
    import cv2

    boxes = [tuple(float(r.get(c, np.nan)) for c in BBOX_COLUMNS) for r in rows]
    frames: dict[str, dict] = {}
    for file in {str(r.get("file", "")) for r in rows}:
        try:
            frames[file] = read_frames(file, [int(r["frame"]) for r in rows if str(r.get("file", "")) == file])
        except (MediaError, OSError, ValueError):
            frames[file] = {}
    out = []
    for r, box in zip(rows, boxes):
        fr = frames.get(str(r.get("file", "")), {}).get(int(r["frame"]))
        crop = crop_face(fr, box) if fr is not None and np.isfinite(box).all() else None
        if crop is None or crop.size == 0:
            out.append(None)
            continue
        small = cv2.resize(np.ascontiguousarray(crop[:, :, ::-1]), (size, size), interpolation=cv2.INTER_AREA)
        out.append(encode_image(small, ".jpg", 85))
    return out


# ---------------------------------------------------------------------------- cards and pages

def code_card(code: int, name: CodeName, usage: Usage, peak: float, level_scale: float,
              duplicates: list[tuple[int, float]], cooccurring: list[tuple[int, int]]) -> dict:
    """The JSON card of one code: what a paper needs to cite it."""
    lv = int(usage.level[code])
    return {"code": code, "name": name.name, "action_units": name.action_units, "similarity": name.similarity,
            "regions": name.regions, "peak_cm": round(float(peak), 3), "level": lv,
            "usage": int(usage.per_level[code].sum()),
            "usage_per_level": [int(x) for x in usage.per_level[code]],
            "colour_scale_cm": round(float(level_scale), 3),
            "near_duplicates": [{"code": c, "similarity": s} for c, s in duplicates],
            "cooccurring": [{"code": c, "frames": n} for c, n in cooccurring]}


STYLE = """
body{font-family:system-ui,sans-serif;margin:0 24px 40px;background:#fafafa;color:#222;font-size:15px}
h1{font-size:24px}h2{font-size:19px;margin-top:28px}a{color:#1a5fb4}
.bar{position:sticky;top:0;background:#fafafa;padding:10px 0;border-bottom:1px solid #ddd;display:flex;gap:10px;flex-wrap:wrap;align-items:center}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:middle}
th{cursor:pointer;background:#f0f0f0}td img{height:56px}.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:14px}.card{background:#fff;border:1px solid #ddd;padding:10px}
.faces img{width:96px;height:96px;margin:2px}.faces figure{margin:0}ol.cmds{padding-left:22px}
code{background:#eee;padding:1px 4px;font-size:12px}
pre.cmd{background:#eee;padding:4px 6px;font-size:12px;white-space:pre;overflow-x:auto;margin:2px 0;user-select:all}
.dup{color:#b5421a}.muted{color:#666}
"""

INDEX_JS = """
const params = new URLSearchParams(location.search);
const fields = ["level", "region", "au", "min_usage", "q", "sort"];
function el(id) { return document.getElementById(id); }
function matches(c) {
  const level = el("level").value, region = el("region").value, au = el("au").value;
  const minUsage = Number(el("min_usage").value || 0), q = el("q").value.toLowerCase();
  if (level && String(c.level) !== level) return false;
  if (region && !c.regions.includes(region)) return false;
  if (au && !c.aus.includes(au)) return false;
  if (c.usage < minUsage) return false;
  if (q && !(c.name + " " + c.code).toLowerCase().includes(q)) return false;
  return true;
}
function render() {
  const key = el("sort").value || "level";
  const rows = CODES.filter(matches).sort((a, b) =>
    key === "usage" || key === "peak" ? b[key] - a[key] : (a[key] > b[key]) - (a[key] < b[key]) || a.code - b.code);
  el("count").textContent = rows.length + " of " + CODES.length + " codes";
  el("codes").innerHTML = rows.map(c =>
    `<tr class="code" data-code="${c.code}"><td><a href="codes/code_${String(c.code).padStart(4, "0")}.html">${c.code}</a></td>` +
    `<td><img loading="lazy" src="codes/code_${String(c.code).padStart(4, "0")}_front.webp" alt=""></td>` +
    `<td>${c.level || "-"}</td><td>${c.name}${c.dups ? ` <span class="dup">(${c.dups} near-duplicate${c.dups > 1 ? "s" : ""})</span>` : ""}</td>` +
    `<td>${c.aus.join(" + ")}</td><td class="num">${c.peak.toFixed(2)}</td><td class="num">${c.usage}</td></tr>`).join("");
  const state = new URLSearchParams();
  fields.forEach(f => { if (el(f).value) state.set(f, el(f).value); });
  history.replaceState(null, "", state.toString() ? "?" + state : location.pathname);
}
function fill(id, values) {
  el(id).innerHTML = `<option value="">any</option>` + values.map(v => `<option>${v}</option>`).join("");
}
fill("level", [...new Set(CODES.map(c => c.level))].filter(x => x).sort((a, b) => a - b));
fill("region", [...new Set(CODES.flatMap(c => c.regions))].sort());
fill("au", [...new Set(CODES.flatMap(c => c.aus))].sort((a, b) => parseInt(a.slice(2)) - parseInt(b.slice(2))));
fields.forEach(f => { if (params.has(f)) el(f).value = params.get(f); el(f).addEventListener("input", render); });
document.querySelectorAll("th[data-sort]").forEach(th => th.addEventListener("click", () => { el("sort").value = th.dataset.sort; render(); }));
render();
"""


def _index_page(summary: str, templates_html: str, labels_html: str) -> str:
    controls = ('<label>level <select id="level"></select></label> <label>region <select id="region"></select></label> '
                '<label>action unit <select id="au"></select></label> '
                '<label>used at least <input id="min_usage" type="number" min="0" style="width:6em"></label> '
                '<label>words <input id="q" type="search" placeholder="e.g. lip corner"></label> '
                '<label>sort <select id="sort"><option value="level">level</option><option value="usage">usage</option>'
                '<option value="peak">peak</option><option value="code">code</option><option value="name">name</option>'
                '</select></label> <span id="count" class="muted"></span>')
    head = ('<tr><th data-sort="code">code</th><th>front</th><th data-sort="level">level</th><th data-sort="name">name</th>'
            '<th>action units</th><th data-sort="peak">peak (cm)</th><th data-sort="usage">frames</th></tr>')
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>dfe codebook atlas</title><style>{STYLE}</style>"
            f"</head><body><h1>dfe codebook atlas</h1><p>{summary}</p><div class='bar'>{controls}</div>"
            f"<table><thead>{head}</thead><tbody id='codes'></tbody></table>{templates_html}{labels_html}"
            f"<script src='codes.js'></script><script>{INDEX_JS}</script></body></html>")


def _code_page(card: dict, images: dict[str, str], examples: list[dict], model_path: str, unit: str) -> str:
    c = card["code"]
    aus = "".join(f"<li>{html.escape(a['au'])} {html.escape(a['title'])}{' (' + a['side'] + ')' if a['side'] else ''}: "
                  f"share {a['share']:.0%} of the movement</li>" for a in card["action_units"]) or "<li>none</li>"
    aus_words = ("<p class='muted'>dfe fits the code's movement as a non-negative mix of action-unit reference shapes. "
                 "<b>Share</b>: each unit's part of that mix (units under 15% are not listed, so the shares need not add "
                 f"up to 100%). <b>Similarity</b> {card['similarity']:.2f}: how closely the whole mix reproduces the code's "
                 "movement (cosine; 1 = exactly). A high similarity with several modest shares means: a blend of "
                 "these units, reproduced well.</p>")
    regions = "".join(f"<li>{html.escape(r['region'])} ({r['side']}): {html.escape(r['words'])}, "
                      f"{r['cm']:.2f} {unit} on average</li>" for r in card["regions"][:4]) or "<li>none</li>"

    def link(x: int) -> str:
        return f'<a href="code_{x:04d}.html">code {x}</a>'

    dups = ", ".join(f"{link(d['code'])} (cosine {d['similarity']:.2f})" for d in card["near_duplicates"]) or "none"
    co = ", ".join(f"{link(d['code'])} ({d['frames']} frames)" for d in card["cooccurring"]) or "none"
    shown = [e for e in examples if e.get("image")]
    faces = "".join(f"<figure><img src='{e['image']}' alt='face'><figcaption>frame {k + 1}</figcaption></figure>"
                    for k, e in enumerate(shown))
    if shown:  # full width, never wrapped: each command copy-pastes whole
        faces += ("</div><p class='muted'>Draw a frame's decomposition into its tokens:</p><ol class='cmds'>"
                  + "".join(f"<li><pre class='cmd'>{html.escape(e['command'])}</pre></li>" for e in shown) + "</ol><div>")
    pictures = ""
    if "front" in images:
        pictures = (f"<div class='grid'><div class='card'><img src='{images['front']}' alt='heatmap, front'>"
                    f"<p class='muted'>displacement, front; arrows x3; colour scale 0-{card['colour_scale_cm']:.2f} "
                    f"{unit}, this code's own peak</p></div>"
                    f"<div class='card'><img src='{images['side']}' alt='heatmap, three-quarter'><p class='muted'>"
                    f"three-quarter view</p></div><div class='card'><img src='{images['steps']}' alt='strength steps'>"
                    f"<p class='muted'>the face at strength {', '.join(f'x{s:g}' for s in STRENGTHS)}</p></div></div>")
    elif "profile" in images:
        pictures = f"<div class='card'><img src='{images['profile']}' alt='parameter profile'></div>"
    usage = ", ".join(f"L{k + 1}: {n}" for k, n in enumerate(card["usage_per_level"]))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>code {c}</title><style>{STYLE}</style></head><body>"
            f"<p><a href='../index.html'>all codes</a></p><h1>code {c}: {html.escape(card['name'])}</h1>"
            f"<p>peak {card['peak_cm']:.2f} {unit}; used {card['usage']} times as a token ({usage}); "
            f"action-unit fit similarity {card['similarity']:.2f}. <a href='code_{c:04d}.json'>JSON card</a></p>"
            f"{pictures}<h2>Closest action units</h2><ul>{aus}</ul>{aus_words}<h2>What moves</h2><ul>{regions}</ul>"
            f"<h2>Where it is used</h2><div class='grid faces'>{faces or '<p>no frames (pass --tables)</p>'}</div>"
            f"<h2>Co-occurring codes</h2><p>{co}</p><h2>Near-duplicates</h2><p class='dup'>{dups}</p></body></html>")


def _examples(usage: Usage, code: int, model_path: str, n: int = 4) -> list[dict]:
    """Up to ``n`` frames using the code, from as many tables as possible."""
    if usage.frames is None:
        return []
    hits = np.flatnonzero((usage.tokens == code).any(1))
    if not len(hits):
        return []
    frames = usage.frames.iloc[hits]
    picks = frames.groupby("table", sort=False).head(1).index.tolist()[:n]
    picks += [i for i in frames.index if i not in picks][: n - len(picks)]
    out = []
    for i in picks:
        row = usage.frames.loc[i]
        spec = shlex.quote(f"{row['table']}:{int(row['frame'])}:{int(row['face_id'])}")
        out.append({"row": row, "command": f"dfe show {spec} --model {shlex.quote(str(model_path))}"})
    return out


def build_atlas(tok: Tokenizer, outdir: str | Path, tables: list | None = None, labels: str | Path | None = None,
                label_column: str | None = None, max_codes: int | None = None, progress: bool = True, flame=None,
                model_path: str = "model.dfe") -> AtlasResult:
    """Write the atlas site into ``outdir`` (see the module's docstring). Without ``tables`` every
    code is drawn (no usage, one colour scale); with them, the used codes, coarse levels first."""
    if labels:
        read_labels(labels)  # a missing, empty or broken labels file stops here, before any drawing
    outdir = Path(outdir)
    files: list[Path] = []
    usage = corpus_usage(tok, tables)
    N = tok.codebook_size
    used = usage.per_level.sum(1) > 0
    codes = ([c for c in range(N) if used[c]] if used.any() else sorted(set(tok.action_codes(np.arange(N)).tolist())))
    codes.sort(key=lambda c: (int(usage.level[c]) or 99, -int(usage.per_level[c].sum()), c))
    codes = codes[:max_codes] if max_codes else codes
    surface = surface_for(tok, flame)
    deform = tok.code_deformations()
    geometry = geometry_of(tok, deform, flame) if surface is not None else None  # (N, V, 3)
    peaks = (np.linalg.norm(geometry, axis=2).max(1) if geometry is not None else np.abs(deform).max(1))
    unit = "cm" if surface is not None and surface.name != "FLAME" else "units"
    names = name_codes(tok, codes)
    dups = near_duplicates(geometry if geometry is not None else deform, codes)
    co = usage.cooccurring()
    painter = Painter(surface.vertices, surface.triangles) if surface is not None else None
    all_examples = {c: _examples(usage, c, model_path) for c in codes}
    flat = [ex for c in codes for ex in all_examples[c]]
    crops = {id(ex): crop for ex, crop in zip(flat, face_crops([ex["row"] for ex in flat]))}
    index_rows = []
    for c in counted(codes, len(codes), "atlas", "code", enabled=progress):
        stem = f"codes/code_{c:04d}"
        scale = float(peaks[c]) if peaks[c] > 0 else 1.0  # each code on its own scale: a small code is no black square
        images = {}
        if painter is not None:
            for view, data in painter.code_images(geometry[c], scale).items():
                images[view] = _write(outdir / f"{stem}_{view}.webp", data, files)
        else:
            p = profile_figure(deform[c], f"code {c}", outdir / f"{stem}_profile.png", tok.config.psi_kind)
            files.append(p)
            images["profile"] = p.name
        examples = all_examples[c]
        for j, ex in enumerate(examples):
            if crops.get(id(ex)) is not None:
                ex["image"] = _write(outdir / f"{stem}_face{j}.jpg", crops[id(ex)], files)
        card = code_card(c, names[c], usage, peaks[c], scale, dups.get(c, []), co.get(c, []))
        card["examples"] = [ex["command"] for ex in examples]
        _write(outdir / f"{stem}.json", json.dumps(card, indent=1), files)
        _write(outdir / f"{stem}.html", _code_page(card, images, examples, model_path, unit), files)
        index_rows.append({"code": c, "level": card["level"], "name": html.escape(card["name"]),
                           "regions": [r["region"] for r in card["regions"][:2]] if card["name"] != "unnamed" else [],
                           "aus": [a["au"] for a in card["action_units"]] if card["name"] != "unnamed" else [],
                           "peak": card["peak_cm"], "usage": card["usage"], "dups": len(card["near_duplicates"])})
    _write(outdir / "codes.js", "const CODES = " + json.dumps(index_rows) + ";\n", files)
    templates_html = _templates(tok, usage, outdir, painter, files, geometry is not None, flame)
    labels_html = _label_section(tok, usage, labels, label_column, names) if labels and usage.frames is not None else ""
    s = tok.summary
    kind = {"geometry": "3D face geometry (psi in cm)", "blendshapes": "MediaPipe's 52 blendshape scores"}.get(
        tok.config.psi_kind, f"FLAME parameters ({tok.config.psi_kind})")
    summary = (f"A model of {kind}: {N} codes shared by {tok.levels} levels, trained on {s.n_train:,} frames "
               f"(held-out cosine {s.val_cosine:.3f}, {s.dead_code_share:.0%} of codes unused). "
               f"{len(codes)} codes drawn" + (", those used in the given tables, coarse levels first" if used.any() else "")
               + ". Names and action units come from dfe's reference shapes (ICT FaceKit, registered onto MediaPipe's "
               "face), never from the tables. Each code's pictures are coloured on its own scale, from 0 to its own "
               "peak (stated under them), so small codes stay visible: compare sizes by the peak in cm.")
    index = outdir / "index.html"
    _write(index, _index_page(summary, templates_html, labels_html), files)
    return AtlasResult(index, codes, files)


def _templates(tok: Tokenizer, usage: Usage, outdir: Path, painter: Painter | None, files: list[Path],
               drawable: bool, flame, top: int = 8) -> str:
    """Most frequent token sets of the first two levels, each named from its summed deformation."""
    if usage.tokens is None or not len(usage.tokens):
        return ""
    depth = min(2, tok.levels)
    counts = Counter(map(tuple, usage.tokens[:, :depth].tolist())).most_common(top)
    bias = tok.decode(np.zeros((1, 0), np.int64))[0]
    cards = []
    for rank, (combo, n) in enumerate(counts):
        delta = tok.decode(np.array([combo]))[0] - bias
        img = ""
        name = "unnamed"
        if drawable and painter is not None:
            disp = geometry_of(tok, delta, flame)
            name = name_displacement(disp).name if tok.config.psi_kind in ("geometry", "blendshapes") else "unnamed"
            pic = heatmap(painter.cameras["side"], painter.vertices, painter.triangles, disp,
                          float(np.linalg.norm(disp, axis=1).max()))
            _write(outdir / "templates" / f"template_{rank}.webp", encode_image(pic), files)
            img = f"<img src='templates/template_{rank}.webp' alt='template'>"
        links = " + ".join(f"<a href='codes/code_{c:04d}.html'>{c}</a>" for c in combo)
        cards.append(f"<div class='card'>{img}<p>{links}: {html.escape(name)}<br><span class='muted'>"
                     f"{n / len(usage.tokens):.1%} of frames</span></p></div>")
    return f"<h2>Expression templates (most frequent first-{depth}-level token sets)</h2><div class='grid'>{''.join(cards)}</div>"


def _label_section(tok: Tokenizer, usage: Usage, labels, label_column, names: dict) -> str:
    lab = read_labels(labels)
    col = label_column or [c for c in lab.columns if c != lab.columns[0]][0]
    by_video = dict(zip(lab[lab.columns[0]], lab[col]))
    frame_labels = usage.frames["table"].map(lambda p: by_video.get(video_id(p)))
    known = frame_labels.notna().to_numpy()
    if not known.any():
        tables = sorted({video_id(p) for p in usage.frames["table"]})
        log.warning("labels file %s: its ids (e.g. %s) match none of the tables (e.g. %s); no label section drawn",
                    labels, ", ".join(list(by_video)[:3]), ", ".join(tables[:3]))
        return ""
    lo = label_log_odds(usage.tokens[known], frame_labels[known].to_numpy(), tok.codebook_size)
    items = []
    for value, grp in lo.groupby("label"):
        best = grp[grp["count"] > 0].nlargest(3, "log_odds")
        codes = ", ".join(f"<a href='codes/code_{int(r.code):04d}.html'>code {int(r.code)}</a> "
                          f"({html.escape(names.get(int(r.code), CodeName('unnamed')).name)}, log-odds {r.log_odds:.2f})"
                          for r in best.itertuples())
        items.append(f"<li><b>{html.escape(str(value))}</b>: {codes}</li>")
    return f"<h2>Codes over-represented per {html.escape(col)}</h2><ul>{''.join(items)}</ul>"
