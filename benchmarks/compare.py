#!/usr/bin/env python3
"""Side-by-side performance of pymmu against its baselines, in one process.

This script owns the ratio table of DESIGN.md section 9. Every figure is the median of
several repeats timed with ``time.perf_counter_ns`` (garbage collector off while a
repeat runs), and every target is judged on the ratio of two figures taken in this same
run: machines differ and runs drift by 15-25%, so no absolute time is ever a target.

Usage::

    python benchmarks/compare.py            # full run, about four minutes on 2 cores
    python benchmarks/compare.py --quick    # small sizes, seconds (CI smoke run)
    python benchmarks/compare.py --json results.json
    python benchmarks/compare.py --only access,fork
    python benchmarks/compare.py --only pressure,resident,unicorn,replay_ref
    python benchmarks/compare.py --only traces  # trace files vs wc -l and xz -dc
    python benchmarks/compare.py --only events,policy  # section 11: event log, Python policies
    python benchmarks/compare.py --list     # the registered measurements

The script exits 0 whether or not a target holds (the last column says); it exits 1
only when a measurement could not run at all.

Measurements live in a registry: a function decorated with ``@measurement(name)``
takes the run's :class:`Context` and returns :class:`Row` objects. A measurement that
needs an optional package names it in ``requires=``; where the package is missing it
is listed as skipped instead of failing the run: ``pressure`` needs libcachesim and
``unicorn`` needs unicorn (both from PyPI, neither installed in CI). ``traces`` times
``wc -l`` and ``xz -dc`` as its baselines; where a tool is not on PATH its rows are left
out and a note says so.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import mmap
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np

PAGE = 4096
DATA8 = b"\xa5" * 8


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Measurement:
    name: str                                   # key for --only
    func: Callable[["Context"], list["Row"]]    # does the work, returns table rows
    requires: tuple[str, ...]                   # optional modules it imports
    title: str                                  # first line of the docstring


MEASUREMENTS: dict[str, Measurement] = {}


def measurement(name: str, *, requires: Iterable[str] = ()):
    """Register ``func(ctx) -> list[Row]`` under ``name``; table order is registration order."""
    def register(func):
        title = (func.__doc__ or name).strip().splitlines()[0]
        MEASUREMENTS[name] = Measurement(name, func, tuple(requires), title)
        return func
    return register


def missing_modules(m: Measurement) -> list[str]:
    return [mod for mod in m.requires if importlib.util.find_spec(mod) is None]


# ------------------------------------------------------------------------------ rows

@dataclass
class Row:
    """One line of the table: a pymmu figure, what it is compared with, and the target.

    ``ratio`` is ``baseline_ns / pymmu_ns`` when ``ratio_is == "speedup"`` (bigger is
    better for pymmu) and ``pymmu_ns / baseline_ns`` when it is ``"cost"``.
    ``lo``/``hi`` bound the ratio; ``holds`` is None for rows without a target.
    """

    group: str
    path: str
    pymmu_ns: float
    baseline: str = ""
    baseline_ns: float | None = None
    ratio_is: str = "cost"
    ratio: float | None = None
    lo: float | None = None
    hi: float | None = None
    target: str = ""
    holds: bool | None = None
    note: str = ""
    counts: dict | None = None      # e.g. miss counts of both sides, for the JSON
    unit: str = "ns"                # what pymmu_ns holds: "ns", or "B" for memory rows

    def __post_init__(self):
        if self.baseline_ns and self.ratio is None:
            if self.ratio_is == "speedup":
                self.ratio = self.baseline_ns / self.pymmu_ns
            else:
                self.ratio = self.pymmu_ns / self.baseline_ns
        if self.ratio is not None and (self.lo is not None or self.hi is not None):
            self.holds = ((self.lo is None or self.ratio >= self.lo)
                          and (self.hi is None or self.ratio <= self.hi))
            if not self.target:
                self.target = target_text(self.ratio_is, self.lo, self.hi)

    @property
    def ratio_text(self) -> str:
        if self.ratio is None:
            return ""
        if self.ratio_is == "speedup":
            if self.ratio < 1:
                return f"{fmt_ratio(1 / self.ratio)}x slower"
            return f"{fmt_ratio(self.ratio)}x faster"
        return f"{fmt_ratio(self.ratio)}x"


def speedup(group, path, t, baseline, tb, *, at_least=None, note=""):
    """A row whose ratio is baseline / pymmu: how many times faster pymmu is."""
    return Row(group, path, t, baseline, tb, "speedup", lo=at_least, note=note)


def cost(group, path, t, baseline, tb, *, at_most=None, within=None, note=""):
    """A row whose ratio is pymmu / baseline; ``within=k`` means between 1/k and k."""
    lo, hi = (1 / within, within) if within else (None, at_most)
    return Row(group, path, t, baseline, tb, "cost", lo=lo, hi=hi, note=note)


def target_text(ratio_is, lo, hi) -> str:
    if ratio_is == "speedup":
        return "faster" if lo == 1 else f">= {fmt_ratio(lo)}x faster"
    if lo is not None and hi is not None:
        return f"within {fmt_ratio(hi)}x"
    return f"<= {fmt_ratio(hi)}x"


def fmt_ratio(r: float) -> str:
    return f"{r:.0f}" if r >= 100 else f"{r:.3g}"


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return ""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_value(v: float | None, unit: str) -> str:
    """A table cell: a time for ``unit`` "ns", else the value in its unit (bytes from
    1 KiB up in KiB or MiB)."""
    if v is None:
        return ""
    if unit == "ns":
        return fmt_ns(v)
    if unit == "B" and abs(v) >= 1024:
        for name, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
    return f"{v:.4g} {unit}"


# ---------------------------------------------------------------------------- timing

@dataclass
class Loop:
    """Something to time: ``run(state)`` does ``ops`` operations.

    ``before()`` (untimed) makes the state each repeat starts from, and
    ``after(state, result)`` (untimed) undoes what the repeat did.
    """

    run: Callable[[object], object]
    ops: int = 1
    before: Callable[[], object] | None = None
    after: Callable[[object, object], None] | None = None

    def once(self) -> int:
        state = self.before() if self.before else None
        gc.disable()
        t0 = time.perf_counter_ns()
        result = self.run(state)
        t1 = time.perf_counter_ns()
        gc.enable()
        if self.after:
            self.after(state, result)
        return t1 - t0


def medians(loops: dict[str, Loop], repeats: int, *, warmup: bool = True) -> dict[str, float]:
    """Median time per operation of each loop, over ``repeats`` repeats.

    The loops take turns within each repeat (A B C, A B C, ...), so that their ratios
    stay fair when the machine's background load drifts during the run. With
    ``warmup`` each loop first runs once untimed. The garbage collector is off while a
    loop is timed and runs between loops.
    """
    enabled = gc.isenabled()
    samples: dict[str, list[float]] = {name: [] for name in loops}
    try:
        if warmup:
            for loop in loops.values():
                loop.once()
        for _ in range(repeats):
            for name, loop in loops.items():
                gc.collect()
                samples[name].append(loop.once() / loop.ops)
    finally:
        if enabled:
            gc.enable()
        else:
            gc.disable()
    return {name: statistics.median(v) for name, v in samples.items()}


def median_ns(loop: Loop, repeats: int, *, warmup: bool = True) -> float:
    """Median time per operation of one loop."""
    return medians({"loop": loop}, repeats, warmup=warmup)["loop"]


# --------------------------------------------------------------------------- context

@dataclass
class Sizes:
    access_pages: tuple      # resident pages the random 8-byte accesses fall into
                             # (64 fit the default TLB; 16384 make most accesses miss)
    access_calls: int        # calls per timed loop, pymmu and bytearray
    reference_calls: int     # calls per timed loop, reference.py
    fork_pages: tuple        # N for fork; linearity is judged from [-2] to [-1]
    pagesize_pages: int      # N for the page_size 512 vs 65536 fork comparison
    cow_pages: int           # pages written once after a fork, per repeat
    vfork_samples: int       # single vfork calls timed (it cannot be batched)
    zipf_records: int        # accesses of the Zipf(0.9) trace replayed under pressure
    zipf_pages: int          # pages it draws from (frames are 1% and 10% of those touched)
    gather_indices: int      # random indices of the resident replay / numpy gather
    gather_entries: int      # 8-byte entries they index (8 MiB at 1M entries)
    ref_records: int         # records of the small traces reference.py replays
    ref_pages: int           # pages of those traces
    trace_records: int | None = None    # records of the 1x lackey text (None: the
                                        # whole ls sample, 873,174)
    trace_copies: int = 4               # copies of it concatenated for the big file
    load_calls: int = 200               # load() calls per timed loop
    events_zipf_records: int = 1_000_000    # accesses of the Zipf trace of events
    events_zipf_pages: int = 20_000         # pages it draws from (frames: 1% of those)
    cyclic_records: int = 1_000_000     # accesses of the every-access-faults trace


FULL = Sizes((64, 16384), 100_000, 3_000, (16, 1024, 16384, 262144), 16384, 8192, 101,
             zipf_records=10_000_000, zipf_pages=200_000,
             gather_indices=10_000_000, gather_entries=1_000_000,
             ref_records=50_000, ref_pages=1_000)
QUICK = Sizes((64,), 2_000, 200, (16, 128, 1024), 128, 64, 11,
              zipf_records=200_000, zipf_pages=20_000,
              gather_indices=200_000, gather_entries=100_000,
              ref_records=500, ref_pages=200,
              trace_records=50_000, load_calls=20,
              events_zipf_records=50_000, events_zipf_pages=2_000,
              cyclic_records=50_000)


@dataclass
class Context:
    Machine: type               # the implementation under test
    Reference: type | None      # pymmu.reference.Machine, the oracle
    impl: str                   # how Machine was chosen (--impl)
    quick: bool
    repeats: int
    sizes: Sizes
    seed: int = 0
    notes: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # cases that raised; the rest still count

    def resident(self, pages: int, *, page_size: int = PAGE, Machine=None, frames=None):
        """A machine with one process whose ``pages`` private pages are all resident
        and writable (each written once). Returns (machine, process, base address)."""
        Machine = Machine or self.Machine
        m = Machine(frames or pages, page_size=page_size)
        p = m.spawn()
        base = p.mmap(pages * page_size)
        touch(p, base, pages, page_size)
        return m, p, base


def touch(p, base: int, pages: int, page_size: int) -> None:
    """Write one byte to every page (makes each resident, private and writable)."""
    write = p.write
    one = b"\x01"
    for a in range(base, base + pages * page_size, page_size):
        write(a, one)


# ---------------------------------------------------------------------- measurements

def _read_loop(read, addrs):
    for a in addrs:
        read(a, 8)


def _write_loop(write, addrs):
    data = DATA8
    for a in addrs:
        write(a, data)


def _slice_read_loop(buf, offs):
    for a in offs:
        buf[a:a + 8]


def _slice_write_loop(buf, offs):
    data = DATA8
    for a in offs:
        buf[a:a + 8] = data


@measurement("access")
def measure_access(ctx: Context) -> list[Row]:
    """8-byte p.read / p.write per call on resident pages at random addresses."""
    rows = []
    for pages in ctx.sizes.access_pages:
        rows += access_rows(ctx, pages)
        gc.collect()
    return rows


def access_rows(ctx: Context, pages: int) -> list[Row]:
    """The access rows for one working set of ``pages`` resident pages."""
    s = ctx.sizes
    rng = random.Random(ctx.seed)
    offs = [rng.randrange(pages * PAGE // 8) * 8 for _ in range(s.access_calls)]
    label = f"{pages} resident pages"

    m, p, base = ctx.resident(pages)
    addrs = [base + o for o in offs]
    buf = bytearray(pages * PAGE)
    buf[::PAGE] = b"\x01" * pages
    n = len(offs)
    loops = {
        "read": Loop(lambda _: _read_loop(p.read, addrs), n),
        "write": Loop(lambda _: _write_loop(p.write, addrs), n),
        "slice_read": Loop(lambda _: _slice_read_loop(buf, offs), n),
        "slice_write": Loop(lambda _: _slice_write_loop(buf, offs), n),
    }
    if ctx.Reference is not None:
        rm, rp, rbase = ctx.resident(pages, Machine=ctx.Reference)
        raddrs = [rbase + o for o in offs[:s.reference_calls]]
        loops["ref_read"] = Loop(lambda _: _read_loop(rp.read, raddrs), len(raddrs))
        loops["ref_write"] = Loop(lambda _: _write_loop(rp.write, raddrs), len(raddrs))
    t = medians(loops, ctx.repeats)

    rows = []
    if ctx.Reference is not None:
        rows += [
            speedup("access", f"p.read(a, 8), {label}", t["read"],
                    "reference.py p.read(a, 8)", t["ref_read"], at_least=50),
            speedup("access", f"p.write(a, 8 bytes), {label}", t["write"],
                    "reference.py p.write(a, 8 bytes)", t["ref_write"], at_least=50),
        ]
    rows += [
        cost("access", f"p.read(a, 8), {label}", t["read"],
             "bytearray slice buf[a:a+8]", t["slice_read"], at_most=1.5),
        cost("access", f"p.write(a, 8 bytes), {label}", t["write"],
             "bytearray slice buf[a:a+8] = b", t["slice_write"], at_most=1.5),
    ]
    return rows


def _reap(p):
    def after(state, child):
        child.exit()
        p.wait(child)
    return after


def fork_loop(ctx: Context, pages: int, page_size: int = PAGE) -> tuple[Loop, object]:
    """``p.fork()`` of a process with ``pages`` resident, writable private pages.

    Between repeats the child exits and every page is written again, so each fork
    starts from writable PTEs (the first-fork case, which write-protects them all).
    Returns the loop and the machine, which must stay alive while it is timed.
    """
    m, p, base = ctx.resident(pages, page_size=page_size)
    return Loop(lambda _: p.fork(), 1, before=lambda: touch(p, base, pages, page_size),
                after=_reap(p)), m


def real_fork_cost(pages: int, repeats: int) -> float | None:
    """Median time until ``os.fork()`` returns in the parent of a process holding
    ``pages`` resident private 4 KiB pages (anonymous mmap, huge pages off).

    The child calls ``os._exit(0)`` at once; the parent reaps it untimed. Before each
    repeat every page is written again, as for pymmu's fork.
    """
    if not hasattr(os, "fork"):
        return None
    mem = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mem.madvise(mmap.MADV_NOHUGEPAGE)
    view = np.frombuffer(mem, np.uint8)

    def before():
        view[::PAGE] = 1

    def run(_):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        return pid

    def after(_, pid):
        os.waitpid(pid, 0)

    try:
        return median_ns(Loop(run, 1, before, after), repeats)
    finally:
        view = None             # release the buffer export before closing the mapping
        mem.close()


@measurement("fork")
def measure_fork(ctx: Context) -> list[Row]:
    """fork() against N resident pages: linear in N, independent of page bytes, vs os.fork."""
    s = ctx.sizes
    ns = s.fork_pages
    built = {n: fork_loop(ctx, n) for n in ns}
    total = medians({n: loop for n, (loop, _) in built.items()}, ctx.repeats)
    del built
    gc.collect()
    per_page = {n: total[n] / n for n in ns}
    prev_n, max_n = ns[-2], ns[-1]
    rows = []
    for n in ns:
        path = f"p.fork() per page, N={n} (whole call {fmt_ns(total[n])})"
        if n == max_n:
            # Linear (or better) growth keeps the per-page cost from rising with N.
            rows.append(cost("fork", path, per_page[n], f"per page at N={prev_n}",
                             per_page[prev_n], at_most=2.0, note="linear in N"))
        else:
            rows.append(Row("fork", path, per_page[n]))
    marginal = (total[max_n] - total[prev_n]) / (max_n - prev_n)
    rows.append(Row("fork", f"p.fork() marginal cost per page, N={prev_n} to {max_n}",
                    marginal, note="the per-page cost without the fixed cost"))

    n = s.pagesize_pages
    built = {ps: fork_loop(ctx, n, ps) for ps in (512, 65536)}
    by_size = medians({ps: loop for ps, (loop, _) in built.items()}, ctx.repeats)
    del built
    gc.collect()
    rows.append(cost("fork", f"p.fork(), N={n} pages of 65536 bytes", by_size[65536],
                     f"N={n} pages of 512 bytes", by_size[512], within=1.5,
                     note="cost follows pages, not bytes"))

    real = real_fork_cost(max_n, ctx.repeats)
    if real is not None:
        rows.append(speedup("fork", f"p.fork(), N={max_n} pages", total[max_n],
                            f"os.fork(), {max_n * PAGE >> 20} MiB in 4 KiB pages", real,
                            at_least=10))
    else:
        ctx.notes.append("os.fork() is not available here: no real-fork baseline")
    return rows


@measurement("vfork")
def measure_vfork(ctx: Context) -> list[Row]:
    """vfork() cost is flat: the child borrows the address space, nothing is copied."""
    small_n, big_n = ctx.sizes.fork_pages[0], ctx.sizes.fork_pages[-1]
    built = {n: ctx.resident(n) for n in (small_n, big_n)}
    cost_at = medians({n: Loop(lambda _, p=p: p.vfork(), 1, after=_reap(p))
                       for n, (_, p, _) in built.items()}, ctx.sizes.vfork_samples)
    del built
    return [cost("vfork", f"p.vfork(), N={big_n} pages", cost_at[big_n],
                 f"p.vfork(), N={small_n} pages", cost_at[small_n], at_most=1.2,
                 note="flat")]


def kernel_cow_fault(pages: int, repeats: int) -> float | None:
    """Per page: the parent's first 8-byte write to each of ``pages`` resident 4 KiB
    pages while a forked child (asleep on a pipe) still shares them."""
    if not hasattr(os, "fork"):
        return None
    mem = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mem.madvise(mmap.MADV_NOHUGEPAGE)
    view = np.frombuffer(mem, np.uint8)
    view[::PAGE] = 1
    offs = range(0, pages * PAGE, PAGE)

    def before():
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(wfd)
                os.read(rfd, 1)
            finally:
                os._exit(0)
        os.close(rfd)
        return pid, wfd

    def run(_):
        data = DATA8
        for o in offs:
            mem[o:o + 8] = data

    def after(state, _):
        pid, wfd = state
        os.close(wfd)           # the child's read returns, it exits
        os.waitpid(pid, 0)

    try:
        return median_ns(Loop(run, pages, before, after), repeats)
    finally:
        view = None             # release the buffer export before closing the mapping
        mem.close()


def cow_fault(ctx: Context, pages: int) -> float:
    """Per page: fork, then the parent's first 8-byte write to each of ``pages``
    resident pages (a COW copy each); the child exits untimed after each repeat."""
    m, p, base = ctx.resident(pages, frames=2 * pages)
    addrs = range(base, base + pages * PAGE, PAGE)

    def run(_):
        write, data = p.write, DATA8
        for a in addrs:
            write(a, data)

    def after(child, _):
        child.exit()
        p.wait(child)

    return median_ns(Loop(run, pages, p.fork, after), ctx.repeats)


def numpy_page_copy(pages: int, repeats: int, seed: int) -> float:
    """Per page: ``dst[i] = src[i]`` over ``pages`` rows of 4 KiB in numpy arrays."""
    src = np.random.default_rng(seed).integers(0, 256, (pages, PAGE), dtype=np.uint8)
    dst = np.empty_like(src)

    def run(_):
        for i in range(pages):
            dst[i] = src[i]

    return median_ns(Loop(run, pages), repeats)


@measurement("cow")
def measure_cow(ctx: Context) -> list[Row]:
    """Copy-on-write write fault, per page: fork, then the first write to each page."""
    n = ctx.sizes.cow_pages
    core = cow_fault(ctx, n)
    gc.collect()
    npcopy = numpy_page_copy(n, ctx.repeats, ctx.seed)
    rows = [cost("cow", f"COW write fault + 4 KiB copy, per page ({n} pages)", core,
                 "numpy copy of one page, dst[i] = src[i]", npcopy,
                 note="no target: what the copy alone costs from Python")]
    kernel = kernel_cow_fault(n, ctx.repeats)
    if kernel is not None:
        rows.append(speedup("cow", f"COW write fault + 4 KiB copy, per page ({n} pages)",
                            core, "Linux COW fault (write after os.fork)", kernel,
                            at_least=1))
    return rows


# ---------------------------------------------------------------- replay measurements

# Every built-in policy (pymmu.tables.POLICY_CODES but "python") has its rows:
# tests/test_policy_units.py checks that a new one is added here.
POLICIES = ("clock", "lru", "fifo", "opt", "random", "mru")
PRESSURE_FRACTIONS = (0.01, 0.10)       # frames as a fraction of the distinct pages

# libCacheSim's twin of a pymmu policy (the same misses): class name and keyword
# arguments. Its Clock inserts with the reference bit clear unless init_freq=1;
# pymmu's clock maps a faulted page referenced (DESIGN.md section 6), so
# init_freq=1 matches it.
LIBCACHESIM = {"clock": ("Clock", {"init_freq": 1}), "lru": ("LRU", {}),
               "fifo": ("FIFO", {}), "opt": ("Belady", {})}
# A policy libCacheSim has no twin of is timed beside its nearest policy there
# (other misses: its own are checked against a simulator in tests/test_replay.py).
NEAREST = {"random": ("Random", {}), "mru": ("LRU", {})}

# libCacheSim's oracleGeneral binary trace: packed 24-byte little-endian records.
ORACLE_GENERAL = np.dtype([("time", "<u4"), ("id", "<u8"), ("size", "<u4"),
                           ("next", "<i8")])
assert ORACLE_GENERAL.itemsize == 24


def zipf_pages(records: int, pages: int, seed: int, alpha: float = 0.9) -> np.ndarray:
    """Page numbers (uint64) of ``records`` independent Zipf(``alpha``) draws over
    ``pages`` pages: rank k is drawn with probability proportional to k**-alpha.

    Ranks map to page numbers through a random permutation of 0..pages-1, so the hot
    pages are scattered over the address space rather than packed at its start.
    """
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(np.arange(1, pages + 1, dtype=np.float64) ** -alpha)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(records), side="right")
    np.minimum(ranks, pages - 1, out=ranks)          # guards the rounding of cdf[-1]
    return rng.permutation(pages).astype(np.uint64)[ranks]


def next_access(keys: np.ndarray) -> np.ndarray:
    """For each position, the index of the next position holding the same key, or -1
    (oracleGeneral's "no future access"). Computed here, not by pymmu, so that the
    baseline does not lean on the code under test."""
    n = keys.shape[0]
    nxt = np.full(n, -1, dtype=np.int64)
    if n > 1:
        order = np.argsort(keys, kind="stable")
        same = keys[order[1:]] == keys[order[:-1]]
        nxt[order[:-1][same]] = order[1:][same]
    return nxt


def write_oracle_general(path: str, keys: np.ndarray) -> None:
    """Write ``keys`` as a libCacheSim oracleGeneral file: record i is (time i, id
    keys[i], size 1, next access: the index of the next request for the same id, or -1).
    Size 1 makes a cache of ``frames`` bytes hold ``frames`` pages."""
    rec = np.empty(keys.shape[0], dtype=ORACLE_GENERAL)
    rec["time"] = np.arange(keys.shape[0], dtype=np.uint32)
    rec["id"] = keys
    rec["size"] = 1
    rec["next"] = next_access(keys)
    rec.tofile(path)


def _faults(stats) -> int:
    return int(stats["minor_faults"]) + int(stats["major_faults"])


def pressure_machine(ctx: Context, Machine, frames: int, distinct: int, policy: str):
    """The machine a pressure replay runs on: ``frames`` frames, swap for every page,
    no shared zero page (so that every first touch takes a frame, as a cache insert
    does), so minor + major faults are the misses of a cache of ``frames`` pages."""
    return Machine(frames, zero_page=False, swap_slots=distinct, policy=policy)


def pressure_case(ctx: Context, lcs, trace, path: str, distinct: int, frames: int,
                  policy: str, hashpower: int, repeats: int, pct: str) -> Row | None:
    """One (frames, policy) cell of ``pressure``: both sides timed in turns, each repeat
    checking its miss count. Returns None (and records the error) if a side raises."""
    twin = policy in LIBCACHESIM
    cls_name, kwargs = LIBCACHESIM[policy] if twin else NEAREST[policy]
    cache_cls = getattr(lcs, cls_name)
    n = len(trace)
    ours, theirs = [], []
    loops = {
        "pymmu": Loop(
            lambda m: m.replay(trace), n,
            before=lambda: pressure_machine(ctx, ctx.Machine, frames, distinct, policy),
            after=lambda m, stats: ours.append(_faults(stats))),
        "libcachesim": Loop(
            lambda st: st[1].process_trace(st[0]), n,
            before=lambda: (lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE),
                            cache_cls(frames, hashpower=hashpower, **kwargs)),
            # process_trace returns (miss ratio, byte miss ratio): with n < 2**53
            # requests, ratio * n rounds back to the miss count
            after=lambda st, res: theirs.append(round(res[0] * n))),
    }
    try:
        t = medians(loops, repeats, warmup=False)
    except Exception as e:                          # one cell failing keeps the others
        ctx.errors.append(f"pressure {policy} {pct} frames ({frames:,}): "
                          f"{type(e).__name__}: {e}")
        traceback.print_exc()
        return None
    same = len(set(ours)) == 1 and set(ours) == set(theirs)
    row = speedup(
        "pressure", f"m.replay {policy}, {pct} frames ({frames:,}), per access",
        t["pymmu"], f"libCacheSim {cls_name} process_trace", t["libcachesim"],
        at_least=10,
        note="misses: pymmu {} / libCacheSim {}".format(
            ", ".join(f"{v:,}" for v in sorted(set(ours))),
            ", ".join(f"{v:,}" for v in sorted(set(theirs)))))
    row.counts = {"pymmu_misses": ours[0], "baseline_misses": theirs[0],
                  "same_misses": same, "twin": twin, "frames": frames,
                  "distinct_pages": distinct, "accesses": n}
    if twin:
        row.target = ">= 10x faster, same misses"
        row.holds = bool(row.holds and same)
    else:
        row.target = f">= 10x faster (no libCacheSim twin: beside its {cls_name})"
    ctx.notes.append(
        f"pressure {policy:5s} {pct:>3s} frames: misses pymmu {ours[0]:,}, "
        f"libCacheSim {cls_name} {theirs[0]:,}: "
        f"{('same' if same else 'DIFFERENT') if twin else 'not a twin'} "
        f"(miss ratio {ours[0] / n:.4f})")
    return row


@measurement("pressure", requires=("libcachesim",))
def measure_pressure(ctx: Context) -> list[Row]:
    """m.replay under memory pressure vs libCacheSim process_trace, Zipf(0.9) page trace."""
    import libcachesim as lcs
    from pymmu.traces import LOAD, Trace

    s = ctx.sizes
    t0 = time.perf_counter()
    pages = zipf_pages(s.zipf_records, s.zipf_pages, ctx.seed)
    n = pages.shape[0]
    distinct = int(np.count_nonzero(np.bincount(pages.astype(np.intp))))  # pages < zipf_pages
    trace = Trace(pages << np.uint64(PAGE.bit_length() - 1), kind=LOAD)
    # a hash table of about two buckets per page (libCacheSim's default is 2**24
    # buckets, which costs it 2-5x on FIFO here): the baseline at its best
    hashpower = max(10, distinct.bit_length() + 1)
    # each 10M-access repeat costs libCacheSim seconds: 5 repeats (a median still)
    repeats = min(ctx.repeats, 5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pymmu-bench-") as tmp:
        path = os.path.join(tmp, "zipf.oracleGeneral")
        write_oracle_general(path, pages)
        del pages
        print(f"  pressure: {n:,}-access Zipf trace over {distinct:,} pages and its "
              f"oracleGeneral file made in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        for fraction in PRESSURE_FRACTIONS:
            frames = max(1, round(distinct * fraction))
            for policy in POLICIES:
                row = pressure_case(ctx, lcs, trace, path, distinct, frames, policy,
                                    hashpower, repeats, f"{fraction * 100:g}%")
                if row is not None:
                    rows.append(row)
                gc.collect()
    ctx.notes.append(
        f"pressure: Zipf(0.9), {n:,} accesses over {distinct:,} distinct pages (seed "
        f"{ctx.seed}); pymmu is Machine(frames, zero_page=False, swap_slots={distinct:,}, "
        "policy=...).replay(trace) with full MMU work, and its opt time includes "
        "computing next use inside replay; libCacheSim is timed on process_trace only "
        f"(reader + cache, hashpower {hashpower}, objects of size 1); median of "
        f"{repeats}")
    return rows


def core_memory(machine) -> dict | None:
    """The core's memory budget (``pymmu._introspect.memory``) of ``machine``, or
    None for an implementation without pymmu's core."""
    try:
        from pymmu._core import Core
        from pymmu._introspect import memory
    except ImportError:
        return None
    core = getattr(machine, "_core", None)
    return memory(core) if isinstance(core, Core) else None


@measurement("memory")
def measure_memory(ctx: Context) -> list[Row]:
    """Bytes the core keeps beside page data, per frame (each policy) and per PTE."""
    frames, pages = 1 << 16, 1 << 14
    if core_memory(ctx.Machine(frames, policy="clock")) is None:
        ctx.notes.append(f"memory: {ctx.impl} has no core memory accounting: no rows")
        return []
    rows = []
    for policy in POLICIES:
        mem = core_memory(ctx.Machine(frames, policy=policy))
        row = Row("memory", f"metadata per frame, {policy} ({frames:,} frames)",
                  mem["frame"], unit="B", target="<= 16 B", holds=mem["frame"] <= 16,
                  note=f"record {mem['frame_record']} B (free sets live in free frames' "
                       f"records) + {policy} state {mem['policy']} B"
                       + (f"; during a replay {mem['replay_frame']} B more per frame and "
                          f"{mem['replay_reference']:.3g} B per page reference"
                          if mem["replay_frame"] else ""))
        row.counts = mem
        rows.append(row)
    m, p, _ = ctx.resident(pages)
    mem = core_memory(m)
    rows.append(Row("memory", f"per mapped PTE ({pages:,} resident pages)", mem["pte"],
                    unit="B", target="<= 8 B (+ table nodes)", holds=mem["pte"] <= 8,
                    note=f"table nodes: {mem['nodes'] / pages:.3g} B per page here"))
    return rows


@measurement("resident")
def measure_resident(ctx: Context) -> list[Row]:
    """m.replay with every page resident (TLB and page-table hits) vs numpy's gather."""
    from pymmu.traces import LOAD, Trace

    s = ctx.sizes
    n, entries = s.gather_indices, s.gather_entries
    rng = np.random.default_rng(ctx.seed)
    idx = rng.integers(0, entries, n)
    table = rng.integers(0, 1 << 62, entries)       # int64, 8 bytes per entry
    pages = -(-entries * 8 // PAGE)
    m, p, base = ctx.resident(pages)
    # the same indices as 8-byte loads from a table of 8-byte entries in pymmu memory
    trace = Trace(np.uint64(base) + idx.astype(np.uint64) * np.uint64(8), kind=LOAD,
                  size=8)
    seen = []
    loops = {
        # the warm-up of medians() is the warm-up replay; the pages are already
        # resident (written once), so no replay should fault
        "replay": Loop(lambda _: m.replay(trace, process=p), n,
                       after=lambda _, stats: seen.append(stats)),
        "gather": Loop(lambda _: table[idx], n),
    }
    t = medians(loops, ctx.repeats)
    faults = sum(_faults(st) for st in seen)
    last = seen[-1]
    lookups = int(last["tlb_hits"]) + int(last["tlb_misses"])
    tlb = f"TLB hit rate {int(last['tlb_hits']) / lookups:.1%}" if lookups else "no TLB"
    row = cost("resident",
               f"m.replay, {n:,} 8-byte loads over {pages:,} resident pages, per access",
               t["replay"], f"numpy gather table[idx], {entries:,} int64 entries",
               t["gather"], at_most=2.0, note=f"{faults} faults; {tlb}")
    row.counts = {"faults": faults, "tlb_hits": int(last["tlb_hits"]),
                  "tlb_misses": int(last["tlb_misses"])}
    if faults:
        row.holds = False
        ctx.notes.append(f"resident: the replays faulted {faults} times (should be 0)")
    ctx.notes.append(f"resident: {n:,} random indices into {entries:,} entries; "
                     f"pymmu replays them as 8-byte loads from {pages:,} resident "
                     f"pages (no faults: {faults == 0}, {tlb})")
    return [row]


@measurement("unicorn", requires=("unicorn",))
def measure_unicorn(ctx: Context) -> list[Row]:
    """8-byte p.read / p.write vs Unicorn's mem_read / mem_write at the same offsets."""
    import unicorn

    rows = []
    for pages in ctx.sizes.access_pages:
        rows += unicorn_rows(ctx, unicorn, pages)
        gc.collect()
    return rows


def unicorn_rows(ctx: Context, unicorn, pages: int) -> list[Row]:
    """The unicorn rows for one working set of ``pages`` resident pages: the offsets
    of ``access_rows``, in pymmu and in a Unicorn x86-64 engine's mapped memory."""
    s = ctx.sizes
    rng = random.Random(ctx.seed)
    offs = [rng.randrange(pages * PAGE // 8) * 8 for _ in range(s.access_calls)]
    _, p, base = ctx.resident(pages)
    addrs = [base + o for o in offs]
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    ubase = 0x10000000
    uc.mem_map(ubase, pages * PAGE)
    for a in range(ubase, ubase + pages * PAGE, PAGE):
        uc.mem_write(a, b"\x01")                    # resident in the host too
    uaddrs = [ubase + o for o in offs]
    n = len(offs)
    t = medians({
        "read": Loop(lambda _: _read_loop(p.read, addrs), n),
        "write": Loop(lambda _: _write_loop(p.write, addrs), n),
        # Unicorn's mem_read(addr, 8) / mem_write(addr, data) take the same calls
        "uc_read": Loop(lambda _: _read_loop(uc.mem_read, uaddrs), n),
        "uc_write": Loop(lambda _: _write_loop(uc.mem_write, uaddrs), n),
    }, ctx.repeats)
    label = f"{pages} resident pages"
    return [
        speedup("unicorn", f"p.read(a, 8), {label}", t["read"],
                "Unicorn uc.mem_read(a, 8)", t["uc_read"], at_least=5),
        speedup("unicorn", f"p.write(a, 8 bytes), {label}", t["write"],
                "Unicorn uc.mem_write(a, 8 bytes)", t["uc_write"], at_least=5),
    ]


@measurement("replay_ref")
def measure_replay_ref(ctx: Context) -> list[Row]:
    """m.replay vs reference.py's replay, per record, on the same small traces."""
    from pymmu.traces import LOAD, Trace

    if ctx.Reference is None:
        return []
    s = ctx.sizes
    n = s.ref_records
    rows = []

    # under pressure: a small Zipf(0.9) trace, clock, frames 10% of its pages
    pages = zipf_pages(n, s.ref_pages, ctx.seed)
    distinct = int(np.unique(pages).shape[0])
    frames = max(1, distinct // 10)
    trace = Trace(pages << np.uint64(PAGE.bit_length() - 1), kind=LOAD)
    misses = {"core": [], "ref": []}

    def pressure(Machine, key):
        return Loop(lambda m: m.replay(trace), n,
                    before=lambda: pressure_machine(ctx, Machine, frames, distinct, "clock"),
                    after=lambda m, stats: misses[key].append(_faults(stats)))

    t = medians({"core": pressure(ctx.Machine, "core"),
                 "ref": pressure(ctx.Reference, "ref")}, ctx.repeats)
    same = len(set(misses["core"])) == 1 and set(misses["core"]) == set(misses["ref"])
    row = speedup("replay_ref",
                  f"m.replay clock, {frames} frames, {n:,}-access Zipf trace, per access",
                  t["core"], "reference.py m.replay", t["ref"], at_least=1000,
                  note=f"misses: pymmu {misses['core'][0]}, reference {misses['ref'][0]}")
    row.counts = {"pymmu_misses": misses["core"][0], "baseline_misses": misses["ref"][0],
                  "same_misses": same}
    row.holds = bool(row.holds and same)
    rows.append(row)
    ctx.notes.append(f"replay_ref: clock misses on the {n:,}-access trace: pymmu "
                     f"{misses['core'][0]:,}, reference.py {misses['ref'][0]:,}: "
                     f"{'same' if same else 'DIFFERENT'}")

    # resident: random 8-byte loads over ref_pages resident pages, warm
    rng = np.random.default_rng(ctx.seed)
    offs = rng.integers(0, s.ref_pages * PAGE // 8, n).astype(np.uint64) * np.uint64(8)
    loops = {}
    keep = []
    for key, Machine in (("core", ctx.Machine), ("ref", ctx.Reference)):
        m, p, base = ctx.resident(s.ref_pages, Machine=Machine)
        tr = Trace(np.uint64(base) + offs, kind=LOAD, size=8)
        keep.append(m)
        loops[key] = Loop(lambda _, m=m, p=p, tr=tr: m.replay(tr, process=p), n)
    t = medians(loops, ctx.repeats)
    rows.append(speedup("replay_ref",
                        f"m.replay, {n:,} 8-byte loads over {s.ref_pages:,} resident "
                        "pages, per access", t["core"], "reference.py m.replay",
                        t["ref"], at_least=1000))
    del keep
    return rows


# ------------------------------------------------------------------ trace measurements

def lackey_text(records: int | None) -> bytes:
    """The ls sample's lackey text (Valgrind's header lines included), or its lines up
    to and including the ``records``-th record line."""
    import lzma

    from pymmu.traces import sample

    with open(sample("ls"), "rb") as f:
        text = lzma.decompress(f.read())
    if records is None:
        return text
    ends = np.flatnonzero(np.frombuffer(text, np.uint8) == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    is_record = np.frombuffer(text, np.uint8)[starts] == ord(" ")
    is_record |= np.frombuffer(text, np.uint8)[starts] == ord("I")
    last = np.flatnonzero(is_record)[records - 1]
    return text[:ends[last] + 1]


def warm(path: str) -> None:
    """Read a file once, so that every side is timed with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 22):
            pass


def command_loop(argv: list[str]) -> Loop:
    """A Loop running a command to completion, its output to /dev/null."""
    return Loop(lambda _: subprocess.run(argv, stdout=subprocess.DEVNULL, check=True))


def traced_peak(func) -> tuple[object, int]:
    """``func()`` and the peak of the bytes tracemalloc saw allocated while it ran
    (numpy reports its array buffers to tracemalloc)."""
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _load_loop(load, path: str, calls: int):
    def run(_):
        for _ in range(calls):
            load(path)
    return Loop(run, calls)


@measurement("traces")
def measure_traces(ctx: Context) -> list[Row]:
    """Trace files: read_lackey vs wc -l and xz -dc, streamed replay, memory, load O(1)."""
    from pymmu.traces import load, read_lackey, stream

    s = ctx.sizes
    copies = s.trace_copies
    wc, xz = shutil.which("wc"), shutil.which("xz")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pymmu-bench-") as tmp:
        t0 = time.perf_counter()
        one = os.path.join(tmp, "ls1.lackey")
        big = os.path.join(tmp, f"ls{copies}.lackey")
        text = lackey_text(s.trace_records)
        with open(one, "wb") as f:
            f.write(text)
        with open(big, "wb") as f:
            for _ in range(copies):
                f.write(text)
        del text
        packed = big + ".xz"
        if xz:
            # single-threaded -6 (the default level): one xz block, as most .xz files
            with open(packed, "wb") as f:
                subprocess.run([xz, "-6", "-T1", "-c", big], stdout=f, check=True)
        else:
            ctx.notes.append("traces: xz is not installed: no .xz rows")
        if not wc:
            ctx.notes.append("traces: wc is not installed: no wc -l row")
        for path in (one, big, packed if xz else None):
            if path:
                warm(path)

        trace = read_lackey(big)
        n = len(trace)
        n_one = len(read_lackey(one))
        distinct = trace.distinct_pages(PAGE)
        frames = 64
        mb = os.path.getsize(big) / 1e6
        xz_mb = os.path.getsize(packed) / 1e6 if xz else 0
        print(f"  traces: {copies} x {n_one:,} records ({mb:.1f} MB text"
              + (f", {xz_mb:.2f} MB xz" if xz else "")
              + f") made in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        def machine():
            return pressure_machine(ctx, ctx.Machine, frames, distinct, "clock")

        faults = {"stream": [], "memory": [], "stream_xz": []}

        def replay(key, source):
            return Loop(lambda m: m.replay(source()), n, before=machine,
                        after=lambda m, stats: faults[key].append(_faults(stats)))

        loops = {
            "read": Loop(lambda _: read_lackey(big), n),
            "memory": replay("memory", lambda: trace),
            "stream": replay("stream", lambda: stream(big)),
        }
        if wc:
            loops["wc"] = command_loop([wc, "-l", big])
            loops["wc"].ops = n
        if xz:
            loops["read_xz"] = Loop(lambda _: read_lackey(packed), n)
            loops["xz"] = command_loop([xz, "-dc", packed])
            loops["xz"].ops = n
            loops["stream_xz"] = replay("stream_xz", lambda: stream(packed))
        t = medians(loops, ctx.repeats)

        label = f"{n:,} records, {mb:.0f} MB"
        if wc:
            rows.append(cost("traces", f"read_lackey, plain text ({label}), per record",
                             t["read"], "wc -l of the same file", t["wc"], at_most=10))
        if xz:
            rows.append(cost("traces", f"read_lackey, .xz ({xz_mb:.2f} MB), per record",
                             t["read_xz"], "xz -dc of the same file > /dev/null", t["xz"],
                             at_most=1.3))
        for key, src, read_key, what in (("stream", big, "read", "plain text"),
                                         ("stream_xz", packed, "read_xz", ".xz")):
            if key not in t:
                continue
            both = t["memory"] + t[read_key]
            same = len(set(faults[key] + faults["memory"])) == 1
            row = cost("traces", f"m.replay(stream(path)), {what}, {frames} frames, "
                       "per record", t[key],
                       f"in-memory m.replay ({fmt_ns(t['memory'])}) + read_lackey "
                       f"({fmt_ns(t[read_key])})", both, at_most=1.3,
                       note=f"faults: streamed {faults[key][0]:,}, in memory "
                            f"{faults['memory'][0]:,}")
            row.counts = {"stream_faults": faults[key][0],
                          "memory_faults": faults["memory"][0], "same_faults": same}
            row.holds = bool(row.holds and same)
            rows.append(row)

        held = (trace.addr.nbytes + trace.kind.nbytes + trace.size.nbytes) / n
        rows.append(Row("traces", f"bytes per record held by read_lackey ({n:,} "
                        "records)", held, unit="B", target="<= 16 B", holds=held <= 16))
        del trace
        gc.collect()
        for path, what in ((big, "plain text"), (packed if xz else None, ".xz")):
            if path is None:
                continue
            got, peak = traced_peak(lambda: read_lackey(path))
            del got
            rows.append(Row("traces", f"peak bytes per record while read_lackey reads "
                            f"{what}", peak / n, unit="B", target="<= 32 B",
                            holds=peak / n <= 32,
                            note="tracemalloc: allocated, not necessarily resident"))
            gc.collect()

        chunk = 1 << 16
        peaks = {}
        for key, path in (("one", one), ("big", big)):
            m = machine()
            _, peaks[key] = traced_peak(lambda: m.replay(stream(path, chunk=chunk)))
            del m
            gc.collect()
        rows.append(Row("traces", f"peak of m.replay(stream(path, chunk={chunk})), "
                        f"{n_one:,} records", peaks["one"], unit="B"))
        row = cost("traces", f"peak of m.replay(stream(path, chunk={chunk})), "
                   f"{n:,} records", peaks["big"], f"the same, {n_one:,} records",
                   peaks["one"], at_most=1.5, note="independent of the trace's length")
        row.unit = "B"
        rows.append(row)

        bins = {}
        for key, path in (("one", one), ("big", big)):
            bins[key] = os.path.join(tmp, f"{key}.pmt")
            read_lackey(path).save(bins[key])
            warm(bins[key])
        calls = s.load_calls
        t = medians({key: _load_loop(load, path, calls) for key, path in bins.items()},
                    ctx.repeats)
        rows.append(cost("traces", f"load(path) of a binary trace, {n:,} records",
                         t["big"], f"load(path), {n_one:,} records", t["one"],
                         at_most=1.5, note="O(1): memory-mapped"))
    ctx.notes.append(
        f"traces: the ls sample's lackey text ({n_one:,} records) concatenated {copies} "
        f"times ({n:,} records, {mb:.1f} MB)"
        + (f", and that text compressed by xz -6 -T1 ({xz_mb:.2f} MB)" if xz else "")
        + f"; wc -l and xz -dc are timed as subprocesses, start-up included; the replays "
        f"run on Machine({frames}, zero_page=False, swap_slots={distinct}) (clock), "
        "the streamed one with the default chunk of 1,048,576 records")
    return rows


# --------------------------------------------------------- section 11 measurements

def ls_trace(records: int | None):
    """(Trace, distinct 4 KiB pages) of the shipped ls sample, or of its first
    ``records`` records (a view)."""
    from pymmu.traces import read_lackey, sample

    trace = read_lackey(sample("ls"))
    if records is not None:
        trace = trace[:records]
    return trace, trace.distinct_pages(PAGE)


def cyclic_trace(records: int, pages: int):
    """STOREs to pages 0, 1, ..., pages-1, 0, 1, ...: on ``pages - 1`` frames every
    access (clock, fifo or lru) evicts, swaps out and faults its page back in.
    Stores, so that each evicted page is dirty: a page that came back clean would
    be dropped with no swap-out (section 4 rule 6)."""
    from pymmu.traces import STORE, Trace

    page_numbers = np.arange(records, dtype=np.uint64) % np.uint64(pages)
    return Trace(page_numbers << np.uint64(PAGE.bit_length() - 1), kind=STORE)


def events_case(ctx: Context, label: str, trace, frames: int, distinct: int,
                every_access: bool = False) -> list[Row]:
    """One trace of ``events``: the same replay with recording off and on (the whole
    ``with m.events() as log: m.replay(trace)`` block timed), in turns."""
    n = len(trace)
    has_events = hasattr(ctx.Machine(1), "events")
    off_faults, on_faults, seen, inside = [], [], [], []

    def machine():
        return pressure_machine(ctx, ctx.Machine, frames, distinct, "clock")

    def record(m):
        with m.events() as log:
            t0 = time.perf_counter_ns()
            stats = m.replay(trace)
            inside.append(time.perf_counter_ns() - t0)
        return log, stats

    def recorded(m, result):
        log, stats = result
        on_faults.append(_faults(stats))
        counts = log.counts()
        seen.append((sum(counts.values()), int(np.unique(log.array["seq"]).shape[0]),
                     counts))

    loops = {"off": Loop(lambda m: m.replay(trace), n, before=machine,
                         after=lambda m, stats: off_faults.append(_faults(stats)))}
    if has_events:
        loops["on"] = Loop(record, n, before=machine, after=recorded)
    t = medians(loops, ctx.repeats)
    off_row = Row("events", f"events off: m.replay, {label}, per access", t["off"],
                  note="no target here: 'no measurable cost' is judged A/B, this row "
                       "against the same row of a build without the event log")
    off_row.counts = {"accesses": n, "faults": off_faults[0]}
    if not has_events:
        note = f"events: {ctx.impl} has no m.events(): the off rows only"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return [off_row]

    events, ep, counts = seen[0]
    same = (len(set(off_faults + on_faults)) == 1
            and len({(e, p) for e, p, _ in seen}) == 1)
    t_off, t_on = t["off"] * n, t["on"] * n             # whole replays
    t_inside = statistics.median(inside[1:] or inside)  # inside[0]: the warm-up
    per_event = (t_on - t_off) / events if events else float("nan")
    kinds = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
    rows = [off_row]
    over = Row("events", f"events on: overhead per event recorded, {label}", per_event,
               note=(f"(t_on - t_off) / {events:,} events ({kinds}); of each, "
                     f"{fmt_ns((t_on - t_inside) / events)} outside m.replay: opening "
                     "and closing the block (log.array is built at the close)")
               if events else "no events")
    over.counts = {"events": events, "event_accesses": ep, "accesses": n,
                   "ns_in_replay": t_inside, "ns_block": t_on, "ns_off": t_off,
                   "counts": counts}
    rows.append(over)
    ctx.notes.append(
        f"events {label}: {events:,} events from {ep:,} of {n:,} accesses; "
        f"{fmt_ns(per_event)} per event, of which {fmt_ns((t_on - t_inside) / events)} "
        "outside m.replay (closing the block builds log.array)" if events else
        f"events {label}: no events")
    if every_access:
        # every access produces events, so t_on / t_off per access IS the ratio per
        # event-producing access: the row the target is judged on
        row = cost("events", f"events on: m.replay, {label}, per event-producing "
                   "access", t_on / ep, "the same replay, recording off", t_off / ep,
                   at_most=2.0,
                   note=f"every one of the {n:,} accesses produces events "
                        f"({events / ep:.3g} each); ratio = t_on / t_off of the whole "
                        "`with m.events(): m.replay(t)` block, which here is exactly "
                        "the ratio per event-producing access")
    else:
        row = cost("events", f"events on: m.replay, {label}, whole replay per access",
                   t["on"], "the same replay, recording off", t["off"],
                   note=f"no target: {ep:,} of {n:,} accesses produce events "
                        f"({events:,} events), so the hits between them dilute "
                        "t_on / t_off; the target (per event-producing access) is "
                        "judged on the every-access-faults trace")
    row.counts = {"same_faults": same, "faults": off_faults[0], "events": events,
                  "event_accesses": ep, "accesses": n}
    if not same:
        row.holds = False
        ctx.notes.append(f"events: {label}: faults or events differ between repeats "
                         f"(off {sorted(set(off_faults))}, on {sorted(set(on_faults))})")
    rows.append(row)
    return rows


@measurement("events")
def measure_events(ctx: Context) -> list[Row]:
    """Event recording (section 11): the same replay with recording off and on."""
    s = ctx.sizes
    rows = []
    ls, ls_distinct = ls_trace(s.trace_records)
    for frames in (32, 8):
        rows += events_case(ctx, f"ls sample ({len(ls):,} records), {frames} frames",
                            ls, frames, ls_distinct)
        gc.collect()
    pages = zipf_pages(s.events_zipf_records, s.events_zipf_pages, ctx.seed)
    distinct = int(np.unique(pages).shape[0])
    from pymmu.traces import LOAD, Trace
    zipf = Trace(pages << np.uint64(PAGE.bit_length() - 1), kind=LOAD)
    del pages
    frames = max(1, round(distinct * 0.01))
    rows += events_case(ctx, f"Zipf(0.9) ({len(zipf):,} accesses), 1% frames "
                        f"({frames:,})", zipf, frames, distinct)
    gc.collect()
    frames = 32
    cyc = cyclic_trace(s.cyclic_records, frames + 1)
    rows += events_case(ctx, f"{frames + 1} pages in a cycle ({len(cyc):,} accesses), "
                        f"{frames} frames", cyc, frames, frames + 1, every_access=True)
    ctx.notes.append(
        "events: Machine(frames, zero_page=False, swap_slots=<pages touched>) (clock); "
        "'on' times the whole `with m.events() as log: m.replay(t)` block, closing it "
        "(building log.array) included; an event-producing access is one whose "
        "reference number appears as some event's seq; 'events off' has no target in "
        "one run: 'no measurable cost' is an A/B of its rows against a build without "
        "the event log (on such a build this measurement gives the off rows only)")
    return rows


def python_policies():
    """(clock, fifo): the Policy subclasses written in Python that pymmu ships as
    examples (pymmu/policy.py), which evict exactly as the built-in "clock" and "fifo"."""
    from pymmu.policy import Clock, Fifo

    return {"clock": Clock, "fifo": Fifo}


@measurement("policy")
def measure_policy(ctx: Context) -> list[Row]:
    """Python replacement policies (section 11) vs the built-in of the same rule."""
    trace, distinct = ls_trace(ctx.sizes.trace_records)
    n = len(trace)
    classes = python_policies()
    rows = []
    for frames in (8, 32):
        for name, cls in classes.items():
            faults = {"builtin": [], "python": []}
            evictions = {"builtin": [], "python": []}

            def loop(key, make):
                def after(m, stats):
                    faults[key].append(_faults(stats))
                    evictions[key].append(int(stats["evictions"]))
                return Loop(lambda m: m.replay(trace), n, after=after,
                            before=lambda: pressure_machine(ctx, ctx.Machine, frames,
                                                            distinct, make()))

            try:
                t = medians({"builtin": loop("builtin", lambda: name),
                             "python": loop("python", cls)}, ctx.repeats)
            except Exception as e:                  # one case failing keeps the others
                ctx.errors.append(f"policy {name} {frames} frames: "
                                  f"{type(e).__name__}: {e}")
                traceback.print_exc()
                continue
            ev = evictions["builtin"][0]
            same = (len(set(faults["builtin"] + faults["python"])) == 1
                    and len(set(evictions["builtin"] + evictions["python"])) == 1)
            t_bi, t_py = t["builtin"] * n, t["python"] * n
            per = (t_py - t_bi) / ev if ev else float("nan")
            row = Row("policy", f"Python {name} policy, ls sample ({n:,} records), "
                      f"{frames} frames, overhead per eviction", per,
                      baseline=f'built-in "{name}" (replay {fmt_ns(t_bi)}; '
                               f"Python {fmt_ns(t_py)}, {t_py / t_bi:.3g}x)",
                      target="<= 3 us, same faults",
                      holds=bool(ev and per <= 3000 and same),
                      note=f"(t_python - t_builtin) / {ev:,} evictions; faults: "
                           f"built-in {faults['builtin'][0]:,}, Python "
                           f"{faults['python'][0]:,}")
            row.counts = {"builtin_faults": faults["builtin"][0],
                          "python_faults": faults["python"][0],
                          "evictions": ev, "same_faults": same, "frames": frames,
                          "accesses": n, "ns_builtin": t_bi, "ns_python": t_py}
            rows.append(row)
            ctx.notes.append(
                f"policy {name:5s} {frames:2d} frames: faults built-in "
                f"{faults['builtin'][0]:,}, Python {faults['python'][0]:,}: "
                f"{'same' if same else 'DIFFERENT'}; {ev:,} evictions")
            gc.collect()
    ctx.notes.append(
        f"policy: Machine(frames, zero_page=False, swap_slots={distinct}, policy=...) "
        "replaying the ls sample; the Python clock is pymmu/policy.py's docstring's, "
        "the Python FIFO keeps an OrderedDict (on_map appends, on_free removes, victim "
        "returns the oldest evictable frame); a row holds only with the same faults "
        "and evictions as the built-in")
    return rows


@measurement("run")
def measure_run(ctx: Context) -> list[Row]:
    """m.run (section 12) per page reference against m.replay of the same
    references: one job (the same counters, rule 11), resident and under pressure,
    and several jobs interleaved against replaying them one after another."""
    trace, distinct = ls_trace(ctx.sizes.trace_records)
    if not hasattr(ctx.Machine(1), "run"):
        ctx.notes.append(f"run: {ctx.impl} has no m.run(): no rows")
        return []
    import pymmu

    model = pymmu.Cost(switch=0)
    rows = []
    for frames, label in ((distinct + 64, "resident"), (max(4, distinct // 8), "pressure")):
        for njobs in (1, 4):
            stats = {"run": [], "replay": []}

            def machine():
                return ctx.Machine(frames, swap_slots=njobs * distinct, zero_page=False)

            def run(m):
                return m.run([pymmu.Job(trace) for _ in range(njobs)], cost=model,
                             quantum=10_000)

            def replay(m):
                return [m.replay(trace) for _ in range(njobs)]

            def keep(key):
                def after(m, result):
                    stats[key].append(result.stats if key == "run" else result)
                return after

            refs = int(run(machine()).jobs["references"].sum())   # page references
            t = medians({"replay": Loop(replay, refs, before=machine, after=keep("replay")),
                         "run": Loop(run, refs, before=machine, after=keep("run"))},
                        ctx.repeats)
            faults = _faults(stats["run"][0])
            note = (f"{njobs} job(s) of the ls sample, Machine({frames}, zero_page=False), "
                    f"clock, quantum 10,000: {faults:,} faults")
            if njobs == 1:
                same = stats["run"][0] == stats["replay"][0][0]
                note += "; the same counters as replay" if same else \
                    "; COUNTERS DIFFER from replay"
            else:
                note += ("; replay runs the jobs one after another, run interleaves "
                         "them (more faults under pressure)")
            row = cost("run", f"m.run per page reference, {label}, {njobs} job(s)",
                       t["run"], "m.replay of the same references", t["replay"],
                       at_most=1.5 if njobs == 1 else None, note=note)
            row.counts = {"references": refs, "faults": faults, "frames": frames}
            rows.append(row)
            gc.collect()
    ctx.notes.append("run: m.run([Job(ls sample)] * k, cost=Cost(switch=0)) against "
                     "m.replay of the same trace k times, on fresh machines; the target "
                     "(at most 1.5x) is judged on one job, where both make the same "
                     "references with the same faults")
    return rows


# ------------------------------------------------------------------------ the run

def load_machine(spec: str):
    """``core`` (pymmu.Machine), ``reference`` (pymmu.reference.Machine) or
    ``module:attr`` for any class with the same API."""
    if spec == "core":
        import pymmu
        return pymmu.Machine
    if spec == "reference":
        from pymmu import reference
        return reference.Machine
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "Machine")


def environment(ctx: Context) -> dict:
    try:
        import pymmu
        version = pymmu.__version__
    except Exception:                                   # pragma: no cover
        version = "?"
    thp = "?"
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    except OSError:
        pass
    return {
        "implementation": ctx.impl, "pymmu": version, "python": platform.python_version(),
        "numpy": np.__version__, "platform": platform.platform(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "thp": thp,
        "quick": ctx.quick, "repeats": ctx.repeats, "sizes": asdict(ctx.sizes),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def format_table(rows: list[Row]) -> str:
    head = ("measurement", "pymmu", "baseline", "baseline time", "ratio", "target", "holds")
    lines = [head]
    for r in rows:
        holds = "" if r.holds is None else ("yes" if r.holds else "NO")
        lines.append((r.path, fmt_value(r.pymmu_ns, r.unit), r.baseline,
                      fmt_value(r.baseline_ns, r.unit),
                      r.ratio_text, r.target or ("-" if r.baseline else ""), holds))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    right = {1, 3, 4}
    out = []
    for k, line in enumerate(lines):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few repeats: a smoke run of a few seconds")
    ap.add_argument("--json", metavar="FILE", help="also write the rows and environment here")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per figure (median taken; default 7, --quick 5; min 5)")
    ap.add_argument("--only", metavar="NAMES",
                    help="comma-separated measurements to run (see --list)")
    ap.add_argument("--list", action="store_true", help="list the measurements and exit")
    ap.add_argument("--impl", default="core",
                    help="implementation under test: core (default), reference, or "
                         "module:Class (to exercise this script itself)")
    ap.add_argument("--reference", default="reference",
                    help="the oracle compared against: reference (default) or module:Class")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.list:
        for m in MEASUREMENTS.values():
            extra = f"  (needs {', '.join(m.requires)})" if m.requires else ""
            print(f"{m.name:10s} {m.title}{extra}")
        return 0

    names = list(MEASUREMENTS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in MEASUREMENTS]
        if unknown:
            ap.error(f"unknown measurement(s) {', '.join(unknown)}; "
                     f"known: {', '.join(MEASUREMENTS)}")
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 7)
    if repeats < 5:
        ap.error("--repeats must be at least 5 (figures are medians)")

    Machine = load_machine(args.impl)
    try:
        Reference = load_machine(args.reference)
    except ImportError:
        Reference = None
    ctx = Context(Machine, Reference, args.impl, args.quick, repeats,
                  QUICK if args.quick else FULL, seed=args.seed)
    if Reference is None:
        ctx.notes.append("pymmu.reference is not importable: no reference.py rows")
    elif Reference is Machine:
        ctx.notes.append("the implementation under test is reference.py itself: "
                         "its ratios against reference.py are 1x by construction")

    env = environment(ctx)
    print(f"pymmu benchmarks/compare.py: {args.impl} implementation "
          f"({Machine.__module__}.{Machine.__qualname__}), "
          f"{'quick' if args.quick else 'full'} run, median of {repeats} repeats")
    print(f"python {env['python']}, numpy {env['numpy']}, {env['platform']}, "
          f"{env['cpus']} cpus, transparent huge pages: {env['thp']}")
    print()

    rows: list[Row] = []
    skipped, failed = [], []
    t_start = time.perf_counter()
    for name in names:
        m = MEASUREMENTS[name]
        missing = missing_modules(m)
        if missing:
            skipped.append((name, f"needs {', '.join(missing)}"))
            continue
        t0 = time.perf_counter()
        errors_before = len(ctx.errors)
        try:
            rows += m.func(ctx)
        except Exception:
            failed.append(name)
            print(f"measurement {name!r} failed:", file=sys.stderr)
            traceback.print_exc()
        else:
            if len(ctx.errors) > errors_before:     # some of its cases raised
                failed.append(name)
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        gc.collect()

    print(format_table(rows))
    print()
    print("ratio: 'Nx faster' (or slower) compares the two times; a bare 'Nx' is pymmu "
          "time / baseline time. Times are per call, or per page where the row says so.")
    for name, why in skipped:
        print(f"skipped {name}: {why}")
    if ctx.quick:
        print("quick run: sizes are too small for the targets to mean much; "
              "judge them on a full run")
    for note in ctx.notes:
        print(f"note: {note}")
    for error in ctx.errors:
        print(f"FAILED: {error}")
    held = sum(r.holds is True for r in rows)
    judged = sum(r.holds is not None for r in rows)
    print(f"targets held: {held} of {judged}; failed measurements: {len(failed)}; "
          f"{time.perf_counter() - t_start:.1f} s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": [asdict(r) for r in rows],
                       "skipped": dict(skipped), "failed": failed, "notes": ctx.notes,
                       "errors": ctx.errors},
                      f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
