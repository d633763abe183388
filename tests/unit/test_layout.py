"""The package's layout rules (docs/architecture.md), checked on the source so they cannot erode:
no import cycles; dependencies point down the layers; every SQL query and ORM write in db/; only
ui/common makes gr.Error; no module over 400 lines, function over 80 lines or 8 parameters, class
over 15 public methods; every module opens with a docstring; the environment is read in config.py
(and by the CLI for a password); docs/architecture.md names every module. Each checker is also run
on an injected violation, so a check that cannot fail would show."""

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
# what a Session does for its caller: queries and writes
SESSION_METHODS = {"execute", "scalar", "scalars", "get", "add", "add_all", "delete", "merge", "query", "flush",
                   "refresh", "bulk_save_objects", "bulk_insert_mappings", "bulk_update_mappings"}


def mapped_columns() -> set[str]:
    """The attribute names of the ORM models (db/models.py's `name: Mapped[...]` lines)."""
    tree = ast.parse((PACKAGE / "db" / "models.py").read_text())
    return {n.target.id for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for n in c.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and "Mapped" in ast.unparse(n.annotation)}


def _session_names(fn: ast.AST) -> set[str]:
    """Names that hold a Session in `fn`: `with Session(...) as x`, `x = Session(...)`, a parameter
    annotated Session, and the conventional `s` and `session`."""
    names = {"s", "session"}
    for n in ast.walk(fn):
        if isinstance(n, ast.withitem) and isinstance(n.optional_vars, ast.Name) and \
                isinstance(n.context_expr, ast.Call) and "Session" in ast.unparse(n.context_expr.func):
            names.add(n.optional_vars.id)
        elif isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and "Session" in ast.unparse(n.value.func):
            names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
        elif isinstance(n, ast.arg) and n.annotation is not None and "Session" in ast.unparse(n.annotation):
            names.add(n.arg)
    return names


def sql_outside_db(source: str, columns: set[str]) -> list[str]:
    """What a module outside db/ does that belongs in db/: SQL built with SQLAlchemy's constructs, a
    Session asked to query or write (on any name that holds one), or a mapped row's column assigned
    in a function that has a Session (an ORM write that the session's commit would flush)."""
    tree = ast.parse(source)
    found: list[str] = []
    sqlalchemy_names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                        and (n.module or "").startswith("sqlalchemy") for a in n.names}
    found += [f"line {n.lineno}: {n.func.id}()" for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name) and n.func.id in SQL_CALLS & sqlalchemy_names]
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        sessions = _session_names(fn)
        found += [f"line {n.lineno}: {n.func.value.id}.{n.func.attr}()" for n in ast.walk(fn)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                  and isinstance(n.func.value, ast.Name) and n.func.value.id in sessions
                  and n.func.attr in SESSION_METHODS]
        if sessions - {"s", "session"} or any(isinstance(n, ast.Name) and n.id in sessions for n in ast.walk(fn)):
            targets = [t for n in ast.walk(fn) if isinstance(n, (ast.Assign, ast.AugAssign))
                       for target in (n.targets if isinstance(n, ast.Assign) else [n.target])
                       for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target])]
            found += [f"line {t.lineno}: {ast.unparse(t)} = ..." for t in targets
                      if isinstance(t, ast.Attribute) and t.attr in columns and isinstance(t.value, ast.Name)
                      and t.value.id not in ("self", "cls")]
    return sorted(set(found))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("bertdemo.db")))
def test_every_sql_query_and_orm_write_lives_in_db(module):
    found = sql_outside_db(MODULES[module].read_text(), mapped_columns())
    assert not found, f"{module} runs SQL or writes rows outside db/: {found}"


def test_the_sql_check_finds_injected_violations():
    cols = mapped_columns()
    assert {"status", "label", "version"} <= cols
    ok = "def f(engine):\n    with Session(engine) as s, s.begin():\n        return examples.get(s, 1)\n"
    assert sql_outside_db(ok, cols) == []
    assert sql_outside_db("def f(engine):\n    with Session(engine) as db_s:\n        db_s.add(Run())\n", cols)
    assert sql_outside_db("def f(sess: Session):\n    sess.delete(row)\n", cols)
    assert sql_outside_db("from sqlalchemy import select\nq = select(Run)\n", cols)
    write = "def f(engine):\n    with Session(engine) as s, s.begin():\n        run = runs.get(s, 1)\n        run.status, run.step = 'x', 2\n"
    assert sql_outside_db(write, cols) == ["line 4: run.status = ...", "line 4: run.step = ..."]
    # a plain object's attribute in a function without a session is not a row
    assert sql_outside_db("def f(job):\n    job.status = 'x'\n", cols) == []


# the size rules of ../shared/ARCHITECTURE.md: short functions, few parameters, classes with one job
MAX_FUNCTION_LINES, MAX_PARAMETERS, MAX_PUBLIC_METHODS = 80, 8, 15


def too_big(source: str) -> list[str]:
    """Functions over MAX_FUNCTION_LINES lines or MAX_PARAMETERS parameters (self and cls not
    counted), classes over MAX_PUBLIC_METHODS public methods (properties count: they are API)."""
    found = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = n.end_lineno - n.lineno + 1
            a = n.args
            params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{n.name}: {lines} lines")
            if len(params) > MAX_PARAMETERS:
                found.append(f"{n.name}: {len(params)} parameters")
        elif isinstance(n, ast.ClassDef):
            public = [b.name for b in n.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and not b.name.startswith("_")]
            if len(public) > MAX_PUBLIC_METHODS:
                found.append(f"class {n.name}: {len(public)} public methods")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_functions_and_classes_stay_small(module):
    found = too_big(MODULES[module].read_text())
    assert not found, f"{module}: {found}"


def test_the_size_check_finds_injected_violations():
    assert too_big("def f(a, b):\n    return a\n") == []
    assert too_big("def f(self, a, b, c, d, e, f, g, h):\n    pass\n") == []  # self is not counted
    assert too_big("def f(a, b, c, d, e, f, g, h, i):\n    pass\n") == ["f: 9 parameters"]
    assert too_big("def f():\n" + "    x = 1\n" * 80) == ["f: 81 lines"]
    methods = "".join(f"    def m{i}(self):\n        pass\n" for i in range(16))
    assert too_big("class C:\n" + methods + "    def _private(self):\n        pass\n") == ["class C: 16 public methods"]


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


def _named_in(block: str) -> set[str]:
    """The paths a tree listing names: the first word of each line that ends in .py."""
    return {line.split()[0] for line in block.splitlines() if line.strip() and line.split()[0].endswith(".py")}


def test_docs_architecture_names_every_module_and_only_those():
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    listing = text.split("## Modules", 1)[1].split("```")[1]
    named = _named_in(listing) - {"app.py"}
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if "migrations" not in p.parts and p.name != "__init__.py"}
    assert not files - named, f"docs/architecture.md does not name {sorted(files - named)}"
    assert not named - files, f"docs/architecture.md names modules that do not exist: {sorted(named - files)}"


def test_readme_tree_names_every_module_and_script():
    text = (REPO_ROOT / "README.md").read_text()
    tree = text.split("## Architecture", 1)[1].split("```")[1]
    named = {n.rsplit("/", 1)[-1] for n in _named_in(tree)}
    files = {p.name for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts and p.name != "__init__.py"}
    files |= {p.name for p in (REPO_ROOT / "scripts").glob("*.py")}
    assert not files - named, f"the README's tree does not name {sorted(files - named)}"
