"""The documentation runs: every ```python block of README.md, CHANGELOG.md and docs/*.md is executed
as its own test, in a folder holding the files the blocks name (a short clip, photos, their tables,
a labels file, a model); every relative link points at a file and heading that exist; every dotted
``dfe.`` name the documents quote resolves. A block that needs files dfe cannot ship (a FLAME model)
is fenced ```python no-run and listed in NO_RUN: only its imports run."""

from __future__ import annotations

import ast
import csv
import importlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)(.*)$")
NO_RUN = {"docs/guide.md": ["FlameModel.load"]}  # document -> a phrase of each block that may not run
LONDON_PEOPLE = ("001", "002", "003")  # their neutral and smiling photos are photos/ (labels.csv)


@dataclass(frozen=True)
class Block:
    """One fenced block of Python in a document."""

    document: Path
    line: int  # the fence's line, 1-based
    source: str
    runs: bool  # False for ```python no-run

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def fenced_blocks(document: Path) -> list[tuple[int, int, str, str]]:
    """Every fenced block of a Markdown file: (opening line, closing line, info string, text)."""
    blocks, opened, info, body = [], None, "", []
    for number, line in enumerate(document.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if opened is None and fence:
            opened, info, body = number, (fence.group(1) + fence.group(2)).strip(), []
        elif opened is not None and line.strip() == "```":
            blocks.append((opened, number, info, "".join(f"{b}\n" for b in body)))
            opened = None
        elif opened is not None:
            body.append(line)
    assert opened is None, f"{document}:{opened}: a code fence is never closed"
    return blocks


def python_blocks(document: Path) -> list[Block]:
    return [Block(document, start, text, info == "python") for start, _, info, text in fenced_blocks(document)
            if info in ("python", "python no-run")]


BLOCKS = [block for document in DOCUMENTS for block in python_blocks(document)]


def prose(document: Path) -> str:
    """A document without its fenced blocks (headings and links inside code are not Markdown)."""
    lines = document.read_text().splitlines()
    for start, end, _, _ in fenced_blocks(document):
        lines[start - 1:end] = [""] * (end - start + 1)
    return "\n".join(lines)


def heading_anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(document), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


@pytest.fixture(scope="session")
def docs_media(tmp_path_factory) -> Path:
    """The files the blocks name, made once: clip.mp4 and photo.jpg (copies of shared media, so their
    tables are called clip and photo as in the docs), photos/ (six London photos), tables/ (their
    tables, extracted as `dfe extract clip.mp4 photos/ -o tables/` would), labels.csv and model.dfe
    (the starter model)."""
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.demo import starter_model_path
    from dfe.runs.extract import extract

    if not SHARED.is_dir():
        pytest.skip(f"shared test media not found at {SHARED}")
    media = tmp_path_factory.mktemp("docs_media")
    shutil.copy(SHARED / "videos" / "single_face.mp4", media / "clip.mp4")
    shutil.copy(SHARED / "faces" / "single_face.jpg", media / "photo.jpg")
    (media / "photos").mkdir()
    with open(SHARED / "faces" / "london.csv", newline="") as fh:
        london = [row for row in csv.DictReader(fh) if row["person"] in LONDON_PEOPLE]
    for row in london:
        (media / "photos" / Path(row["file"]).name).symlink_to(SHARED / "faces" / row["file"])
    with open(media / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "expression", "person"])
        writer.writerows([Path(row["file"]).stem, row["expression"], row["person"]] for row in london)
    report = extract([media / "clip.mp4", media / "photos"], media / "tables", ExtractOptions(progress=False))
    assert report.ok, [r.error for r in report.failed]
    shutil.copy(starter_model_path(), media / "model.dfe")
    return media


@pytest.fixture
def workdir(docs_media, tmp_path, monkeypatch) -> Path:
    """A fresh folder per block: the inputs linked (so a rerun of `dfe.extract` finds them done in
    the copied manifest), the outputs copied (so no block sees what another wrote)."""
    for name in ("clip.mp4", "photo.jpg", "photos"):
        (tmp_path / name).symlink_to(docs_media / name)
    shutil.copytree(docs_media / "tables", tmp_path / "tables")
    for name in ("labels.csv", "model.dfe"):
        shutil.copy(docs_media / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_python_block_runs(block, workdir):
    tree = ast.parse(block.source)
    if not block.runs:  # its imports still have to work
        tree.body = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    ast.increment_lineno(tree, block.line)  # a traceback names the document's own lines
    exec(compile(tree, str(block.document), "exec"), {"__name__": "__docs__"})
    if not block.runs:
        pytest.skip(f"{block.name} is marked no-run (imports checked); all such: {[b.name for b in BLOCKS if not b.runs]}")


def test_no_run_blocks_are_only_the_listed_ones():
    """A block may skip running only where NO_RUN says why, so a broken example cannot hide as no-run."""
    marked = {b.name: b for b in BLOCKS if not b.runs}
    listed = [(doc, phrase) for doc, phrases in NO_RUN.items() for phrase in phrases]
    for name, block in marked.items():
        doc = str(block.document.relative_to(ROOT))
        assert any(doc == d and phrase in block.source for d, phrase in listed), f"{name}: no-run but not in NO_RUN"
    assert len(marked) == len(listed), (sorted(marked), listed)


def test_blocks_import_the_new_module_paths():
    """No example teaches a dfe 0.4 path that only the compatibility layer still answers."""
    from dfe._compat import MOVED

    old = []
    for block in BLOCKS:
        for node in ast.walk(ast.parse(block.source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            old += [f"{block.name}: {n}" for n in names if n in MOVED]
    assert not old, old


def test_every_relative_link_finds_its_file_and_heading():
    broken = []
    for document in DOCUMENTS:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(document)):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_quoted_dfe_name_resolves():
    """`dfe.tokens.residual_kmeans.ResidualKMeans` and the like, quoted in prose, exist (old paths
    named in the changelog and architecture.md resolve through the compatibility layer)."""
    import warnings

    names = {name for document in DOCUMENTS for span in re.findall(r"`([^`]+)`", prose(document))
             for name in re.findall(r"(?<![\w./-])dfe(?:\.[A-Za-z_]\w*)+", span)}
    assert len(names) > 20, names  # the pattern still finds what the documents quote
    missing = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in sorted(names):
            if not resolves(name):
                missing.append(name)
    assert not missing, missing


def resolves(dotted: str) -> bool:
    """Whether ``a.b.c`` names a module, or an attribute chain under the longest importable module."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_helpers_read_markdown_as_github_does(tmp_path):
    """Fences, anchors and prose by hand on a small document."""
    doc = tmp_path / "d.md"
    doc.write_text("# Top: a (b) c\n\n## Top: a (b) c\n\n```python no-run\n# not a heading\nx = 1\n```\n"
                   "```python\ny = 2\n```\n[l](#top-a-b-c-1)\n")
    assert heading_anchors(doc) == {"top-a-b-c", "top-a-b-c-1"}
    blocks = python_blocks(doc)
    assert [(b.line, b.runs, b.source) for b in blocks] == [(5, False, "# not a heading\nx = 1\n"), (9, True, "y = 2\n")]
    assert "not a heading" not in prose(doc) and "[l](#top-a-b-c-1)" in prose(doc)
    assert resolves("dfe.table.psi_array") and not resolves("dfe.table.no_such_name") and not resolves("dfe.nowhere")
