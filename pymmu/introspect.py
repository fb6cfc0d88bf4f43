"""Looking inside a machine: the frame table, and the text tables of ``pymmu.show``.

Cold code that both implementations share: the row layout of
``Machine.frame_table()`` (:data:`FRAME_TABLE_DTYPE`), the table built from
each process's page table (:func:`frame_table`), and :func:`show`, which
renders a process's page table or a machine's frames as the demo does.
Everything here reads the public API of a Machine (``processes()``,
``page_table()``, ``frame_table()``), so it works on ``pymmu.reference``'s
Machine too.

>>> import pymmu
>>> m = pymmu.Machine(4)
>>> p = m.spawn()
>>> a = p.mmap(2 * m.page_size)
>>> p.write(a, b"hi")
>>> ft = m.frame_table()
>>> str(ft[0]["state"]), str(ft[0]["kind"]), int(ft[0]["pid"]), int(ft[0]["vaddr"]) == a
('used', 'anon', 1, True)
>>> ft["state"].tolist()
['used', 'free_zeroed', 'free_zeroed', 'free_zeroed']
"""
from __future__ import annotations

import contextlib

import numpy as np

from pymmu import pte as _pte

__all__ = ["FRAME_TABLE_DTYPE", "FRAME_STATES", "FRAME_KINDS", "frame_table", "show"]

#: ``state`` of a frame: pre-zeroed free, free but dirty, or in use.
FRAME_STATES = ("free_zeroed", "free_dirty", "used")
#: ``kind`` of a frame, "" when free.
FRAME_KINDS = ("", "anon", "shared", "file")

#: One row of ``Machine.frame_table()``: ``pfn``; ``state`` and ``kind`` (above);
#: ``refcount`` (PTEs mapping it); ``pid`` and ``vaddr`` of one mapper, the lowest
#: pid (-1 / 0 when no PTE maps it); ``accessed`` and ``dirty``, OR over the PTEs
#: that map it; ``swap_slot``, the slot of its swap-cache copy (-1 when none).
FRAME_TABLE_DTYPE = np.dtype([
    ("pfn", np.int64), ("state", "U11"), ("refcount", np.int64), ("kind", "U6"),
    ("pid", np.int64), ("vaddr", np.uint64), ("accessed", np.bool_), ("dirty", np.bool_),
    ("swap_slot", np.int64),
])


def frame_table(frames: int, state, kind, refcount, swap_slot, mappers) -> np.ndarray:
    """Build the frame table from per-frame columns and the processes' page tables.

    Parameters
    ----------
    frames : int
    state, kind : int arrays
        Indices into :data:`FRAME_STATES` and :data:`FRAME_KINDS`.
    refcount, swap_slot : int arrays
    mappers : iterable of (pid, vpns, ptes, page_shift)
        Each process that has an address space, in ascending pid order, with
        the raw PTEs of its page table (a space two processes share, a vfork
        parent's and child's, may come twice: the first, lowest pid, names it).

    Returns
    -------
    numpy.ndarray of FRAME_TABLE_DTYPE
    """
    out = np.zeros(frames, FRAME_TABLE_DTYPE)
    out["pfn"] = np.arange(frames)
    out["state"] = np.asarray(FRAME_STATES)[np.asarray(state)]
    out["kind"] = np.asarray(FRAME_KINDS)[np.asarray(kind)]
    out["refcount"] = refcount
    out["swap_slot"] = swap_slot
    out["pid"] = -1
    for pid, vpns, ptes, shift in mappers:
        ptes = np.asarray(ptes, np.uint64)
        pfns = (ptes >> np.uint64(_pte.PFN_SHIFT)).astype(np.int64)
        mapped = ((ptes & np.uint64(_pte.PRESENT)) != 0) & (pfns < frames)
        pfns, ptes, vpns = pfns[mapped], ptes[mapped], np.asarray(vpns, np.uint64)[mapped]
        first = out["pid"][pfns] == -1
        out["pid"][pfns[first]] = pid
        out["vaddr"][pfns[first]] = vpns[first] << np.uint64(shift)
        out["accessed"][pfns[(ptes & np.uint64(_pte.ACCESSED)) != 0]] = True
        out["dirty"][pfns[(ptes & np.uint64(_pte.DIRTY)) != 0]] = True
    return out


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
    lines = ["  ".join(s.rjust(w) for s, w in zip(r, widths)).rstrip() for r in [head] + rows]
    return "\n".join(lines)


def show(what) -> str:
    """The text table of a process's page table, or of a machine's frames.

    Parameters
    ----------
    what : Process or Machine
        A process: one line per mapped page (virtual page, frame, the PTE's
        bits, the frame's refcount). A machine: one line per frame (state,
        kind, refcount, the lowest pid mapping it and where, A/D, swap-cache
        slot), the clock hand marked with ``>``.

    Returns
    -------
    str

    Examples
    --------
    >>> import pymmu
    >>> m = pymmu.Machine(2)
    >>> p = m.spawn()
    >>> a = p.mmap(m.page_size)
    >>> p.write(a, b"x")
    >>> print(pymmu.show(m))
       pfn  state        kind  refs  pid  vaddr    A  D  slot
    >  0    used         anon     1    1  0x10000  A  D
       1    free_zeroed           0
    >>> print(pymmu.show(p))
    pid 1 (running): 1 pages in its page table
      vaddr    where               pte  refs
    0x10000  frame 0  pfn 0 P RW U A D     1
    """
    if hasattr(what, "frame_table") and hasattr(what, "processes"):
        with _held(what):
            return _show_machine(what)
    if hasattr(what, "page_table") and hasattr(what, "pid"):
        with _held(getattr(what, "_m", None)):
            return _show_process(what)
    raise TypeError(f"show needs a pymmu Machine or Process, not {type(what).__name__}")


def _held(m):
    """``m._held()`` of a core Machine (one table from one instant, while
    another thread is refused); a no-op for the reference, which has none."""
    held = getattr(m, "_held", None)
    return held() if held is not None else contextlib.nullcontext()


def _show_machine(m) -> str:
    hand = getattr(m, "clock_hand", None)
    rows = []
    for r in m.frame_table():
        used = r["pid"] >= 0
        rows.append([
            ">" if hand == r["pfn"] else "",
            str(r["pfn"]), str(r["state"]), str(r["kind"]), str(r["refcount"]),
            str(r["pid"]) if used else "", f"{int(r['vaddr']):#x}" if used else "",
            "A" if r["accessed"] else "", "D" if r["dirty"] else "",
            str(r["swap_slot"]) if r["swap_slot"] >= 0 else "",
        ])
    head = ["", "pfn", "state", "kind", "refs", "pid", "vaddr", "A", "D", "slot"]
    widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
    left = {0, 1, 2, 3, 6}
    lines = ["  ".join(s.ljust(w) if c in left else s.rjust(w)
                       for c, (s, w) in enumerate(zip(r, widths))).rstrip()
             for r in [head] + rows]
    return "\n".join(lines)


def _show_process(p) -> str:
    rows = []
    for r in p.page_table():
        where = (f"frame {int(r['pfn'])}" if r["present"] else
                 f"swap {int(r['swap_slot'])}" if r["swap_slot"] >= 0 else "")
        rows.append([f"{int(r['vaddr']):#x}", where, _pte.describe(int(r["pte"])),
                     str(int(r["refcount"])) if r["present"] else ""])
    title = f"pid {p.pid} ({p.state}): {len(rows)} pages in its page table"
    if not rows:
        return title
    return title + "\n" + _table(["vaddr", "where", "pte", "refs"], rows)
