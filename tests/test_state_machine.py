"""Differential tests: the Cython core against the pure-Python oracle.

``test_differential`` is a hypothesis ``RuleBasedStateMachine`` (the pattern of
pyroaring's ``test_state_machine.py``): it builds two machines with the same
parameters, applies every operation to both and compares after every step

* the return value, or the exception type and its ``.addr`` / ``.access`` /
  ``.pid`` (message text may differ);
* machine counters, free frames and swap slots, every frame's refcount,
  ``check()`` on both sides;
* for every pid ever created: state, ppid, counters, ``maps()``,
  ``page_table()``, rss / pss / uss, ``translate`` and ``pte`` of mapped pages.

Bytes are compared only in the read and fetch rules: reading through the API
faults pages in and moves counters, so the invariant uses introspection only.

Every operation is run from a line of Python source, and the failure report
prints those lines: a minimal failing example is a script that runs as it is,
given ``m = Machine(...)`` and ``P = {}``.

``test_fork_family`` needs no oracle: a fork family hammers a small machine
(frames far fewer than the working set, enough swap) and every byte read is
compared to a plain dict-of-bytearray model; then everything exits and the
machine must be back to its starting numbers.

Which two implementations are compared is ``PAIR`` (environment variable
``PYMMU_PAIR``, default ``core,reference``); ``PYMMU_PAIR=reference,reference``
tests the harness itself. ``PYMMU_SM_EXAMPLES`` and ``PYMMU_SM_STEPS`` set the
budget of ``test_differential`` whatever the profile. Run::

    pytest tests/test_state_machine.py                          # quick
    HYPOTHESIS_PROFILE=ci pytest tests/test_state_machine.py    # thorough (CI)
    HYPOTHESIS_PROFILE=long pytest tests/test_state_machine.py  # hours: docs/testing.md
"""
from __future__ import annotations

import os
import random
import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import pymmu
from pymmu import Image, Segment
from pymmu.traces import Trace

PAIR = tuple(os.environ.get("PYMMU_PAIR", "core,reference").split(","))
# Comparisons to leave out while a known divergence is being fixed: substrings of
# the invariant's labels, e.g. PYMMU_SM_SKIP=page_table_pages.
SKIP = tuple(x for x in os.environ.get("PYMMU_SM_SKIP", "").split(",") if x)
MAX_PIDS = 16                 # processes created per example (spawn + fork + vfork)
MMAP_MIN = 0x10000
QUICK = dict(max_examples=40, stateful_step_count=40)   # when no profile is loaded
CI = dict(max_examples=500, stateful_step_count=60)     # fallback if conftest lacks "ci"

# Exceptions the API raises on purpose. Anything else (AttributeError,
# IndexError, NotImplementedError, ...) is a bug even when both sides agree.
# (OverflowError: an m.run whose clock would pass int64, issue 16.)
EXPECTED = (pymmu.MMUError, ValueError, TypeError, KeyError, OverflowError)


# --------------------------------------------------------------------------- helpers

def blob(seed: int, n: int) -> bytes:
    """Deterministic test data: zeros, one repeated byte, or random bytes."""
    if n <= 0:
        return b""
    kind = seed % 4
    if kind == 0:
        return bytes(n)
    if kind == 1:
        return bytes([seed & 0xFF or 1]) * n
    return random.Random(seed).randbytes(n)


def implementation(name: str):
    """The Machine class called ``name`` ("core" or "reference"), or a reason it is missing."""
    if name == "core":
        try:
            pymmu.Machine(4)
        except NotImplementedError:
            return None, "pymmu.Machine is still a placeholder"
        return pymmu.Machine, None
    if name == "reference":
        try:
            from pymmu import reference
        except ImportError as e:
            return None, f"pymmu.reference is missing ({e})"
        return reference.Machine, None
    raise ValueError(f"PYMMU_PAIR names core or reference, not {name!r}")


def budget() -> dict:
    """``PYMMU_SM_EXAMPLES`` / ``PYMMU_SM_STEPS``, when set: examples and steps."""
    out = {}
    for var, key in (("PYMMU_SM_EXAMPLES", "max_examples"),
                     ("PYMMU_SM_STEPS", "stateful_step_count")):
        if os.environ.get(var):
            out[key] = int(os.environ[var])
    return out


def hyp_settings(**extra) -> settings:
    """Settings for this file: the loaded profile, a quick default, or our own "ci"."""
    base = dict(deadline=None, suppress_health_check=list(HealthCheck), **extra)
    wanted = os.environ.get("HYPOTHESIS_PROFILE")
    current = settings.get_current_profile_name()
    if wanted is None and current == "default":
        return settings(**{**QUICK, **base})
    if wanted == "ci" and current != "ci":   # conftest.py did not load it
        try:
            return settings(settings.get_profile("ci"), **base)
        except InvalidArgument:
            return settings(**{**CI, **base})
    return settings(**base)


def outcome(fn):
    """Run ``fn``; return ``(normalised outcome, raw value)``."""
    try:
        value = fn()
    except EXPECTED as e:
        if isinstance(e, pymmu.InvariantError):
            return ("raises", "InvariantError", str(e)), e
        key = ("raises", type(e).__name__)
        if isinstance(e, (pymmu.MemoryFault, pymmu.OutOfMemory)):
            key += (e.addr, e.access, e.pid)
        if isinstance(e, OverflowError) and str(e).startswith("m.run:"):
            key += (e.pid, e.job, str(e))           # (pymmu.run.time_overflow's, both)
        if getattr(e, "index", None) is not None:      # a replayed or run record
            key += (("index", e.index),)
        return key, e
    except Exception as e:  # noqa: BLE001 - reported as a crash
        return ("CRASH", type(e).__name__, str(e), traceback.format_exc()), e
    return normalise(value), value


class Table:
    """A page_table() result: equal when the dtypes and all rows are equal."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __eq__(self, other):
        return (isinstance(other, Table) and self.array.dtype == other.array.dtype
                and self.array.shape == other.array.shape
                and self.array.tobytes() == other.array.tobytes())

    def __repr__(self):
        return f"<{len(self.array)} rows>"


def normalise(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        return Table(value)
    if hasattr(value, "pid") and hasattr(value, "fork"):     # a Process
        return ("Process", value.pid)
    return value


def show(norm) -> str:
    """Short human form of a normalised outcome."""
    if isinstance(norm, bytes):
        if len(norm) <= 24:
            return repr(norm)
        return f"<{len(norm)} bytes {norm[:12].hex()}..{norm[-4:].hex()}>"
    if isinstance(norm, tuple) and norm and norm[0] == "raises":
        name, rest = norm[1], norm[2:]
        if len(rest) == 3:
            addr, access, pid = rest
            addr = hex(addr) if isinstance(addr, int) else addr
            return f"raises {name}(addr={addr}, access={access!r}, pid={pid})"
        if rest:
            return f"raises {name}: {rest[0]}"
        return f"raises {name}"
    if isinstance(norm, tuple) and norm and norm[0] == "CRASH":
        return f"CRASH {norm[1]}: {norm[2]}\n{norm[3]}"
    if isinstance(norm, tuple) and norm and norm[0] == "Process":
        return f"Process(pid={norm[1]})"
    if isinstance(norm, int) and not isinstance(norm, bool) and norm > 4096:
        return hex(norm)
    return repr(norm)


def explain(a, b) -> str:
    """Where two values differ, briefly."""
    if isinstance(a, bytes) and isinstance(b, bytes):
        if len(a) != len(b):
            return f"lengths {len(a)} vs {len(b)}"
        i = next(i for i in range(len(a)) if a[i] != b[i])
        return (f"first difference at byte offset {i:#x}: "
                f"{a[i:i + 8].hex()} vs {b[i:i + 8].hex()}")
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return ", ".join(f"{k}: {a.get(k, '<missing>')} vs {b.get(k, '<missing>')}"
                         for k in keys if a.get(k, "<missing>") != b.get(k, "<missing>"))
    if isinstance(a, Table) and isinstance(b, Table):
        if a.array.dtype != b.array.dtype:
            return f"dtypes {a.array.dtype} vs {b.array.dtype}"
        ra, rb = a.array.tolist(), b.array.tolist()
        names = a.array.dtype.names or ()
        diffs = [f"row {i}: " + ", ".join(
                     f"{n}={x[k]!r} vs {y[k]!r}" for k, n in enumerate(names) if x[k] != y[k])
                 for i, (x, y) in enumerate(zip(ra, rb)) if x != y]
        if len(ra) != len(rb):
            vs = [hex(r[0]) for r in ra], [hex(r[0]) for r in rb]
            diffs.insert(0, f"{len(ra)} vs {len(rb)} rows; vaddrs {vs[0]} vs {vs[1]}")
        return "; ".join(diffs[:6])
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"lengths {len(a)} vs {len(b)}: {a!r} vs {b!r}"
        return "; ".join(f"[{i}] {x!r} vs {y!r}" for i, (x, y) in enumerate(zip(a, b))
                         if x != y)
    return ""


def mapping_tuple(mp):
    return (mp.start, mp.end, mp.prot, mp.shared, mp.kind, mp.offset, mp.name, str(mp))


# --------------------------------------------------------------------------- strategies

WHO = st.integers(0, 63)                 # which pid: see DiffMachine.pick
OFFSET = st.one_of(st.just(0), st.integers(-16, 16), st.integers(0, 65535))
# Where an operation lands (see DiffMachine.addr): mode, selector, position, page
# delta, byte offset. "inside" picks a mapping of the process and a place in it,
# "recent" a recently written range, "edge" a mapping edge or a fixed address
# (MMAP_MIN, the top page, 2**va_bits, 0) plus a few pages either way.
TARGET = st.tuples(st.sampled_from(["inside", "inside", "recent", "edge", "edge"]),
                   st.integers(0, 63), st.integers(0, 2 ** 20), st.integers(-1, 2),
                   OFFSET)
# Trace records land inside mappings mostly, so that replays run long enough to
# fault pages in and evict them; the kinds favour loads and stores over fetches.
REPLAY_TARGET = st.tuples(st.sampled_from(["inside"] * 6 + ["recent", "edge"]),
                          st.integers(0, 63), st.integers(0, 2 ** 20), st.just(0), OFFSET)
REPLAY_KIND = st.sampled_from([1, 1, 2, 2, 3, 0])     # traces.LOAD, STORE, MODIFY, FETCH
LENGTH = st.one_of(st.integers(0, 16), st.integers(1, 3 * 65536))
# (n is taken modulo 3 pages, see DiffMachine.length)
SEED = st.integers(0, 2 ** 16)
WRAP = st.sampled_from(["{}", "bytearray({})", "memoryview({})",
                        "np.frombuffer({}, np.uint8)"])
PROT = st.sampled_from(["rw", "r", "rwx", "r-x", "", "x", "w", 3, 5, 0, "wr"])
STATUS = st.integers(-3, 300)

MACHINE = st.fixed_dictionaries({
    "frames": st.one_of(st.integers(4, 8), st.integers(4, 16), st.integers(4, 64)),
    "page_size": st.sampled_from([512, 4096]),
    "swap_slots": st.one_of(st.just(0), st.integers(1, 16), st.integers(16, 64)),
    # opt chooses only in a replay (elsewhere a full machine raises ValueError)
    "policy": st.sampled_from(["clock", "fifo", "lru", "random", "clock", "opt", "mru"]),
    "zero_page": st.booleans(),
    "tlb_entries": st.sampled_from([4, 0, 64]),
    "strict_vfork": st.booleans(),
    "va_bits": st.sampled_from([48, 32, 39]),
    "zero_pool": st.one_of(st.none(), st.integers(0, 6)),
    "seed": st.integers(0, 2 ** 32),
})

SEGMENTS = st.lists(st.tuples(
    st.integers(0, 3),              # whole pages of gap before the segment
    st.integers(0, 65535),          # byte offset (mod page size)
    st.integers(0, 3 * 1024),       # file bytes, in 1/1024 pages
    st.integers(0, 2 * 1024),       # bss bytes, in 1/1024 pages
    st.sampled_from(["r-x", "r", "rw", "rwx", "x", ""]),
    SEED,
), min_size=1, max_size=3)
WHERE = st.sampled_from(["low", "low", "low", "low", "top", "beyond", "zero"])
STACK = st.sampled_from([2, 3, 4, 0, 1])


# --------------------------------------------------------------------------- the machine

class DiffMachine(RuleBasedStateMachine):
    """Drive two implementations in lock step and compare them after every step."""

    impls: tuple = ()      # (MachineA, MachineB), set by the test
    names: tuple = ()

    @property
    def modules(self):
        return [impl.__module__.replace("pymmu.machine", "pymmu") for impl in self.impls]

    def __init__(self):
        super().__init__()
        self.sides = None      # [namespace of side 0, namespace of side 1]
        self.pids: list[int] = []
        self.log: list[str] = []
        self.recent: list[tuple[int, int]] = []   # (addr, n) of recent writes

    # -------------------------------------------------------------- running one step

    def fail(self, what: str, a=None, b=None, detail: str = ""):
        lines = [f"DIVERGENCE after {len(self.log)} operations: {what}"]
        if a is not None or b is not None:
            lines += [f"  {self.names[0]:>9}: {show(a)}", f"  {self.names[1]:>9}: {show(b)}"]
        if detail:
            lines.append(f"  {detail}")
        lines += ["", "Operations, as a script (run from the repository root):", "",
                  "    import sys; sys.path.insert(0, 'tests')",
                  "    import numpy as np, pymmu",
                  "    from pymmu import Image, Segment",
                  "    from pymmu.traces import Trace",
                  "    from test_state_machine import blob",
                  f"    from {self.modules[0]} import Machine   # or {self.modules[1]}"]
        lines += ["    " + line for line in self.log]
        lines += ["    m.check()", ""]
        raise AssertionError("\n".join(lines))

    def run(self, src: str, assign: bool = False):
        """Evaluate ``src`` on both sides, compare, log. Returns side 0's raw value."""
        code = compile(src, "<op>", "eval")
        results = [outcome(lambda ns=ns: eval(code, ns)) for ns in self.sides]
        (na, ra), (nb, rb) = results
        line = src
        if assign and isinstance(na, tuple) and na[:1] == ("Process",):
            line = f"P[{na[1]}] = {src}"
        self.log.append(f"{line:<60}  # -> {show(na) if na == nb else 'DIVERGES'}")
        for norm, raw, name in ((na, ra, self.names[0]), (nb, rb, self.names[1])):
            if isinstance(norm, tuple) and norm[:1] == ("CRASH",):
                self.fail(f"{src} crashed in {name}", na, nb)
        if na != nb:
            self.fail(src, na, nb, explain(na, nb))
        if assign and isinstance(na, tuple) and na[:1] == ("Process",):
            for ns, raw in zip(self.sides, (ra, rb)):
                ns["P"][raw.pid] = raw
            self.pids.append(na[1])
        return ra

    @property
    def P0(self):
        return self.sides[0]["P"]

    def live(self) -> int:
        """How many processes are running."""
        return sum(self.P0[pid].state == "running" for pid in self.pids)

    def pick(self, who: int) -> int:
        """A running pid most of the time; any pid ever made an eighth of the time."""
        live = [pid for pid in self.pids if self.P0[pid].state == "running"]
        if who % 8 == 7 or not live:
            return self.pids[(who // 8) % len(self.pids)]
        return live[who % len(live)]

    def anchors(self, pid: int) -> list[int]:
        """Interesting addresses: mapping edges first, then fixed ones."""
        out = []
        for mp in self.P0[pid].maps():
            out += [mp.start, mp.end]
        top = 1 << self.cfg["va_bits"]
        return out + [MMAP_MIN, top - self.page, top, 0]

    def addr(self, pid, target, aligned=False, edge=False):
        """An address for ``pid`` from a TARGET draw, and the end of the region it
        was picked in (None for an edge address). ``aligned``: a page start,
        misaligned by one byte when the offset draw is exactly 1. ``edge``: take
        an edge or fixed address whatever the mode."""
        mode, sel, pos, delta, offset = target
        maps = self.P0[pid].maps()
        end = None
        if edge:
            mode = "edge"
        if mode == "recent" and self.recent:
            start, n = self.recent[-1 - sel % len(self.recent)]
            addr, end = start + pos % n, start + n
        elif mode == "inside" and maps:
            mp = maps[sel % len(maps)]
            addr, end = mp.start + pos % (mp.end - mp.start), mp.end
        else:
            anchors = self.anchors(pid)
            addr = anchors[sel % len(anchors)] + delta * self.page
            if not aligned:
                addr += offset % self.page if offset >= 0 else offset
        if aligned:
            addr -= addr % self.page
            addr += 1 if offset == 1 else 0
        # Most accesses inside a region stay inside it; a quarter may run past its end.
        if end is not None and delta == 2:
            end = None
        return addr, end

    def length(self, raw: int, addr: int = 0, end: int | None = None) -> int:
        """1..3 pages of bytes from a LENGTH draw (0 stays 0), cut at ``end``."""
        n = 0 if raw == 0 else 1 + (raw - 1) % (3 * self.page)
        return n if end is None else max(min(n, end - addr), min(n, 1))

    # -------------------------------------------------------------- rules

    @initialize(cfg=MACHINE)
    def build(self, cfg):
        self.cfg = cfg
        self.page = cfg["page_size"]
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "frames")
        self.log.append(f"m = Machine({cfg['frames']}, {args}); P = {{}}")
        self.sides = []
        for impl in self.impls:
            ns = {"P": {}, "np": np, "blob": blob, "Image": Image, "Segment": Segment,
                  "pymmu": pymmu, "Trace": Trace}
            ns["m"] = impl(**cfg)
            # an event log open for the whole run, compared after every step
            ns["log"] = ns["m"].events(limit=256).__enter__()
            self.sides.append(ns)
        self.run("m.refcount(m.frames + 1)")
        self.run("m.spawn()", assign=True)

    @precondition(lambda self: len(self.pids) < MAX_PIDS and self.live() < 3)
    @rule()
    def spawn(self):
        self.run("m.spawn()", assign=True)

    @precondition(lambda self: self.live())
    @rule(who=WHO, pages=st.integers(0, 8), extra=st.sampled_from([0, 0, 0, -1, 1]),
          prot=PROT, shared=st.booleans(), fixed=st.booleans(), at=TARGET)
    def mmap(self, who, pages, extra, prot, shared, fixed, at):
        pid = self.pick(who)
        length = pages * self.page + extra
        where = hex(self.addr(pid, at, aligned=True, edge=True)[0]) if fixed else "None"
        self.run(f"P[{pid}].mmap({length:#x}, {prot!r}, addr={where}, shared={shared})")

    @precondition(lambda self: self.live())
    @rule(who=WHO, at=TARGET, pages=st.integers(0, 10),
          extra=st.sampled_from([0, 0, 0, -1, 1]))
    def munmap(self, who, at, pages, extra):
        pid = self.pick(who)
        addr, end = self.addr(pid, at, aligned=True)
        if end is not None:
            pages = min(pages, max(1, -(-(end - addr) // self.page)))
        self.run(f"P[{pid}].munmap({addr:#x}, {pages * self.page + extra:#x})")

    @precondition(lambda self: self.live())
    @rule(who=WHO, at=TARGET, pages=st.integers(0, 6),
          extra=st.sampled_from([0, 0, 0, -1, 1]), prot=PROT)
    def mprotect(self, who, at, pages, extra, prot):
        pid = self.pick(who)
        addr, end = self.addr(pid, at, aligned=True)
        if end is not None:
            pages = min(pages, max(1, -(-(end - addr) // self.page)))
        self.run(f"P[{pid}].mprotect({addr:#x}, {pages * self.page + extra:#x}, {prot!r})")

    def _read(self, who, at, n, kind):
        pid = self.pick(who)
        addr, end = self.addr(pid, at)
        self.run(f"P[{pid}].{kind}({addr:#x}, {self.length(n, addr, end):#x})")

    def _write(self, who, at, n, seed, wrap, addr=None, pid=None):
        if pid is None:
            pid = self.pick(who)
        if addr is None:
            addr, end = self.addr(pid, at)
            n = self.length(n, addr, end)
        data = wrap.format(f"blob({seed}, {n:#x})")
        out = self.run(f"P[{pid}].write({addr:#x}, {data})")
        if out is None and n:
            self.recent = (self.recent + [(addr, n)])[-16:]

    # Accesses are the point: two rules each, so they are drawn more often.
    read = precondition(lambda self: self.live())(rule(who=WHO, at=TARGET, n=LENGTH,
                kind=st.sampled_from(["read", "read", "fetch"]))(_read))
    read_more = precondition(lambda self: self.live())(
        rule(who=WHO, at=TARGET, n=LENGTH, kind=st.just("read"))(_read))
    write = precondition(lambda self: self.live())(
        rule(who=WHO, at=TARGET, n=LENGTH, seed=SEED, wrap=WRAP)(_write))
    write_more = precondition(lambda self: self.live())(
        rule(who=WHO, at=TARGET, n=LENGTH, seed=SEED, wrap=st.just("{}"))(_write))

    def _sweep_map(self, who, sel, seed, stride, kind):
        """Walk one mapping page by page (at most 12 accesses): memory pressure."""
        pid = self.pick(who)
        maps = self.P0[pid].maps()
        if not maps:
            return
        mp = maps[sel % len(maps)]
        self._sweep(pid, who, mp.start, mp.end, seed, stride, kind)

    sweep = precondition(lambda self: self.live())(rule(
        who=WHO, sel=st.integers(0, 63), seed=SEED, stride=st.sampled_from([1, 1, 2, 3]),
        kind=st.sampled_from(["write", "write", "read", "mixed"]))(_sweep_map))
    sweep_more = precondition(lambda self: self.live())(rule(
        who=WHO, sel=st.integers(0, 63), seed=SEED, stride=st.just(1),
        kind=st.sampled_from(["write", "mixed"]))(_sweep_map))

    @precondition(lambda self: self.live())
    @rule(who=WHO, extra=st.integers(-2, 4), shared=st.booleans(), seed=SEED,
          kind=st.sampled_from(["write", "write", "read", "mixed"]))
    def grow(self, who, extra, shared, seed, kind):
        """mmap about as many pages as there are frames, then sweep them."""
        pid = self.pick(who)
        pages = max(1, min(16, self.cfg["frames"] // 2 + extra))
        start = self.run(f"P[{pid}].mmap({pages * self.page:#x}, 'rw', shared={shared})")
        if isinstance(start, int):
            self._sweep(pid, who, start, start + pages * self.page, seed, 1, kind)

    @precondition(lambda self: len(self.pids) < MAX_PIDS and self.live())
    @rule(who=WHO, how=st.sampled_from(["fork", "fork", "vfork"]), sel=st.integers(0, 63),
          seed=SEED, then=st.sampled_from(["parent", "exit", "exec", "none"]))
    def family(self, who, how, sel, seed, then):
        """fork (or vfork), then the child and the parent sweep one mapping:
        COW copies and reuses, and, under pressure, shared swap slots and swap-cache hits."""
        pid = self.pick(who)
        maps = self.P0[pid].maps()
        child = self.run(f"P[{pid}].{how}()", assign=True)
        if not maps or not hasattr(child, "pid"):
            return
        mp = maps[sel % len(maps)]
        if how == "fork" and then in ("parent", "none"):
            # Interleaved, so that a page the child swaps in is still in the swap
            # cache when the parent touches it.
            rnd = random.Random(seed)
            for page in list(range(mp.start, mp.end, self.page))[:8]:
                for p, kind in ((child.pid, "mixed"), (pid, "read")):
                    self._sweep(p, who, page, page + self.page, rnd.randrange(2 ** 16), 1,
                                kind if then == "parent" else "read")
            return
        self._sweep(child.pid, who, mp.start, mp.end, seed, 1, "mixed")
        if then in ("exit", "exec"):
            arg = "Image([], stack_size=0x1000)" if then == "exec" else ""
            self.run(f"P[{child.pid}].{then}({arg})")
        self._sweep(pid, who, mp.start, mp.end, seed + 1, 1, "mixed")

    def _sweep(self, pid, who, start, end, seed, stride, kind):
        rnd = random.Random(seed)
        for page in list(range(start, end, stride * self.page))[:12]:
            off = rnd.randrange(self.page)
            addr = page + off
            # Mostly within the page, sometimes into the next one.
            n = rnd.randint(1, self.page - off if rnd.random() < 0.8 else self.page)
            if kind == "write" or kind == "mixed" and rnd.random() < 0.5:
                self._write(who, None, n, rnd.randrange(2 ** 16), "{}", addr=addr, pid=pid)
            else:
                self.run(f"P[{pid}].read({addr:#x}, {n:#x})")
            if self.P0[pid].state != "running":
                break

    @rule(who=WHO, at=TARGET, what=st.sampled_from(["introspect", "idle", "reset", "clear"]),
          n=st.one_of(st.none(), st.integers(0, 6)))
    def misc(self, who, at, what, n):
        """Introspection anywhere (unmapped, beyond va space, negative), idle,
        reset_stats, clearing a process's accessed bits (any state)."""
        if what == "clear":
            self.run(f"P[{self.pick(who)}].clear_accessed()")
        elif what == "introspect":
            pid = self.pick(who)
            addr = self.addr(pid, at)[0]
            self.run(f"(P[{pid}].translate({addr:#x}), P[{pid}].pte({addr:#x}))")
        elif what == "idle":
            self.run(f"m.idle({n})")
        else:
            self.run("m.reset_stats()")

    @precondition(lambda self: self.live())
    @rule(who=WHO, recs=st.lists(st.tuples(REPLAY_TARGET, REPLAY_KIND, st.integers(0, 24)),
                                 min_size=1, max_size=40),
          own=st.sampled_from([True, True, True, False]),
          split=st.sampled_from([0, 0, 1, 3, 7]))
    def replay(self, who, recs, own, split):
        """A short trace in a live process (the replay loop, its inline TLB and
        page-walk-cache paths, opt's sets), or in a fresh whole-space process;
        with ``split``, as two chunks (an iterable: the concatenation's results,
        and opt's refusal)."""
        pid = self.pick(who)
        addrs, kinds, sizes = [], [], []
        for at, kind, size in recs:
            addr = self.addr(pid, at)[0]
            if not own:
                addr %= 1 << self.cfg["va_bits"]
            addrs.append(addr % (1 << 64))
            kinds.append(kind)
            sizes.append(size)
        trace = f"Trace({addrs!r}, kind={kinds!r}, size={sizes!r})"
        if split:
            trace = f"(lambda t: iter([t[:{split}], t[{split}:]]))({trace})"
        self.run(f"m.replay({trace}, process=P[{pid}])" if own else f"m.replay({trace})")

    @rule(jobs=st.lists(st.tuples(WHO, st.sampled_from([True, False, False]),
                                  st.lists(st.tuples(REPLAY_TARGET, REPLAY_KIND,
                                                     st.integers(1, 24)),
                                           min_size=0, max_size=12),
                                  st.sampled_from([0, 0, 1, 3]), st.sampled_from([0, 7, 50])),
                        min_size=1, max_size=3),
          quantum=st.integers(1, 6),
          cost=st.lists(st.sampled_from([0, 1, 5, 10, 100]), min_size=9, max_size=9),
          window=st.sampled_from([0, 0, 1, 2, 3, 6, 2**62, 2**63 - 1]),
          huge=st.sampled_from([None] * 6 + list(range(10))))
    def run_jobs(self, jobs, quantum, cost, window, huge):
        """m.run (DESIGN.md section 12): up to three jobs, in live processes or
        fresh ones, interleaved in time under pressure, with I/O bursts, small
        round costs (many ties at one instant) and load control; the whole
        result (elapsed time, every job's row, counters) must agree, and the
        machines after it. With ``huge``, one cost (or, 9, the I/O bursts) is
        near 2**62: the clock may pass int64 (OverflowError), at the same
        point on both sides; windows past any run are the whole run."""
        used, specs = set(), []
        for who, own, recs, io_every, io_ns in jobs:
            pid = self.pick(who) if own else None
            if pid is not None and (pid in used or self.P0[pid].state != "running"):
                pid = None
            used.add(pid)
            addrs = []
            for at, _, _ in recs:
                addr = self.addr(pid, at)[0] if pid is not None else \
                    self.addr(self.pids[0], at)[0] % (1 << self.cfg["va_bits"])
                addrs.append(addr % (1 << 64))
            trace = (f"Trace({addrs!r}, kind={[r[1] for r in recs]!r}, "
                     f"size={[r[2] for r in recs]!r})")
            proc = f"P[{pid}]" if pid is not None else "None"
            if huge == 9 and io_ns:
                io_ns = 2**62 - io_ns
            specs.append(f"pymmu.Job({trace}, process={proc}, io_every={io_every}, "
                         f"io_ns={io_ns})")
        names = ("ref", "tlb_miss", "minor", "zero", "copy", "major", "disk_read",
                 "disk_write", "switch")
        if huge is not None and huge < 9:
            cost[huge] = 2**62 - cost[huge]
        cost_src = ", ".join(f"{n}={v}" for n, v in zip(names, cost))
        control = f"pymmu.WorkingSet({window})" if window else "None"
        self.run(f"m.run([{', '.join(specs)}], quantum={quantum}, "
                 f"cost=pymmu.Cost({cost_src}), load_control={control}).as_dict()")

    @rule(how=st.sampled_from(["deepcopy", "pickle"]))
    def snapshot(self, how):
        """Go on with a snapshot of the machine and its processes (the copy
        records events in a log of its own)."""
        import copy
        import pickle

        for ns in self.sides:
            ns["log"].__exit__(None, None, None)
            pair = (ns["m"], ns["P"])
            ns["m"], ns["P"] = (copy.deepcopy(pair) if how == "deepcopy"
                                else pickle.loads(pickle.dumps(pair)))
            ns["log"] = ns["m"].events(limit=256).__enter__()
        self.log.append(f"m, P = {how}((m, P))      # a snapshot goes on")

    @precondition(lambda self: len(self.pids) < MAX_PIDS and self.live())
    @rule(who=WHO, how=st.sampled_from(["fork", "fork", "vfork"]))
    def fork(self, who, how):
        pid = self.pick(who)
        self.run(f"P[{pid}].{how}()", assign=True)

    @precondition(lambda self: self.live())
    @rule(who=WHO, segments=SEGMENTS, where=WHERE, stack=STACK,
          stack_extra=st.sampled_from([0, 0, 1]))
    def exec(self, who, segments, where, stack, stack_extra):
        pid = self.pick(who)
        page, top = self.page, 1 << self.cfg["va_bits"]
        pos = {"low": 0x400000, "top": top - 3 * page, "beyond": top + page, "zero": 0}[where]
        segs, entry = [], None
        for gap, offset, data, bss, prot, seed in segments:
            vaddr = pos + gap * page + offset % page
            nfile = data * page // 1024
            memsz = max(1, nfile + bss * page // 1024)
            segs.append(f"Segment({vaddr:#x}, {prot!r}, blob({seed}, {nfile:#x}), "
                        f"memsz={memsz:#x})")
            pos = vaddr + memsz
            entry = vaddr if entry is None else entry
        src = (f"Image([{', '.join(segs)}], entry={entry:#x}, "
               f"stack_size={stack * page + stack_extra:#x})")
        self.run(f"P[{pid}].exec({src})")

    @precondition(lambda self: self.live())
    @rule(who=WHO, what=st.sampled_from(["wait", "exit", "wait"]), status=STATUS,
          child=st.one_of(st.none(), st.integers(0, 63)), as_obj=st.booleans())
    def exit_or_wait(self, who, what, status, child, as_obj):
        pid = self.pick(who)
        if what == "exit":
            self.run(f"P[{pid}].exit({status})")
            return
        if child is None:
            arg = ""
        else:
            # Prefer this process's own children, sometimes any pid at all.
            kids = [c for c in self.pids if self.P0[c].ppid == pid]
            pool = kids if kids and child % 4 != 3 else self.pids
            cpid = pool[child % len(pool)]
            arg = f"P[{cpid}]" if as_obj else str(cpid)
        self.run(f"P[{pid}].wait({arg})")

    # -------------------------------------------------------------- the invariant

    def snapshot(self, ns, tables, pages_of):
        """Everything observable without an access, as (label, thunk) pairs."""
        m, P = ns["m"], ns["P"]
        items = [
            ("m.stats", lambda: dict(m.stats)),
            ("m.frames_free", lambda: m.frames_free),
            ("m.swap_free", lambda: m.swap_free),
            ("m.page_size, m.frames, m.swap_slots",
             lambda: (m.page_size, m.frames, m.swap_slots)),
            ("refcounts", lambda: [m.refcount(pfn) for pfn in range(m.frames + 1)]),
            ("m.frame_table()", lambda: Table(m.frame_table())),
            ("m.clock_hand, m.references", lambda: (m.clock_hand, m.references)),
            ("m.processes()", lambda: [p.pid for p in m.processes()]),
            ("events (the latest 256)", lambda: Table(ns["log"].array)),
            ("event counts, dropped", lambda: (ns["log"].counts(), ns["log"].dropped)),
        ]
        if all(hasattr(s["m"], "page_table_pages") for s in self.sides):
            items.append(("m.page_table_pages", lambda: m.page_table_pages))
        for pid in self.pids:
            p = P[pid]
            items += [
                (f"P[{pid}].state, ppid", lambda p=p: (p.pid, p.state, p.ppid)),
                (f"m.process({pid})", lambda pid=pid: normalise(m.process(pid))),
                (f"P[{pid}].stats", lambda p=p: dict(p.stats)),
                (f"P[{pid}].maps()", lambda p=p: [mapping_tuple(x) for x in p.maps()]),
                (f"P[{pid}].page_table()", lambda t=tables[pid]: t),
                (f"P[{pid}].rss, pss, uss", lambda p=p: (p.rss, p.pss, p.uss)),
            ]
            for addr in pages_of[pid]:
                items.append((f"P[{pid}].translate/pte({addr:#x})",
                              lambda p=p, a=addr: (p.translate(a), p.pte(a))))
        return items

    def interesting_pages(self, tables):
        """Per pid: the first, last and one-past pages of each mapping, and a few
        page-table rows (all rows are compared through page_table() already)."""
        out = {}
        for pid in self.pids:
            addrs = set()
            for ns, table in zip(self.sides, tables):
                p = ns["P"][pid]
                try:
                    rows = table[pid]
                    if isinstance(rows, Table):
                        addrs.update(int(a) for a in rows.array["vaddr"][:: 7][:8])
                    for mp in p.maps():
                        addrs.update((mp.start, mp.end - self.page, mp.end))
                except Exception:  # noqa: BLE001 - the snapshot reports it
                    pass
            # An odd offset inside the page checks translate's low bits.
            out[pid] = sorted(a + (pid * 8 + 3) % self.page for a in addrs)
        return out

    @invariant()
    def agree(self):
        if self.sides is None:
            return
        tables = [{pid: outcome(ns["P"][pid].page_table)[0] for pid in self.pids}
                  for ns in self.sides]
        pages_of = self.interesting_pages(tables)
        snaps = [self.snapshot(ns, t, pages_of) for ns, t in zip(self.sides, tables)]
        for (label, fa), (_, fb) in zip(*snaps):
            if SKIP and any(k in label for k in SKIP):
                continue
            na, nb = outcome(fa)[0], outcome(fb)[0]
            if na != nb or (isinstance(na, tuple) and na[:1] == ("CRASH",)):
                self.fail(f"state differs: {label}", na, nb, explain(na, nb))
        for ns, name in zip(self.sides, self.names):
            norm, _ = outcome(ns["m"].check)
            if norm is not None:
                self.fail(f"m.check() fails in {name}", *(
                    (norm, None) if ns is self.sides[0] else (None, norm)))


# --------------------------------------------------------------------------- tests

def _pair():
    impls, names = [], []
    for name in PAIR:
        impl, why = implementation(name)
        if impl is None:
            pytest.skip(why)
        impls.append(impl)
        names.append(name)
    return tuple(impls), tuple(names)


def test_differential():
    impls, names = _pair()

    class Diff(DiffMachine):
        pass

    Diff.impls, Diff.names = impls, names
    run_state_machine_as_test(Diff, settings=hyp_settings(**budget()))


def run_family(Machine, *, policy, page_size, nproc, seed, zero_page=True,
               npages=24, shared_pages=4, frames=6, ops=3000):
    """A fork family of ``nproc`` processes against a dict-of-bytearray model."""
    rnd = random.Random(seed)
    ps = page_size
    swap = nproc * npages + shared_pages + 16
    m = Machine(frames, page_size=ps, swap_slots=swap, policy=policy, seed=seed,
                zero_page=zero_page, tlb_entries=4)
    root = m.spawn()
    priv = root.mmap(npages * ps)
    shr = root.mmap(shared_pages * ps, shared=True)
    procs = [root]
    model = {root.pid: bytearray(npages * ps)}
    shared = bytearray(shared_pages * ps)
    trail = []      # last operations, for the failure message

    def one_op(i):
        p = rnd.choice(procs)
        if rnd.random() < 0.15:
            base, size, mem = shr, shared_pages * ps, shared
        else:
            base, size, mem = priv, npages * ps, model[p.pid]
        off = rnd.randrange(size)
        n = min(rnd.randint(1, 2 * ps + 1), size - off)
        if rnd.random() < 0.5:
            data = bytes(n) if rnd.random() < 0.1 else rnd.randbytes(n)
            trail.append(f"{i}: pid {p.pid} write({base + off:#x}, {n})")
            p.write(base + off, data)
            mem[off:off + n] = data
        else:
            trail.append(f"{i}: pid {p.pid} read({base + off:#x}, {n})")
            got = p.read(base + off, n)
            want = bytes(mem[off:off + n])
            if got != want:
                j = next(k for k in range(n) if got[k] != want[k])
                raise AssertionError(
                    f"pid {p.pid} read({base + off:#x}, {n}) differs from the model at "
                    f"byte {j} (address {base + off + j:#x}): got {got[j:j + 8].hex()}, "
                    f"expected {want[j:j + 8].hex()}\nlast operations:\n  "
                    + "\n  ".join(trail[-12:]))
        del trail[:-50]

    i = 0
    while len(procs) < nproc:
        for _ in range(150):
            one_op(i)
            i += 1
        parent = rnd.choice(procs)
        child = parent.fork()
        trail.append(f"{i}: pid {parent.pid} fork() -> {child.pid}")
        procs.append(child)
        model[child.pid] = bytearray(model[parent.pid])
    for _ in range(ops):
        one_op(i)
        i += 1
        if i % 1000 == 0:
            m.check()
    stats = dict(m.stats)
    assert stats["swap_outs"] > 0 and stats["swap_ins"] > 0, stats
    assert stats["cow_copies"] > 0, stats
    m.check()
    # Children before parents: every parent is still running to wait for its child.
    by_pid = {p.pid: p for p in procs}
    for p in sorted(procs, key=lambda p: p.pid, reverse=True):
        status = p.pid & 0x7F
        p.exit(status)
        if p.ppid:
            assert p.state == "zombie"
            assert by_pid[p.ppid].wait(p.pid) == status
        assert p.state == "exited"
    m.check()
    assert m.frames_free == m.frames
    assert m.swap_free == m.swap_slots
    return stats


@pytest.mark.parametrize("impl_name", list(dict.fromkeys(PAIR)))
@pytest.mark.parametrize("policy, page_size, nproc, zero_page, seed", [
    ("clock", 512, 4, True, 1),
    ("fifo", 512, 5, False, 2),
    ("lru", 4096, 6, True, 3),
    ("random", 512, 6, True, 4),
])
def test_fork_family(impl_name, policy, page_size, nproc, zero_page, seed):
    Machine, why = implementation(impl_name)
    if Machine is None:
        pytest.skip(why)
    run_family(Machine, policy=policy, page_size=page_size, nproc=nproc, seed=seed,
               zero_page=zero_page)
