"""The serving process's malloc arenas. glibc gives each thread that allocates its own arena, up
to 8 per core; memory freed in one thread's arena is not reused by another's, so a server whose
worker threads take turns loading a model version, scoring a CSV and re-scoring the database
holds several high-water marks at once. Two arenas cut the app's peak resident memory by about
100-200 MB (bench_startup.py: 2,096-2,134 MB -> 1,913-2,002 MB with int8 serving, bench/README.md).

Call limit_malloc_arenas(settings.malloc_arenas) first thing in the process (app.py, `bertdemo
serve`), before torch, OpenVINO or Gradio start their threads: arenas made before the call stay."""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int | None) -> int | None:
    """Cap glibc's malloc arenas at `arenas` (Settings.malloc_arenas); returns the cap set, or None
    where nothing was done: `arenas` is None (MALLOC_ARENA_MAX was set, and glibc applied it at
    start) or the C library is not glibc (macOS, musl) or refused the value."""
    if arenas is None:
        return None
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    return arenas if mallopt(M_ARENA_MAX, arenas) == 1 else None
