"""PTE bit layout and a decoder for raw page-table entries.

The constants come from ``pymmu/include/pte.h`` through the compiled ``_ptebits``
module, so C and Python cannot disagree about the layout.

>>> from pymmu import pte
>>> d = pte.decode(pte.PRESENT | pte.READABLE | pte.USER | (7 << pte.PFN_SHIFT))
>>> d.present, d.writable, d.pfn
(True, False, 7)
>>> pte.describe(pte.PRESENT | pte.READABLE | pte.WRITABLE | pte.USER | (7 << pte.PFN_SHIFT))
'pfn 7 P RW U'
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pymmu._ptebits import (  # noqa: F401  (re-exported)
    ACCESSED,
    COW,
    DIRTY,
    EXECUTABLE,
    PFN_SHIFT,
    PRESENT,
    READABLE,
    SHARED,
    SWAP,
    USER,
    WRITABLE,
    ZERO,
)

__all__ = [
    "PRESENT", "WRITABLE", "USER", "READABLE", "EXECUTABLE", "ACCESSED", "DIRTY",
    "SWAP", "COW", "ZERO", "SHARED", "PFN_SHIFT", "FLAG_MASK", "PTE", "decode",
    "describe", "PAGE_TABLE_DTYPE", "page_table_rows",
]

FLAG_MASK = (1 << PFN_SHIFT) - 1

# Order of the letters in describe(): (bit, letter).
_LETTERS = (
    (PRESENT, "P"), (READABLE, "R"), (WRITABLE, "W"), (EXECUTABLE, "X"),
    (USER, "U"), (ACCESSED, "A"), (DIRTY, "D"), (COW, "cow"), (ZERO, "zero"),
    (SHARED, "shared"),
)


class PTE(NamedTuple):
    """A decoded page-table entry."""

    raw: int
    present: bool
    writable: bool
    user: bool
    readable: bool
    executable: bool
    accessed: bool
    dirty: bool
    cow: bool
    zero: bool
    shared: bool
    swapped: bool
    pfn: int | None        # frame number when present
    swap_slot: int | None  # swap slot when the PTE holds a swap entry


def decode(raw: int) -> PTE:
    """Split a raw PTE into its fields.

    Parameters
    ----------
    raw : int
        The 64-bit entry, as returned by ``Process.pte``.

    Returns
    -------
    PTE
        A named tuple of flags, with ``pfn`` set for a present entry and
        ``swap_slot`` for a swap entry (the other one is None).
    """
    raw = int(raw)
    if raw < 0 or raw >= 1 << 64:
        raise ValueError(f"a PTE is a 64-bit unsigned value, not {raw}")
    present = bool(raw & PRESENT)
    swapped = not present and bool(raw & SWAP)
    return PTE(
        raw=raw,
        present=present,
        writable=bool(raw & WRITABLE),
        user=bool(raw & USER),
        readable=bool(raw & READABLE),
        executable=bool(raw & EXECUTABLE),
        accessed=bool(raw & ACCESSED),
        dirty=bool(raw & DIRTY),
        cow=bool(raw & COW),
        zero=bool(raw & ZERO),
        shared=bool(raw & SHARED),
        swapped=swapped,
        pfn=raw >> PFN_SHIFT if present else None,
        swap_slot=raw >> PFN_SHIFT if swapped else None,
    )


def describe(raw: int) -> str:
    """One-line human-readable form of a PTE, e.g. ``'pfn 7 P R W U A D'``."""
    d = decode(raw)
    if d.present:
        head = f"pfn {d.pfn}"
    elif d.swapped:
        return f"swap slot {d.swap_slot}"
    elif raw == 0:
        return "none"
    else:
        head = "not present"
    perm = "".join(letter for bit, letter in _LETTERS if letter in "RWX" and raw & bit)
    flags = [letter for bit, letter in _LETTERS if letter not in "RWX" and raw & bit]
    # Present first, then the permission word ("RW", "RX"), then the rest.
    words = flags[:1] + ([perm] if perm else []) + flags[1:]
    return " ".join([head] + words)


# One row of Process.page_table(): a PTE that exists (present or swap entry).
PAGE_TABLE_DTYPE = np.dtype([
    ("vaddr", "<u8"),       # virtual address of the page
    ("pte", "<u8"),         # the raw entry
    ("pfn", "<i8"),         # frame number, -1 if not present
    ("swap_slot", "<i8"),   # swap slot, -1 unless a swap entry
    ("present", "?"),
    ("writable", "?"),
    ("executable", "?"),
    ("accessed", "?"),
    ("dirty", "?"),
    ("cow", "?"),
    ("zero", "?"),
    ("shared", "?"),
    ("refcount", "<i8"),    # refcount of the frame (0 if not present)
])


def page_table_rows(vaddrs, ptes, refcounts) -> np.ndarray:
    """Build ``Process.page_table()`` rows from parallel arrays.

    Parameters
    ----------
    vaddrs, ptes : array_like of uint64
        Page addresses and raw entries, sorted by address.
    refcounts : array_like of int
        The refcount of each present entry's frame (anything for others).
    """
    ptes = np.asarray(ptes, dtype=np.uint64)
    rows = np.zeros(len(ptes), PAGE_TABLE_DTYPE)
    rows["vaddr"] = vaddrs
    rows["pte"] = ptes
    present = (ptes & np.uint64(PRESENT)) != 0
    swapped = ~present & ((ptes & np.uint64(SWAP)) != 0)
    frame = (ptes >> np.uint64(PFN_SHIFT)).astype(np.int64)
    rows["pfn"] = np.where(present, frame, -1)
    rows["swap_slot"] = np.where(swapped, frame, -1)
    rows["present"] = present
    for name, bit in (("writable", WRITABLE), ("executable", EXECUTABLE),
                      ("accessed", ACCESSED), ("dirty", DIRTY), ("cow", COW),
                      ("zero", ZERO), ("shared", SHARED)):
        rows[name] = (ptes & np.uint64(bit)) != 0
    rows["refcount"] = np.where(present, np.asarray(refcounts, dtype=np.int64), 0)
    return rows
