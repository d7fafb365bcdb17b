"""The study's report: one static ``index.html`` (opens offline) and its two plots, drawn from the
study's ``results.json`` (a dict) and the files beside it (atlas pictures, timelines).

Every figure carries its provenance line: what was held out, and whether the face model or the
dictionary saw the tested people. The page counts its own images once loaded (``<body
data-images="loaded/total">``), so a headless browser can check that every picture is there.
"""

from __future__ import annotations

import html
from pathlib import Path

from dfe.analysis.reports import agg_pyplot, bar_chart, save_figure

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1120px;padding:0 24px 48px;background:#fafafa;color:#222;font-size:15px}
h1{font-size:25px;margin-bottom:4px}h2{font-size:19px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
a{color:#1a5fb4}table{border-collapse:collapse;width:100%;font-size:14px}
td,th{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:middle}th{background:#f0f0f0}
.num{text-align:right;font-variant-numeric:tabular-nums}.failed{color:#b5421a}.muted{color:#666}
.prov{background:#eef3fa;border-left:4px solid #1a5fb4;padding:6px 10px;font-size:13px;margin:8px 0}
.stats{display:flex;gap:14px;flex-wrap:wrap}.stat{background:#fff;border:1px solid #ddd;padding:8px 14px}
.stat b{display:block;font-size:22px}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;padding:8px;width:170px;font-size:13px}.card img{width:150px}
.timeline{display:inline-block;margin:4px;background:#fff;border:1px solid #ddd;padding:4px;font-size:12px}
.timeline img{width:340px}.methods{background:#fff;border:1px solid #ddd;padding:12px;line-height:1.5}
img.plot{max-width:100%;border:1px solid #ddd;background:#fff}details{margin:6px 0}
"""

IMAGE_CHECK = """
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = ok + "/" + imgs.length;
  document.getElementById("imagecount").textContent = ok + " of " + imgs.length + " images shown";
});
"""


def _e(v) -> str:
    return html.escape(str(v))


def _f(v, digits: int = 3) -> str:
    try:
        return "–" if v is None or v != v else f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return _e(v)


def fidelity_figure(fid: dict, path: Path) -> Path:
    """Held-out cosine against bits: dfe at each level (a line) and every baseline (points)."""
    plt = agg_pyplot()
    rows = fid["rows"]
    dfe = sorted([r for r in rows if r["encoding"].startswith("dfe tokens")], key=lambda r: r["bits"])
    base = [r for r in rows if not r["encoding"].startswith("dfe tokens")]
    fig, ax = plt.subplots(figsize=(8.5, 4.4), dpi=100)
    ax.plot([r["bits"] for r in dfe], [r["cosine_mean"] for r in dfe], "o-", color="#1a5fb4", lw=2,
            label="dfe tokens, levels 1..k")
    for r in dfe:
        ax.annotate(f"{r['cosine_mean']:.2f}", (r["bits"], r["cosine_mean"]), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8, color="#1a5fb4")
    markers = "sD^vP*X"
    for i, r in enumerate(base):
        ax.scatter([min(r["bits"], 64)], [r["cosine_mean"]], marker=markers[i % len(markers)], s=55,
                   label=f"{r['encoding']} ({r['bits']} bits)" + (" [drawn at 64]" if r["bits"] > 64 else ""))
    ax.set_xlabel("bits per frame")
    ax.set_ylabel("held-out cosine (psi rebuilt vs measured)")
    ax.set_ylim(min(0.0, min(r["cosine_mean"] for r in rows) - 0.05), 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"fidelity per level on {fid['split']['test_frames']} held-out frames")
    fig.tight_layout()
    return save_figure(fig, path)


def prediction_figure(pred: dict, path: Path, target: str) -> Path:
    """Each feature set's score with its bootstrap 95% CI, dfe's rows first, and the chance line."""
    key = pred["metric"]
    rows = pred["rows"]
    names = [r["features"] + (" [dynamic]" if r["dynamic"] and "dynamic" not in r["features"] else "") for r in rows]
    vals = [r[key] for r in rows]
    ci = ([max(r[key] - r["ci95_low"], 0) for r in rows], [max(r["ci95_high"] - r[key], 0) for r in rows])
    colours = ["#1a5fb4" if r["features"].startswith("dfe") else "#999999" for r in rows]
    return bar_chart(path, names, vals, errors=ci, colours=colours, chance=pred["chance"], show_values=True,
                     xlabel=f"{key}, pooled out-of-fold predictions (bars: bootstrap 95% CI over inputs)",
                     title=f"predicting {target}: {pred['videos']} inputs, {pred['groups']} groups")


def _img(outdir: Path, rel: str, alt: str, cls: str = "") -> str:
    """An <img> for a file of the study folder, or nothing when the file is absent."""
    if not (outdir / rel).is_file():
        return ""
    return f"<img src='{_e(rel)}' alt='{_e(alt)}'" + (f" class='{cls}'" if cls else "") + ">"


def _code_card(outdir: Path, code: int, lines: list[str]) -> str:
    stem = f"atlas/codes/code_{code:04d}"
    img = _img(outdir, f"{stem}_front.webp", f"code {code}")
    link = f"<a href='{stem}.html'>code {code}</a>" if (outdir / f"{stem}.html").is_file() else f"code {code}"
    return f"<div class='card'>{img}<br>{link}<br>" + "<br>".join(lines) + "</div>"


def _corpus(outdir: Path, r: dict) -> str:
    c = r["corpus"]
    stats = "".join(f"<div class='stat'><b>{v}</b>{k}</div>" for k, v in (
        ("inputs", c["n_inputs"]), ("videos", c["videos"]), ("photos", c["photos"]), ("people", c["people"] or "–"),
        ("frames", f"{c['frames']:,}"), ("faces found", f"{c['faces']:,}"), ("labelled", c["labelled"]),
        ("failed", c["n_failed"])))
    failed = [i for i in c["inputs"] if i["status"] == "failed"]
    fail_html = ("<h3 class='failed'>Failed inputs</h3><ul>" + "".join(
        f"<li class='failed'><b>{_e(Path(i['input']).name)}</b> ({_e(i['input'])}): {_e(i['error'])}</li>" for i in failed)
        + "</ul>") if failed else "<p>No input failed.</p>"
    rows = "".join(f"<tr class='{'failed' if i['status'] == 'failed' else ''}'><td>{_e(i['id'])}</td><td>{_e(i['kind'])}</td>"
                   f"<td>{_e(i['status'])}</td><td class='num'>{i['frames']}</td><td class='num'>{i['faces']}</td>"
                   f"<td class='muted'>{_e(i['input'])}</td></tr>" for i in c["inputs"])
    return (f"<h2>Corpus</h2><div class='stats'>{stats}</div>{fail_html}<details><summary>every input</summary>"
            f"<table><tr><th>table id</th><th>kind</th><th>status</th><th>frames</th><th>faces</th><th>input</th></tr>"
            f"{rows}</table></details><div class='prov'>{_e(r['provenance']['corpus'])}</div>")


def _dictionary(outdir: Path, r: dict) -> str:
    d = r["dictionary"]
    cards = "".join(_code_card(outdir, t["code"], [_e(t["name"]), f"level {t['level']}, {t['usage']} uses",
                                                   _e(" + ".join(t["action_units"]) or "–")]) for t in r["top_codes"])
    atlas = "<a href='atlas/index.html'>the atlas (every code)</a>" if (outdir / "atlas" / "index.html").is_file() else ""
    return (f"<h2>Dictionary</h2><p>{_e(d['source'])}: {d['codebook_size']} codes shared by {d['levels']} levels, "
            f"trained on {d['train_frames']:,} frames (its own held-out cosine {_f(d['val_cosine'])}). Open {atlas}. "
            f"Most used codes in this corpus:</p><div class='grid'>{cards}</div>"
            f"<div class='prov'>{_e(r['provenance']['dictionary'])}</div>")


def _not_run(title: str, what: str, why: str) -> str:
    """A report section for a step that could not run, with its sentence."""
    return f"<h2>{_e(title)}</h2><p class='failed'>{what}: {_e(why)}.</p>"


def _fidelity(outdir: Path, r: dict) -> str:
    f = r["fidelity"]
    if "skipped" in f:
        return _not_run("Fidelity per level against the baselines", "Not measured", f["skipped"])
    rows = "".join(f"<tr><td>{_e(x['encoding'])}</td><td class='num'>{x['bits']}</td><td class='num'>{_f(x['cosine_mean'])}</td>"
                   f"<td class='num'>{_f(x.get('mse_mean'), 4)}</td></tr>" for x in f["rows"])
    d = f["diversity"]
    div = (f"Diversity on the held-out frames: {d['distinct_token_combinations_per_1000']:.0f} distinct token combinations "
           f"per 1,000 frames" + (f" vs {d['distinct_binarised_blendshape_sets_per_1000']:.0f} binarised blendshape sets"
                                  if "distinct_binarised_blendshape_sets_per_1000" in d else "")
           + f"; {d['codes_never_used_share']:.0%} of codes unused.")
    return (f"<h2>Fidelity per level against the baselines</h2>{_img(outdir, 'figures/fidelity.png', 'fidelity plot', 'plot')}"
            f"<div class='prov'>{_e(r['provenance']['fidelity'])}</div><details><summary>the numbers</summary><table>"
            f"<tr><th>encoding</th><th>bits</th><th>cosine</th><th>MSE</th></tr>{rows}</table></details><p>{_e(div)} "
            f"<a href='evaluate/report.md'>evaluate/report.md</a></p>")


def _prediction(outdir: Path, r: dict) -> str:
    p = r["prediction"]
    if "skipped" in p:
        return _not_run(f"Prediction: {r['config']['target']}", "Not run", p["skipped"])
    key = p["metric"]
    rows = "".join(f"<tr><td>{_e(x['features'])}</td><td class='num'>{_f(x[key])}</td><td class='num'>{_f(x['ci95_low'])}"
                   f"–{_f(x['ci95_high'])}</td><td class='num'>{_f(x[key + '_fold_mean'])} ± {_f(x[key + '_fold_std'])}</td>"
                   f"<td class='num'>{_f(x['dfe_minus_this'])}</td><td class='num'>{_f(x['dfe_minus_this_ci95_low'])}.."
                   f"{_f(x['dfe_minus_this_ci95_high'])}</td></tr>" for x in p["rows"])
    warn = "".join(f"<li>{_e(w)}</li>" for w in p.get("warnings", []))
    return (f"<h2>Prediction: {_e(r['config']['target'])}</h2>{_img(outdir, 'figures/prediction.png', 'prediction plot', 'plot')}"
            f"<div class='prov'>{_e(r['provenance']['prediction'])}</div><table><tr><th>features</th><th>{key}</th>"
            f"<th>95% CI</th><th>per fold</th><th>dfe minus this</th><th>paired 95% CI</th></tr>{rows}</table>"
            + (f"<ul class='muted'>{warn}</ul>" if warn else ""))


def _per_label(outdir: Path, r: dict) -> str:
    if not r["per_label_codes"]:
        return ""
    blocks = []
    labels = sorted({x["label"] for x in r["per_label_codes"]})
    for lab in labels:
        cards = "".join(_code_card(outdir, x["code"], [_e(x["name"]), f"log-odds {x['log_odds']:+.2f}", f"{x['frames']} frames"])
                        for x in r["per_label_codes"] if x["label"] == lab)
        blocks.append(f"<h3>{_e(r['config']['target'])} = {_e(lab)}</h3><div class='grid'>{cards}</div>")
    return (f"<h2>Codes per label (log-odds)</h2>{''.join(blocks)}"
            f"<div class='prov'>{_e(r['provenance']['per_label_codes'])}</div>")


def _timelines(outdir: Path, r: dict) -> str:
    shots = [v for v in r["videos"] if v["timeline"]]
    photos = len(r["videos"]) - len(shots)
    items = "".join(f"<div class='timeline'><a href='{_e(v['timeline'])}'>{_img(outdir, v['timeline'], v['id'])}</a><br>"
                    f"{_e(v['id'])}: {v['events']} events, {v['frames']} frames"
                    + (f", {_e(r['config']['target'])} = {_e(v['label'])}" if v["label"] else "") + "</div>" for v in shots)
    note = f" {photos} photos have no time axis and no timeline (their events tables are in events/)." if photos else ""
    return (f"<h2>Events over time</h2><p>One timeline per video (click for full size; ELAN files in events/).{note}</p>"
            f"{items or '<p>No video in this study.</p>'}<div class='prov'>{_e(r['provenance']['events'])}</div>")


def write_index(outdir: str | Path, results: dict) -> Path:
    """``index.html`` and ``figures/*.png`` for a finished study folder."""
    outdir = Path(outdir)
    (outdir / "figures").mkdir(exist_ok=True)
    for old in ("fidelity.png", "prediction.png"):
        (outdir / "figures" / old).unlink(missing_ok=True)
    if "skipped" not in results["fidelity"]:
        fidelity_figure(results["fidelity"], outdir / "figures" / "fidelity.png")
    if "skipped" not in results["prediction"]:
        prediction_figure(results["prediction"], outdir / "figures" / "prediction.png", results["config"]["target"])
    c = results["config"]
    title = f"dfe study: {c['target']}"
    body = (f"<h1>{_e(title)}</h1><p class='muted'>dfe {_e(results['dfe_version'])}; configuration "
            f"<a href='study.toml'>study.toml</a> (rerun: <code>dfe study --config {_e(Path(c['output']) / 'study.toml')}</code>); "
            f"every number in <a href='results.json'>results.json</a>. <span id='imagecount'></span></p>"
            + _corpus(outdir, results) + _dictionary(outdir, results) + _fidelity(outdir, results)
            + _prediction(outdir, results) + _per_label(outdir, results) + _timelines(outdir, results)
            + f"<h2>Methods</h2><div class='methods'>{_e(results['methods'])}</div>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{IMAGE_CHECK}</script></body></html>")
    index = outdir / "index.html"
    index.write_text(page)
    return index
