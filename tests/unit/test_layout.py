"""The package's layout rules (docs/architecture.md), checked on the source so they cannot erode:
no import cycles; dependencies point down the layers; every SQL query in db/; only ui/common makes
gr.Error; no module over 400 lines; every module opens with a docstring; the environment is read
in config.py (and by the CLI for a password)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bertdemo.config import REPO_ROOT

PACKAGE = REPO_ROOT / "bertdemo"
MODULES = {".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}
# what each layer may import (besides itself and the layers below it); config, errors, validate, text
# and memory are the bottom: everyone may import them
BOTTOM = {"bertdemo", "bertdemo.config", "bertdemo.errors", "bertdemo.validate", "bertdemo.text", "bertdemo.memory"}
MAY_IMPORT = {
    "bertdemo.db": set(),
    "bertdemo.model": set(),
    "bertdemo.datasets": {"bertdemo.db"},
    "bertdemo.auth": {"bertdemo.db"},
    "bertdemo.training": {"bertdemo.db", "bertdemo.model", "bertdemo.datasets"},
    "bertdemo.services": {"bertdemo.db", "bertdemo.training", "bertdemo.datasets"},
    "bertdemo.backup": {"bertdemo.db", "bertdemo.training"},
    "bertdemo.actions": {"bertdemo.db", "bertdemo.model", "bertdemo.training", "bertdemo.services",
                         "bertdemo.datasets", "bertdemo.auth"},
    "bertdemo.ui": {"bertdemo.actions", "bertdemo.services", "bertdemo.auth", "bertdemo.model", "bertdemo.training"},
    "bertdemo.cli": {"bertdemo.db", "bertdemo.training", "bertdemo.services", "bertdemo.model", "bertdemo.auth",
                     "bertdemo.ui", "bertdemo.cli", "bertdemo.datasets", "bertdemo.backup"},
    "bertdemo.__main__": {"bertdemo.cli"},
}


def imports_of(name: str, path: Path) -> set[str]:
    """The bertdemo modules `name` imports (at any depth of the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else ".".join(name.split(".")[:-node.level] + [node.module])
            out |= {m for m in [base] + [f"{base}.{a.name}" for a in node.names] if m in MODULES}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
    return out - {name}


def layer_of(module: str) -> str:
    for layer in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return module


def test_no_import_cycles():
    graph = {m: imports_of(m, p) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_dependencies_point_down(module):
    layer = layer_of(module)
    if layer not in MAY_IMPORT:
        assert layer in BOTTOM, f"{module} belongs to no layer of docs/architecture.md"
        allowed: set[str] = set()
    else:
        allowed = MAY_IMPORT[layer] | {layer}
    wrong = {m for m in imports_of(module, MODULES[module]) if m not in BOTTOM and layer_of(m) not in allowed}
    if layer in BOTTOM:  # the bottom imports only the bottom (and nothing above it)
        wrong = {m for m in imports_of(module, MODULES[module]) if m not in BOTTOM}
    assert not wrong, f"{module} ({layer}) imports {sorted(wrong)}"


SQL_CALLS = {"select", "insert", "update", "delete", "aliased", "text"}
SQL_METHODS = {"execute", "scalar", "scalars", "get", "add", "add_all", "query"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("bertdemo.db")))
def test_every_sql_query_lives_in_db(module):
    tree = ast.parse(MODULES[module].read_text())
    sqlalchemy_names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                        and (n.module or "").startswith("sqlalchemy") for a in n.names}
    used = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id in SQL_CALLS & sqlalchemy_names}
    on_session = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
                  and n.func.value.id == "s" and n.func.attr in SQL_METHODS}
    assert not used and not on_session, f"{module} builds or runs SQL: {sorted(used | on_session)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "bertdemo.ui.common"))
def test_only_guarded_makes_gr_error(module):
    text = MODULES[module].read_text()
    assert "gr.Error(" not in text, f"{module} raises gr.Error itself; raise a UserError and let guarded show it"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small_and_say_their_job(module):
    path = MODULES[module]
    assert len(path.read_text().splitlines()) <= 400, f"{path.relative_to(REPO_ROOT)} is over 400 lines"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc) > 20, f"{path.relative_to(REPO_ROOT)} has no docstring saying its one job"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ("bertdemo.config", "bertdemo.cli.users")))
def test_the_environment_is_read_in_one_place(module):
    text = MODULES[module].read_text()
    assert "os.environ" not in text and "os.getenv" not in text, f"{module} reads the environment"
