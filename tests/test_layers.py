"""The package's folders are its layers; no module imports one above its own, not even inside a
function (docs/architecture.md). Each old module path of dfe 0.3/0.4 still imports, with a warning."""

import ast
import importlib
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dfe"

# bottom to top; a module may import its own layer and those below it
LAYERS = {
    "errors": 0, "version": 0, "table": 0, "progress": 0,
    "extraction": 1, "tokens": 2, "analysis": 3, "views": 4, "runs": 5,
    "cli": 6, "__main__": 6, "_compat": 6, "__init__": 6,
}


def layer_of(module: str) -> int:
    parts = module.split(".")[1:]
    if not parts:
        return LAYERS["__init__"]
    if parts[0] not in LAYERS:
        raise AssertionError(f"{module}: not in any layer of tests/test_layers.py (add it there and to docs/architecture.md)")
    return LAYERS[parts[0]]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(["dfe", *parts])


def dfe_imports(path: Path) -> list[tuple[int, str]]:
    """Every dfe module ``path`` imports, at any depth (functions included), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; write the dfe.* path")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dfe":
            if node.module == "dfe":
                found += [(node.lineno, f"dfe.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dfe"]
    return found


def upward_imports(src: Path = SRC) -> list[str]:
    bad = []
    for path in sorted(src.rglob("*.py")):
        me = module_name(path, src)
        for line, target in dfe_imports(path):
            if target == "dfe.__version__":
                bad.append(f"{me}:{line} imports dfe.__version__ from the top package (use dfe.version)")
            elif layer_of(target) > layer_of(me):
                bad.append(f"{me}:{line} imports {target}, a layer above it")
    return bad


def test_no_module_imports_a_layer_above_it():
    assert upward_imports() == []


def test_the_checker_catches_an_import_inside_a_function(tmp_path):
    (tmp_path / "extraction").mkdir()
    (tmp_path / "extraction" / "face.py").write_text(
        "import numpy\n\ndef f():\n    from dfe.runs.manifest import Manifest\n    return Manifest\n")
    (tmp_path / "table.py").write_text("def g():\n    from dfe.views import naming\n")
    bad = upward_imports(tmp_path)
    assert any("dfe.extraction.face:4 imports dfe.runs.manifest" in b for b in bad)
    assert any("dfe.table:2 imports dfe.views" in b for b in bad)


def test_the_bottom_imports_nothing_of_dfe():
    for name in ("table", "errors", "version", "progress"):
        assert dfe_imports(SRC / f"{name}.py") == [], name


# the module paths the 0.3 README documents, and names it uses from them
OLD_PATHS = [
    ("dfe.table", "psi_array"), ("dfe.table", "load_tables"), ("dfe.table", "read_arrays"),
    ("dfe.bow", "BagOfTokens"), ("dfe.bow", "EventFeatures"), ("dfe.bow", "BlendshapeFunctionals"),
    ("dfe.events", "token_events"), ("dfe.events", "EventOptions"), ("dfe.atlas", "build_atlas"),
    ("dfe.demo", "starter_model_path"), ("dfe.expression", "anchor_weights"),
    ("dfe.identity", "build_face_model"), ("dfe.identity", "load_face_model"),
    ("dfe.naming", "name_codes"), ("dfe.render", "Camera"), ("dfe.synthetic", "event_sequences"),
    ("dfe.viz", "decomposition_figure"), ("dfe.flame", "FlameModel"), ("dfe.flame", "import_flame"),
    ("dfe.tokenizer", "Tokenizer"), ("dfe.tokenizer", "encode_table"), ("dfe.runner", "Manifest"),
    ("dfe.runner", "encode_corpus"), ("dfe.units", "parse_unit"),
    ("dfe.synth", "synthesize"), ("dfe.study", "StudyConfig"), ("dfe.residual_kmeans", "ResidualKMeans"),
    ("dfe.openface", "openface_frame"), ("dfe.gaze", "gaze_from_landmarks"), ("dfe.dictionary", "fit_shape_gain"),
    ("dfe.baselines", "load_baseline"), ("dfe.action_units", "action_unit_table"), ("dfe.face", "BLENDSHAPE_NAMES"),
    ("dfe.timeline", "timeline_figure"), ("dfe.elan", "write_eaf"), ("dfe.eval", "evaluate"),
    ("dfe.io", "read_image"), ("dfe.labels", "read_labels"), ("dfe.mesh", "canonical_mesh"),
    ("dfe.study_report", "write_index"), ("dfe.tokenizer", "Encoder"),
    # names that left a module which still exists
    ("dfe.extraction", "ExtractOptions"), ("dfe.extraction", "extract"), ("dfe.extraction", "extract_file"),
    ("dfe.progress", "summary"), ("dfe.progress", "frames_done"),
]


@pytest.mark.parametrize("module,name", OLD_PATHS)
def test_documented_old_paths_still_import(module, name):
    """Each old path gives its name, with a DeprecationWarning naming it, except the paths that
    never moved (dfe.table) and names still at home (dfe.progress.Progress)."""
    import sys

    from dfe._compat import LEFT, MOVED

    if module in MOVED:
        sys.modules.pop(module, None)  # the warning comes when the old module is made: make it again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(importlib.import_module(module), name)
    assert value is not None
    warned = any(issubclass(w.category, DeprecationWarning) and module in str(w.message) for w in caught)
    assert warned == (module in MOVED or name in LEFT.get(module, {})), (module, name, [str(w.message) for w in caught])


def test_an_old_path_warns_and_names_the_new_home():
    import sys

    sys.modules.pop("dfe.viz", None)
    with pytest.warns(DeprecationWarning, match=r"dfe\.viz moved to dfe\.views\.figures"):
        importlib.import_module("dfe.viz")
    from dfe.views.figures import decomposition_figure

    assert importlib.import_module("dfe.viz").decomposition_figure is decomposition_figure


def test_top_level_api():
    import dfe

    assert callable(dfe.extract) and callable(dfe.extract_file)
    assert dfe.Tokenizer.__module__ == "dfe.tokens.tokenizer"
    assert dfe.BagOfTokens.__module__ == "dfe.analysis.features"
    assert dfe.ExtractOptions().format == "parquet"
    assert dfe.__version__ == importlib.import_module("dfe.version").__version__


def test_the_warning_names_the_users_own_line(tmp_path):
    """Under Python's default filters a DeprecationWarning shows only when it is attributed to the
    user's code (__main__): the old path's warning must point at the importing line, not at dfe."""
    import subprocess
    import sys

    script = tmp_path / "old_script.py"
    script.write_text("import dfe.bow\nfrom dfe.extraction import extract\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert f"{script}:1: DeprecationWarning: dfe.bow moved to dfe.analysis.features" in run.stderr
    assert f"{script}:2: DeprecationWarning: dfe.extraction.extract moved to dfe.runs.extract.extract" in run.stderr
