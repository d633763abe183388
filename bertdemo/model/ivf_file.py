"""Write a FAISS IVF scalar-quantizer (float16) index file straight to disk, list by list, without
holding its codes in memory: faiss's own add() keeps every code (2 bytes a dimension an example:
230 MB at 300k x 384, 7.7 GB at 10M) in memory until write_index, and the process that builds it is
the serving one. The file is the one faiss.write_index writes for the same index, byte for byte
(tests/unit/model/test_vector_index.py checks it), so faiss reads it memory-mapped as before.

Faiss's layout (faiss/impl/index_write.cpp): the index header, quantizer and scalar quantizer, then
the inverted lists as "ilar", nlist, code_size, "full" with every list's size (or "sprs" with the
non-empty lists' (list, size) pairs when at most half are non-empty), then per non-empty list its
codes followed by its ids. Two passes over the vectors: the first assigns each to its list (the
sizes fix every list's place in the file), the second writes each chunk's codes and ids there."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

Blocks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # a fresh pass: (ids (m,), unit float32 (m, d))


def _size_t(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


def _fp16(x: np.ndarray) -> np.ndarray:
    """float16 as faiss's encode_fp16 rounds: to nearest, a tie away from zero (numpy's astype ties
    to even: 1 value in ~3,000 of a residual would differ). Ties are rare: only the values that may
    be one (13 dropped bits exactly half, or below float16's normal range) are looked at."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    h = x.astype(np.float16)
    flat_x, flat_h = x.reshape(-1), h.reshape(-1)
    maybe = np.flatnonzero(((flat_x.view(np.uint32) & 0x1FFF) == 0x1000) | (np.abs(flat_x) < 2.0 ** -14))
    if len(maybe):
        v, near = flat_x[maybe], flat_h[maybe]
        below = near.astype(np.float32)
        other = np.nextafter(near, np.where(v > below, np.float16(np.inf), np.float16(-np.inf)))
        tie = (v != below) & (v - below == other.astype(np.float32) - v) & (np.abs(other) > np.abs(near))
        flat_h[maybe] = np.where(tie, other, near)
    return h


def _header(index, ntotal: int) -> bytes:
    """What faiss writes before the inverted lists of `index` (trained, empty) holding `ntotal` vectors."""
    import faiss

    index.ntotal = ntotal
    try:
        raw = faiss.serialize_index(index).tobytes()
    finally:
        index.ntotal = 0
    empty = b"ilar" + _size_t(index.nlist, index.code_size) + b"sprs" + _size_t(0)
    if not raw.endswith(empty):  # another faiss layout: refuse rather than write a file it cannot read
        raise RuntimeError("unexpected faiss index layout; build the index with faiss's add() instead")
    return raw[:-len(empty)]


def _lists_preamble(nlist: int, code_size: int, sizes: np.ndarray) -> bytes:
    non_empty = np.flatnonzero(sizes)
    head = b"ilar" + _size_t(nlist, code_size)
    if len(non_empty) > nlist // 2:
        return head + b"full" + _size_t(nlist, *sizes.tolist())
    pairs = np.stack([non_empty, sizes[non_empty]], axis=1).reshape(-1)
    return head + b"sprs" + _size_t(len(pairs), *pairs.tolist())


def write(target: Path, index, blocks: Blocks) -> None:
    """Write `index` (a trained, empty IndexIVFScalarQuantizer with QT_fp16, inner product) holding
    every vector `blocks` yields to `target`, atomically (a reader sees the old file or the new one).
    Memory: one block and one list number per vector."""
    quantizer, nlist = index.quantizer, index.nlist
    lists = [quantizer.assign(x, 1).reshape(-1).astype(np.int32) for _ids, x in blocks()]
    assigned = np.concatenate(lists) if lists else np.zeros(0, np.int32)
    sizes = np.bincount(assigned, minlength=nlist).astype(np.int64)
    head = _header(index, len(assigned)) + _lists_preamble(nlist, index.code_size, sizes)
    row = index.code_size + 8  # a vector's code, then (after the list's codes) its int64 id
    starts = len(head) + np.concatenate([[0], np.cumsum(sizes * row)[:-1]]).astype(np.int64)
    filled = np.zeros(nlist, dtype=np.int64)
    centroids = quantizer.reconstruct_n(0, nlist) if index.by_residual else None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".embeddings-", suffix=".faiss")
    try:
        os.pwrite(fd, head, 0)
        done = 0
        for ids, x in blocks():
            at = assigned[done:done + len(x)]
            done += len(x)
            if not len(x):
                continue
            codes = _fp16(x - centroids[at] if centroids is not None else x)
            order = np.argsort(at, kind="stable")  # within a list, in the order faiss's add() keeps
            runs = np.flatnonzero(np.diff(at[order])) + 1
            for part in np.split(order, runs):
                k, m = int(at[part[0]]), len(part)
                os.pwrite(fd, codes[part].tobytes(), int(starts[k] + filled[k] * index.code_size))
                os.pwrite(fd, np.asarray(ids, dtype="<i8")[part].tobytes(),
                          int(starts[k] + sizes[k] * index.code_size + filled[k] * 8))
                filled[k] += m
        if done != len(assigned) or not (filled == sizes).all():
            raise RuntimeError("the vectors changed between the two passes of the index build")
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
