"""What a fresh install needs: every module dfe imports (at the top or inside a function) comes from
a distribution that pyproject.toml declares, not from one that another package happens to bring."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: Path) -> dict[str, str]:
    """Top-level module -> first file importing it, over every import statement in the folder."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [d for extra in project.get("optional-dependencies", {}).values() for d in extra]
    return {re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def test_every_import_of_the_package_is_declared():
    stdlib = set(sys.stdlib_module_names)
    owners = packages_distributions()
    declared = declared_distributions()
    undeclared = {}
    for module, where in imported_modules(ROOT / "src" / "dfe").items():
        if module in stdlib or module == "dfe":
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        assert dists, f"{where} imports {module!r}, which no installed distribution provides"
        if not dists & declared:
            undeclared[module] = (where, sorted(dists))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The walk finds an import hidden in a function body (as dfe.analysis.elan's pympi was)."""
    (tmp_path / "m.py").write_text("def f():\n    from pympi.Elan import Eaf\n    import absl.logging\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert {"pympi", "absl"} <= set(imported_modules(tmp_path))
