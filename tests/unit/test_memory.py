"""bertdemo/memory.py: the serving process's malloc arenas."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from bertdemo import memory
from bertdemo.config import Settings


def test_the_arenas_are_capped_unless_the_person_set_their_own(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    assert Settings.from_env({}).malloc_arenas == 2
    assert memory.limit_malloc_arenas(Settings.from_env({}).malloc_arenas) == 2
    assert calls == [(memory.M_ARENA_MAX, 2)]
    theirs = Settings.from_env({"MALLOC_ARENA_MAX": "4"}).malloc_arenas
    assert theirs is None and memory.limit_malloc_arenas(theirs) is None and len(calls) == 1  # theirs stands


def test_without_glibc_nothing_is_done(monkeypatch):
    def no_glibc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert memory.limit_malloc_arenas(2) is None

    class Refusing:
        def mallopt(self, param, value):
            return 0  # glibc refused the value

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Refusing())
    assert memory.limit_malloc_arenas(2) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_app_py_caps_the_arenas_before_it_imports_torch():
    # a fresh interpreter, as app.py starts: settings and the cap come before torch is imported
    code = ("import sys; from bertdemo.config import Settings; from bertdemo.memory import limit_malloc_arenas;"
            " print(limit_malloc_arenas(Settings.from_env({}).malloc_arenas), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]
    source = (Path(__file__).resolve().parents[2] / "app.py").read_text(encoding="utf-8")
    assert source.index("limit_malloc_arenas(settings.malloc_arenas)") < source.index("from bertdemo.services import")
