#!/usr/bin/env python3
"""Side-by-side performance of pymmu against its baselines, in one process.

This script owns the ratio table of DESIGN.md section 9. Every figure is the median of
several repeats timed with ``time.perf_counter_ns`` (garbage collector off while a
repeat runs), and every target is judged on the ratio of two figures taken in this same
run: machines differ and runs drift by 15-25%, so no absolute time is ever a target.

Usage::

    python benchmarks/compare.py            # full run, about a minute on 2 cores
    python benchmarks/compare.py --quick    # small sizes, a few seconds (CI smoke run)
    python benchmarks/compare.py --json results.json
    python benchmarks/compare.py --only access,fork
    python benchmarks/compare.py --list     # the registered measurements

The script exits 0 whether or not a target holds (the last column says); it exits 1
only when a measurement could not run at all.

Measurements live in a registry: a function decorated with ``@measurement(name)``
takes the run's :class:`Context` and returns :class:`Row` objects. A measurement that
needs an optional package names it in ``requires=``; where the package is missing it
is listed as skipped instead of failing the run. Replay comparisons (libCacheSim, the
numpy gather, Unicorn) register themselves the same way.
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
import statistics
import sys
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


FULL = Sizes((64, 16384), 100_000, 3_000, (16, 1024, 16384, 262144), 16384, 8192, 101)
QUICK = Sizes((64,), 2_000, 200, (16, 128, 1024), 128, 64, 11)


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
        lines.append((r.path, fmt_ns(r.pymmu_ns), r.baseline, fmt_ns(r.baseline_ns),
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
        try:
            rows += m.func(ctx)
        except Exception:
            failed.append(name)
            print(f"measurement {name!r} failed:", file=sys.stderr)
            traceback.print_exc()
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
    held = sum(r.holds is True for r in rows)
    judged = sum(r.holds is not None for r in rows)
    print(f"targets held: {held} of {judged}; failed measurements: {len(failed)}; "
          f"{time.perf_counter() - t_start:.1f} s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": [asdict(r) for r in rows],
                       "skipped": dict(skipped), "failed": failed, "notes": ctx.notes},
                      f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
