"""Argument checking shared by the public API and the reference model.

Each helper either returns a clean value or raises ``TypeError`` / ``ValueError``
with a message that names the argument and what was wrong.
"""
from __future__ import annotations

import operator

from pymmu.tables import ACCESSES, COUNTERS, POLICY_CODES, PROT_EXEC, PROT_READ, PROT_WRITE

POLICIES = tuple(p for p in POLICY_CODES if p != "python")   # what users name
VA_BITS = (32, 39, 48)
ACCESS_NAMES = ACCESSES


def as_int(value, name: str) -> int:
    """Return ``value`` as an int; ``TypeError`` for bools, floats and non-numbers."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def nonneg_int(value, name: str) -> int:
    """An int >= 0."""
    value = as_int(value, name)
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def count_int(value, name: str) -> int:
    """An int from 0 to 2**63 - 1: a count or limit the core keeps in 64 bits."""
    value = nonneg_int(value, name)
    if value >= 1 << 63:
        raise ValueError(f"{name} must be below 2**63, got {value:,}")
    return value


def positive_int(value, name: str) -> int:
    """An int >= 1."""
    value = as_int(value, name)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def parse_prot(prot) -> int:
    """Turn ``"rw"``, ``"r-x"``, ``""`` or an int of PROT_ flags into PROT_ flags.

    Write implies read, as on x86: ``"w"`` gives ``PROT_READ | PROT_WRITE``.

    >>> parse_prot("r-x"), parse_prot("w"), parse_prot(0)
    (5, 3, 0)
    """
    if isinstance(prot, str):
        flags = 0
        for ch in prot:
            bit = {"r": PROT_READ, "w": PROT_WRITE, "x": PROT_EXEC}.get(ch)
            if ch == "-":
                continue
            if bit is None:
                raise ValueError(f"prot letters are r, w, x and '-', got {prot!r}")
            if flags & bit:
                raise ValueError(f"prot letter {ch!r} given twice in {prot!r}")
            flags |= bit
    elif isinstance(prot, bool):
        raise TypeError("prot must be a str like 'rw' or an int of PROT_ flags, not bool")
    else:
        try:
            flags = operator.index(prot)
        except TypeError:
            raise TypeError("prot must be a str like 'rw' or an int of PROT_ flags, "
                            f"not {type(prot).__name__}") from None
        if not 0 <= flags <= PROT_READ | PROT_WRITE | PROT_EXEC:
            raise ValueError(f"prot flags must be a combination of PROT_READ, "
                             f"PROT_WRITE and PROT_EXEC (0..7), got {flags}")
    if flags & PROT_WRITE:
        flags |= PROT_READ
    return flags


def prot_str(prot: int) -> str:
    """``5 -> "r-x"``."""
    return ("r" if prot & PROT_READ else "-") + ("w" if prot & PROT_WRITE else "-") + (
        "x" if prot & PROT_EXEC else "-")


def check_machine_args(frames, page_size, swap_slots, policy, va_bits, zero_pool,
                       tlb_entries, seed):
    """Validate ``Machine(...)`` arguments; returns them cleaned, in the same order."""
    frames = positive_int(frames, "frames")
    if frames >= 1 << 31:      # frame numbers are 32-bit in the core's lists and heaps
        raise ValueError(f"frames must be below 2**31, got {frames}")
    page_size = as_int(page_size, "page_size")
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise ValueError(f"page_size must be a power of two from 512 to 65536, got {page_size}")
    swap_slots = nonneg_int(swap_slots, "swap_slots")
    if swap_slots >= 1 << 31:  # slot numbers are 32-bit in the core
        raise ValueError(f"swap_slots must be below 2**31, got {swap_slots}")
    from pymmu.policy import Policy

    if isinstance(policy, Policy):
        pass                    # a replacement policy written in Python
    elif not isinstance(policy, str):
        raise TypeError(f"policy must be a str or a pymmu.Policy, not "
                        f"{type(policy).__name__}")
    elif policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    va_bits = as_int(va_bits, "va_bits")
    if va_bits not in VA_BITS:
        raise ValueError(f"va_bits must be 32, 39 or 48, got {va_bits}")
    if zero_pool is not None:
        zero_pool = count_int(zero_pool, "zero_pool")
    tlb_entries = nonneg_int(tlb_entries, "tlb_entries")
    if tlb_entries > TLB_MAX:   # allocated up front, and flushed entry by entry
        raise ValueError(f"tlb_entries must be at most {TLB_MAX:,} (2**20), "
                         f"got {tlb_entries:,}")
    seed = as_int(seed, "seed")
    return frames, page_size, swap_slots, policy, va_bits, zero_pool, tlb_entries, seed


def as_buffer(data) -> memoryview:
    """A flat byte view of any bytes-like object (bytes, bytearray, memoryview, numpy)."""
    if isinstance(data, str):
        raise TypeError("data must be bytes-like, not str (encode it first)")
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    if "O" in view.format:
        # the bytes of an object array are pointers into this interpreter
        raise TypeError("data must be bytes-like, not an array of Python objects")
    if view.nbytes == 0:
        # cast() refuses a view with a 0 in its shape (numpy's empty((0, 4)))
        return memoryview(b"")
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def levels_for(va_bits: int, page_shift: int) -> tuple[int, int]:
    """Return ``(levels, bits_per_level)`` of the radix page table.

    >>> levels_for(48, 12), levels_for(39, 12), levels_for(32, 12)
    ((4, 9), (3, 9), (2, 10))
    """
    bits = page_shift - (2 if va_bits == 32 else 3)
    vpn_bits = va_bits - page_shift
    return -(-vpn_bits // bits), bits

# The counters of Machine.stats and Process.stats, in DESIGN.md order.
STAT_NAMES = COUNTERS

MMAP_MIN = 0x10000   # lowest address mmap(addr=None) hands out, like Linux's mmap_min_addr

TLB_MAX = 1 << 20        # the most TLB entries a Machine models

