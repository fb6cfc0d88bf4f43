"""Replacement policies written in Python (DESIGN.md section 11, pymmu/policy.py).

``Machine(frames, policy=SomePolicy())``: ``victim(view)`` when no frame is free,
before anything changes; then the eviction, ``on_free(victim)``, the allocation,
``on_map(pfn)`` once per allocation of a frame to a page, and ``on_access(pfn)``
on every page reference (only with ``wants_access``). Every test runs on both
implementations (the ``Machine`` fixture); expected values are worked out from the
rules, or are the built-in policy's own results on the same machine.
"""
from __future__ import annotations

import collections
import copy
import random

import numpy as np
import pytest

import pymmu
from pymmu import pte as P
from pymmu.policy import Clock, Fifo, Lru, Policy

PS = 4096


# --- policies written with the API -------------------------------------------------


class Lowest(Policy):
    """The lowest evictable pfn."""

    def victim(self, view):
        return next((pfn for pfn in range(view.frames) if view.evictable(pfn)), None)


class Recorder(Lowest):
    """Logs every hook call (victim as ("victim", None))."""

    wants_access = True

    def __init__(self):
        self.log = []

    def victim(self, view):
        self.log.append(("victim", None))
        return super().victim(view)

    def on_map(self, pfn):
        self.log.append(("on_map", pfn))

    def on_free(self, pfn):
        self.log.append(("on_free", pfn))

    def on_access(self, pfn):
        self.log.append(("on_access", pfn))

    def take(self):
        log, self.log = self.log, []
        return log


class Quiet(Recorder):
    """A Recorder that does not want on_access."""

    wants_access = False


def faults(m):
    s = m.stats
    return s["minor_faults"] + s["major_faults"]


def counters(m):
    """The counters but the TLB's (the lookup happens before the fault)."""
    return {k: v for k, v in m.stats.items() if not k.startswith("tlb_")}


def state(m, procs):
    """Everything an operation that "changes nothing" must leave as it was,
    replacement bookkeeping (accessed bits) aside, counters apart (reading the
    bytes here counts reads: see ``counters``). Only present pages are read, so
    reading faults nothing in."""
    free = m.frames_free, m.swap_free
    ft = m.frame_table()
    table = [tuple(row[name] for name in ft.dtype.names if name != "accessed") for row in ft]
    pages = []
    for p in procs:
        for addr in p.page_table()["vaddr"].tolist():
            present = p.translate(addr) is not None
            pages.append((p.pid, addr, p.pte(addr) & ~P.ACCESSED,
                          p.read(addr, PS) if present else None))
    return free, table, pages


# --- equivalence with the built-ins ----------------------------------------------------

SAMPLES = pymmu.traces.samples()
TRACES = {}


def sample_trace(name):
    if name not in TRACES:
        TRACES[name] = pymmu.traces.read_lackey(pymmu.traces.sample(name))[:20_000]
    return TRACES[name]


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("frames", [2, 3, 5, 8, 11])
@pytest.mark.parametrize("make, builtin", [(Clock, "clock"), (Fifo, "fifo"), (Lru, "lru")],
                         ids=["clock", "fifo", "lru"])
def test_python_policy_gives_the_builtin_counters_on_the_samples(Machine, name, frames,
                                                                 make, builtin):
    trace = sample_trace(name)
    runs = []
    for policy in (make(), builtin):
        m = Machine(frames, swap_slots=2000, zero_page=False, policy=policy)
        runs.append(m.replay(trace))
        m.check()
        assert m.frames_free == frames and m.swap_free == 2000
    assert runs[0] == runs[1]
    assert runs[0]["evictions"] > 0 or frames >= 11


def _program(m, rng, steps):
    """A random program over fork, COW, shared mappings, munmap and exit; returns
    a transcript of what it saw (bytes read, exceptions)."""
    out = []
    procs = [m.spawn()]
    areas = {}
    for _ in range(steps):
        p = rng.choice(procs)
        op = rng.random()
        try:
            if p.pid not in areas or op < 0.05:
                shared = rng.random() < 0.3
                a = p.mmap(6 * PS, shared=shared)
                areas.setdefault(p.pid, []).append(a)
                out.append(("mmap", p.pid, a))
            elif op < 0.45:
                a = rng.choice(areas[p.pid]) + rng.randrange(6) * PS
                p.write(a + rng.randrange(PS - 8), bytes([rng.randrange(256)]) * 8)
                out.append(("write", p.pid))
            elif op < 0.8:
                a = rng.choice(areas[p.pid]) + rng.randrange(6) * PS
                out.append(("read", p.pid, p.read(a, 8)))
            elif op < 0.88 and len(procs) < 5:
                c = p.fork()
                areas[c.pid] = list(areas[p.pid])
                procs.append(c)
                out.append(("fork", p.pid, c.pid))
            elif op < 0.94:
                a = rng.choice(areas[p.pid]) + rng.randrange(6) * PS
                p.munmap(a, PS)
                out.append(("munmap", p.pid, a))
            elif len(procs) > 1:
                p.exit()
                procs.remove(p)
                out.append(("exit", p.pid))
        except pymmu.MMUError as e:
            out.append((type(e).__name__, p.pid))
        out.append(m.stats)
    for p in procs:
        p.exit()
    out.append(m.stats)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("make, builtin", [(Clock, "clock"), (Fifo, "fifo"), (Lru, "lru")],
                         ids=["clock", "fifo", "lru"])
def test_python_policy_matches_the_builtin_on_random_programs(Machine, seed, make, builtin):
    """Forks, COW, shared memory, the swap cache, munmap and exit: a Python clock,
    FIFO or LRU does exactly what the built-in does, step by step."""
    runs = []
    for policy in (make(), builtin):
        m = Machine(4, swap_slots=12 + seed, zero_page=seed % 2 == 0, policy=policy)
        runs.append(_program(m, random.Random(seed), 150))
        m.check()
        assert m.frames_free == m.frames and m.swap_free == m.swap_slots
    assert runs[0] == runs[1]


# --- order of the hooks ----------------------------------------------------------------


def test_hook_order_victim_evict_on_free_allocate_on_map_on_access(Machine):
    pol = Recorder()
    m = Machine(2, swap_slots=4, zero_page=False, policy=pol)
    assert m.policy is pol
    assert m.clock_hand is None
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a")                    # free frames: no victim
    p.write(a + PS, b"b")
    assert pol.take() == [("on_map", 0), ("on_access", 0), ("on_map", 1), ("on_access", 1)]
    with m.events() as log:
        p.write(a + 2 * PS, b"c")       # no frame free: victim first
    assert pol.take() == [("victim", None), ("on_free", 0), ("on_map", 0), ("on_access", 0)]
    assert [pymmu.events.KINDS[k] for k in log.array["kind"]] == [
        "evictions", "swap_outs", "zero_fills"]
    p.read(a + 2 * PS, 1)               # a hit: on_access only
    assert pol.take() == [("on_access", 0)]
    assert p.read(a, 1) == b"a"         # swap-in: an allocation
    assert pol.take() == [("victim", None), ("on_free", 0), ("on_map", 0), ("on_access", 0)]
    m.check()
    p.exit()
    assert sorted(pol.take()) == [("on_free", 0), ("on_free", 1)]


def test_victim_only_when_no_frame_is_free(Machine):
    pol = Quiet()
    m = Machine(3, swap_slots=8, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(3):
        p.write(a + i * PS, b"x")
    p.munmap(a + PS, PS)
    assert pol.take() == [("on_map", 0), ("on_map", 1), ("on_map", 2), ("on_free", 1)]
    p.write(a + 5 * PS, b"y")           # frame 1 is free again: no victim
    assert pol.take() == [("on_map", 1)]
    p.write(a + 6 * PS, b"z")
    assert pol.take() == [("victim", None), ("on_free", 0), ("on_map", 0)]


def test_on_map_once_per_allocation(Machine):
    """A zero fill, a COW copy, a swap-in, a file read and a shared page's first
    touch are allocations; a COW reuse, a swap-cache hit and a shared page mapped
    again from its resident frame are not."""
    pol = Quiet()
    m = Machine(8, swap_slots=8, policy=pol)
    p = m.spawn()
    a = p.mmap(2 * PS)
    s = p.mmap(PS, shared=True)
    p.write(a, b"a")                                    # zero fill
    assert pol.take() == [("on_map", 0)]
    p.read(a + PS, 1)                                   # the zero page: no frame
    assert pol.take() == []
    p.write(a + PS, b"b")                               # zero-page PTE written
    assert pol.take() == [("on_map", 1)]
    p.write(s, b"s")                                    # shared object, first touch
    assert pol.take() == [("on_map", 2)]
    c = p.fork()
    assert c.read(s, 1) == b"s"                         # resident object page
    c.write(s, b"t")
    assert pol.take() == []
    c.write(a, b"c")                                    # COW copy
    assert pol.take() == [("on_map", 3)]
    c.exit()
    assert pol.take() == [("on_free", 3)]
    p.wait(c)
    p.write(a + PS, b"B")                               # sole owner again
    assert m.stats["cow_reuses"] == 1
    assert pol.take() == []
    img = pymmu.Image([pymmu.Segment(0x400000, "r-x", data=b"\x90" * 100)])
    q = m.spawn()
    q.exec(img)
    assert q.fetch(0x400000, 1) == b"\x90"              # file read (a dirty frame)
    assert pol.take() == [("on_map", 3)]
    q.exit()
    assert pol.take() == [("on_free", 3)]
    m.check()


def test_swap_in_and_swap_cache_hit(Machine):
    pol = Quiet()
    m = Machine(2, swap_slots=8, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a")
    c = p.fork()                                       # frame 0 shared by both
    p.write(a + PS, b"b")
    p.write(a + 2 * PS, b"c")                          # evicts frame 0 (shared page)
    pol.take()
    assert p.translate(a) is None and c.translate(a) is None
    assert p.read(a, 1) == b"a"                        # swap-in, into the swap cache
    swap_in = pol.take()
    assert swap_in[0] == ("victim", None) and swap_in[-1][0] == "on_map"
    assert c.read(a, 1) == b"a"                        # swap-cache hit: no allocation
    assert pol.take() == []
    assert m.stats["swap_cache_hits"] == 1
    m.check()


# --- victim's answers --------------------------------------------------------------


class Answer(Policy):
    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

    def victim(self, view):
        self.calls += 1
        return self.answer(view) if callable(self.answer) else self.answer


def raises_and_changes_nothing(m, p, error, op):
    """``op()`` raises ``error``, and the counters, memory, mappings and
    invariants are as before (DESIGN.md section 4: a failed operation changes
    nothing). Returns the exception info."""
    before = state(m, [p])
    stats = counters(m)
    with pytest.raises(error) as info:
        op()
    assert counters(m) == stats
    m.check()
    assert state(m, [p]) == before
    return info


def _full(Machine, policy, **kw):
    m = Machine(2, swap_slots=4, zero_page=False, policy=policy, **kw)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a" * 8)
    p.write(a + PS, b"b" * 8)
    return m, p, a


def test_victim_none_raises_out_of_memory_and_changes_nothing(Machine):
    pol = Answer(None)
    m, p, a = _full(Machine, pol)
    with m.events() as log:
        raises_and_changes_nothing(m, p, pymmu.OutOfMemory, lambda: p.write(a + 2 * PS, b"c"))
    assert pol.calls == 1
    assert log.counts()["oom"] == 1
    assert p.pte(a + 2 * PS) == 0
    pol.answer = 0                                    # now it gives a frame
    p.write(a + 2 * PS, b"c")
    assert p.read(a + 2 * PS, 1) == b"c" and p.read(a, 8) == b"a" * 8
    m.check()


def test_victim_none_in_replay_raises_with_index(Machine):
    m = Machine(2, swap_slots=4, zero_page=False, policy=Answer(None))
    t = pymmu.traces.Trace(addr=[0x1000, 0x2000, 0x1000, 0x3000], kind="S")
    p = m.spawn()
    p.mmap(16 * PS, addr=0)
    with pytest.raises(pymmu.OutOfMemory) as e:
        m.replay(t, process=p)
    assert e.value.index == 3
    assert m.stats["writes"] == 3
    m.check()


@pytest.mark.parametrize("answer", [-1, 2, 3, 10**30, "0", 0.0, 1.5, True, False, [0], object()],
                         ids=repr)
def test_victim_bad_pfn_raises_valueerror_and_changes_nothing(Machine, answer):
    m, p, a = _full(Machine, Answer(answer))
    raises_and_changes_nothing(m, p, ValueError, lambda: p.write(a + 2 * PS, b"c"))


def test_victim_may_be_a_numpy_integer(Machine):
    m, p, a = _full(Machine, Answer(np.int64(1)))
    p.write(a + 2 * PS, b"c")
    assert p.translate(a + PS) is None
    assert p.translate(a + 2 * PS) // PS == 1
    m.check()


def test_victim_not_evictable_raises_valueerror(Machine):
    # no swap: an anonymous page cannot be evicted
    m = Machine(2, zero_page=False, policy=Answer(0))
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a")
    p.write(a + PS, b"b")
    raises_and_changes_nothing(m, p, ValueError, lambda: p.write(a + 2 * PS, b"c"))


def test_victim_pinned_by_the_access_in_progress_raises_valueerror(Machine):
    # A write over pages 1 and 2: page 1's frame (1) is held while page 2 faults.
    m, p, a = _full(Machine, Answer(1))
    raises_and_changes_nothing(m, p, ValueError, lambda: p.write(a + 2 * PS - 4, b"x" * 8))
    evictable = []
    pol = Answer(lambda view: evictable.extend(view.evictable(f) for f in range(2)) or 0)
    m, p, a = _full(Machine, pol)
    p.write(a + 2 * PS - 4, b"x" * 8)
    assert evictable == [True, False]
    assert p.read(a + 2 * PS - 4, 8) == b"x" * 8
    m.check()


class Boom(Exception):
    pass


def test_exception_in_victim_propagates_and_changes_nothing(Machine):
    def boom(view):
        raise Boom("victim")

    m, p, a = _full(Machine, Answer(boom))
    with m.events() as log:
        raises_and_changes_nothing(m, p, Boom, lambda: p.write(a + 2 * PS, b"c"))
    assert log.counts()["oom"] == 0


# --- victim's answer converted (issue 16, item 1) ---------------------------------------
#
# An answer is None or a frame number by operator.index's rule (an int, a numpy
# integer, any object with __index__), but a bool. A type without __index__ (float,
# str, numpy.bool_) or a number out of range is no evictable frame: ValueError. What
# the answer's __index__ raises, or a non-int it returns (TypeError), propagates as
# it is, like an exception raised by victim() itself, and changes nothing.


class IndexRaises:
    """A victim whose conversion to a pfn raises ``error``."""

    def __init__(self, error):
        self.error = error

    def __index__(self):
        raise self.error

    def __repr__(self):
        return "IndexRaises()"


class IndexReturnsStr:
    def __index__(self):
        return "0"


class ReprRaises:
    """Not a pfn (no __index__), and its repr (for ValueError's message) raises."""

    def __repr__(self):
        raise Boom("repr")


def _boom_class(answer):
    return answer.error.__class__ if isinstance(answer, IndexRaises) else TypeError


# (an array of one element has __index__, which refuses: TypeError)
CONVERSION_RAISES = [IndexRaises(Boom("index")), IndexRaises(TypeError("index")),
                     IndexRaises(OverflowError("index")), IndexReturnsStr(), np.array([0])]
NOT_A_FRAME = [2**70, -2**70, 2**63, np.uint64(2**63), np.int64(-1), 1.0, np.float64(0),
               np.bool_(False), ReprRaises()]


def _spanning(Machine, policy, swap=True):
    """Two frames, both used (pages 0 and 1 of a 4-page area)."""
    m = Machine(2, swap_slots=4 if swap else 0, zero_page=False, policy=policy)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a" * 8)
    p.write(a + PS, b"b" * 8)
    return m, p, a


OPS = {
    "read": lambda p, a: p.read(a + 2 * PS, 4),
    "write": lambda p, a: p.write(a + 2 * PS, b"c"),
    # page 1's frame is held while page 2 faults: the write must not half-happen
    "write spanning two pages": lambda p, a: p.write(a + 2 * PS - 4, b"x" * 8),
}


@pytest.mark.parametrize("op", ["read", "write", "write spanning two pages"])
@pytest.mark.parametrize("answer", CONVERSION_RAISES, ids=lambda a: type(a).__name__ + (
    "-" + type(a.error).__name__ if isinstance(a, IndexRaises) else ""))
@pytest.mark.parametrize("swap", [True, False], ids=["swap", "noswap"])
def test_victim_whose_conversion_raises_propagates_and_changes_nothing(Machine, op, answer,
                                                                       swap):
    pol = Answer(answer)
    m, p, a = _spanning(Machine, pol, swap)
    raises_and_changes_nothing(m, p, _boom_class(answer), lambda: OPS[op](p, a))
    assert pol.calls == 1
    # nothing was evicted unchecked: both pages are still there, and the next
    # access (the victim now a good one) works
    assert p.read(a, 8) == b"a" * 8 and p.read(a + PS, 8) == b"b" * 8
    pol.answer = 0 if swap else None
    if swap:
        OPS[op](p, a)
        if op == "write spanning two pages":
            assert p.read(a + 2 * PS - 4, 8) == b"x" * 8
        assert p.read(a + PS, 8) == b"b" * 8
    else:
        with pytest.raises(pymmu.OutOfMemory):
            OPS[op](p, a)
    m.check()


@pytest.mark.parametrize("answer", NOT_A_FRAME,
                         ids=lambda a: "ReprRaises" if isinstance(a, ReprRaises) else repr(a))
def test_victim_that_is_no_frame_number_raises_valueerror(Machine, answer):
    m, p, a = _spanning(Machine, Answer(answer))
    error = Boom if isinstance(answer, ReprRaises) else ValueError
    raises_and_changes_nothing(m, p, error, lambda: p.write(a + 2 * PS - 4, b"x" * 8))


@pytest.mark.parametrize("answer", [np.int8(0), np.uint64(0), np.intp(0)], ids=repr)
def test_victim_may_be_any_numpy_integer_type(Machine, answer):
    m, p, a = _spanning(Machine, Answer(answer))
    p.write(a + 2 * PS, b"c")
    assert p.translate(a) is None and p.translate(a + 2 * PS) == 0
    m.check()


def test_view_argument_whose_conversion_raises_propagates(Machine):
    def look(view):
        view.evictable(IndexRaises(Boom("view")))
        return 0

    m, p, a = _spanning(Machine, Answer(look))
    raises_and_changes_nothing(m, p, Boom, lambda: p.write(a + 2 * PS - 4, b"x" * 8))


@pytest.mark.parametrize("answer", CONVERSION_RAISES[:2] + [2**70, 1.5],
                         ids=["index-Boom", "index-TypeError", "2**70", "1.5"])
def test_replay_victim_conversion_raises_like_a_raising_victim(Machine, answer):
    """In a replay: the record whose fault asked for the victim raises with its
    index, and the machine is exactly where a victim() that raised leaves it."""
    def raising(view):
        raise _boom_class(answer)("victim") if not isinstance(answer, (int, float)) \
            else ValueError("victim")

    t = pymmu.traces.Trace(addr=[0x0, 0x1000, 0x0, 0x1ffc, 0x3000], kind="S", size=8)
    runs = []
    for pol in (Answer(answer), Answer(raising)):
        m = Machine(2, swap_slots=4, zero_page=False, policy=pol)
        p = m.spawn()
        p.mmap(8 * PS, addr=0)
        with pytest.raises(Exception) as e:
            m.replay(t, process=p)
        m.check()
        runs.append((type(e.value), e.value.index, counters(m), state(m, [p])))
    assert runs[0] == runs[1]
    assert runs[0][1] == 3
    assert runs[0][0] is (ValueError if isinstance(answer, (int, float)) else _boom_class(answer))


CRASH = """
import pymmu
PS = 4096
class IndexRaises:
    def __index__(self):
        raise RuntimeError("index")
class Bad(pymmu.Policy):
    def victim(self, view):
        return IndexRaises()
swap = {swap}
m = pymmu.Machine(2, swap_slots=4 if swap else 0, zero_page=False, policy=Bad())
p = m.spawn()
a = p.mmap(4 * PS)
p.write(a, b"a" * 8)
p.write(a + PS, b"b" * 8)
try:
    p.write(a + 2 * PS - 4, b"x" * 8)
except RuntimeError as e:
    assert str(e) == "index"
else:
    raise SystemExit("no exception")
assert p.read(a, 8) == b"a" * 8 and p.read(a + PS, 8) == b"b" * 8
m.check()
print("ok")
"""


@pytest.mark.parametrize("swap", [False, True], ids=["noswap", "swap"])
def test_victim_conversion_raising_does_not_crash_in_a_child_process(swap):
    """The issue's reproduction, in a child (it used to segfault with no swap,
    and with swap put page 1's bytes in page 2): it must print ok and nothing
    else (no "Exception ignored")."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pymmu.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", CRASH.format(swap=swap)], capture_output=True,
                       text=True, env=env, cwd="/", timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


def test_policy_without_victim_raises_not_implemented(Machine):
    class NoVictim(Policy):
        pass

    m, p, a = _full(Machine, NoVictim())
    raises_and_changes_nothing(m, p, NotImplementedError, lambda: p.write(a + 2 * PS, b"c"))


# --- the view --------------------------------------------------------------------------


def test_view_reports_and_clears_the_bits(Machine):
    seen = {}

    def look(view):
        seen["frames"] = view.frames
        seen["accessed"] = [view.accessed(f) for f in range(view.frames)]
        seen["dirty"] = [view.dirty(f) for f in range(view.frames)]
        seen["evictable"] = [view.evictable(f) for f in range(view.frames)]
        seen["clear"] = [view.clear_accessed(f) for f in range(view.frames)]
        seen["again"] = [view.clear_accessed(f) for f in range(view.frames)]
        seen["after"] = [view.accessed(f) for f in range(view.frames)]
        for bad in (-1, view.frames, "0", 1.5):
            with pytest.raises(ValueError):
                view.accessed(bad)
        seen["view"] = view
        return 1

    m = Machine(3, swap_slots=4, zero_page=False, policy=Answer(look))
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a")                   # frame 0: accessed, dirty
    p.read(a + PS, 1)                  # frame 1: accessed, clean
    c = p.fork()                       # the child's PTEs start with A clear
    p.write(a + 2 * PS, b"c")          # frame 2
    p.clear_accessed()
    p.read(a + PS, 1)                  # only frame 1 referenced (through p)
    p.write(a + 3 * PS, b"d")          # victim 1
    assert seen["frames"] == 3
    assert seen["accessed"] == [False, True, False]
    assert seen["dirty"] == [True, False, True]
    assert seen["evictable"] == [True, True, True]
    assert seen["clear"] == [False, True, False]
    assert seen["again"] == [False, False, False]
    assert seen["after"] == [False, False, False]
    assert c.translate(a + PS) is None
    with pytest.raises(RuntimeError):  # a view is valid only inside victim()
        seen["view"].accessed(0)
    m.check()


def test_view_clear_accessed_drops_tlb_entries(Machine):
    pol = Answer(lambda view: view.clear_accessed(0) and None)
    m, p, a = _full(Machine, pol, tlb_entries=64)
    p.read(a, 1)
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + 2 * PS, b"c")
    assert not p.pte(a) & P.ACCESSED
    hits = m.stats["tlb_hits"]
    p.read(a, 1)                       # the entry was dropped: a miss, A set again
    assert m.stats["tlb_hits"] == hits
    assert p.pte(a) & P.ACCESSED
    m.check()


# --- later hooks that raise ------------------------------------------------------------


class Raises(Lowest):
    """Raises Boom from the named hooks, numbering the calls."""

    wants_access = True

    def __init__(self, *hooks):
        self.hooks = set(hooks)
        self.calls = []

    def _call(self, name, pfn):
        self.calls.append((name, pfn))
        if name in self.hooks:
            raise Boom(f"{name} {len(self.calls)}")

    def on_map(self, pfn):
        self._call("on_map", pfn)

    def on_free(self, pfn):
        self._call("on_free", pfn)

    def on_access(self, pfn):
        self._call("on_access", pfn)


def test_exception_in_on_map_propagates_after_the_write_completes(Machine):
    pol = Raises("on_map", "on_access")
    m = Machine(4, swap_slots=4, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    with pytest.raises(Boom, match="on_map 1"):        # the first exception
        p.write(a + PS - 2, b"wxyz")                    # two pages
    # every hook was still called, and the write is done
    assert pol.calls == [("on_map", 0), ("on_access", 0), ("on_map", 1), ("on_access", 1)]
    pol.hooks.clear()
    assert p.read(a + PS - 2, 4) == b"wxyz"
    assert m.stats["writes"] == 1
    m.check()


def test_exception_in_on_access_on_a_read_returns_nothing_but_reads(Machine):
    pol = Raises("on_access")
    m = Machine(4, swap_slots=4, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(PS)
    with pytest.raises(Boom):
        p.read(a, 1)
    assert m.stats["reads"] == 1
    assert p.translate(a) is not None
    m.check()


def test_exception_in_on_free_during_eviction(Machine):
    pol = Raises("on_free")
    m = Machine(2, swap_slots=4, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a")
    p.write(a + PS, b"b")
    with pytest.raises(Boom):
        p.write(a + 2 * PS, b"c")
    pol.hooks.clear()
    assert p.read(a + 2 * PS, 1) == b"c"
    assert m.stats["evictions"] == 1
    assert p.read(a, 1) == b"a"
    m.check()


def test_the_operations_own_exception_wins(Machine):
    """A write whose second page cannot get a frame raises OutOfMemory, even
    though on_map raised for its first page."""
    class Policy_(Raises):
        def victim(self, view):
            return None

    pol = Policy_("on_map")
    m = Machine(1, swap_slots=4, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(2 * PS)
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + PS - 2, b"wxyz")
    m.check()
    pol.hooks.clear()
    p.read(a, 1)                                        # nothing pending
    m.check()


def test_exception_in_on_free_on_munmap_and_exit(Machine):
    pol = Raises("on_free")
    m = Machine(4, swap_slots=4, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(3 * PS)
    for i in range(3):
        p.write(a + i * PS, b"x")
    with pytest.raises(Boom, match="on_free"):
        p.munmap(a, 2 * PS)
    assert p.translate(a) is None and m.frames_free == 3
    m.check()
    with pytest.raises(Boom):
        p.exit()
    assert p.state == "exited"
    assert m.frames_free == 4
    m.check()


def test_exception_in_a_hook_stops_replay_after_its_record(Machine):
    pol = Raises()
    m = Machine(2, swap_slots=8, zero_page=False, policy=pol)
    p = m.spawn()
    p.mmap(16 * PS, addr=0)
    t = pymmu.traces.Trace(addr=[0x1000, 0x2000, 0x1000, 0x3000, 0x4000, 0x5000], kind="S")
    pol.hooks.add("on_free")                            # first on_free: record 3
    with pytest.raises(Boom) as e:
        m.replay(t, process=p)
    assert e.value.index == 3
    assert m.stats["writes"] == 4                       # records 0..3 are done
    assert p.translate(0x3000) is not None and p.translate(0x4000) is None
    m.check()


# --- hooks may not call the machine ------------------------------------------------


class Meddler(Lowest):
    """Calls ``self.poke(m, p)`` from every hook and records what it raised."""

    wants_access = True

    def __init__(self, poke):
        self.poke = poke
        self.seen = collections.Counter()
        self.m = self.p = None

    def _try(self, hook):
        if self.m is None:
            return
        try:
            self.poke(self.m, self.p)
        except RuntimeError:
            self.seen[hook, "RuntimeError"] += 1
        except Exception as e:  # noqa: BLE001 (recorded, then the test fails)
            self.seen[hook, type(e).__name__] += 1
        else:
            self.seen[hook, "no error"] += 1

    def victim(self, view):
        self._try("victim")
        return super().victim(view)

    def on_map(self, pfn):
        self._try("on_map")

    def on_free(self, pfn):
        self._try("on_free")

    def on_access(self, pfn):
        self._try("on_access")


POKES = {
    "spawn": lambda m, p: m.spawn(),
    "read": lambda m, p: p.read(0x10000, 1),
    "write": lambda m, p: p.write(0x10000, b"x"),
    "fetch": lambda m, p: p.fetch(0x10000, 1),
    "mmap": lambda m, p: p.mmap(PS),
    "munmap": lambda m, p: p.munmap(0x10000, PS),
    "fork": lambda m, p: p.fork(),
    "exit": lambda m, p: p.exit(),
    "clear_accessed": lambda m, p: p.clear_accessed(),
    "translate": lambda m, p: p.translate(0x10000),
    "pte": lambda m, p: p.pte(0x10000),
    "page_table": lambda m, p: p.page_table(),
    "maps": lambda m, p: p.maps(),
    "replay": lambda m, p: m.replay(pymmu.traces.Trace(addr=[0x10000], kind="L"), process=p),
    "frame_table": lambda m, p: m.frame_table(),
    "check": lambda m, p: m.check(),
    "refcount": lambda m, p: m.refcount(0),
    "idle": lambda m, p: m.idle(),
    "processes": lambda m, p: m.processes(),
    "process": lambda m, p: m.process(p.pid),
    "events": lambda m, p: m.events(),
    "reset_stats": lambda m, p: m.reset_stats(),
    "stats": lambda m, p: m.stats,
    "frames_free": lambda m, p: m.frames_free,
    "process_stats": lambda m, p: p.stats,
    "rss": lambda m, p: p.rss,
    "deepcopy": lambda m, p: copy.deepcopy(m),
}


@pytest.mark.parametrize("poke", POKES, ids=list(POKES))
def test_hook_calling_the_machine_gets_runtimeerror(Machine, poke):
    pol = Meddler(POKES[poke])
    m = Machine(2, swap_slots=8, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    assert a == 0x10000
    pol.m, pol.p = m, p
    for i in range(4):
        p.write(a + i * PS, bytes([i + 1]))
    p.munmap(a + 3 * PS, PS)
    hooks = {hook for hook, _ in pol.seen}
    assert hooks == {"victim", "on_map", "on_free", "on_access"}
    assert {what for _, what in pol.seen} == {"RuntimeError"}, pol.seen
    pol.m = None
    assert [p.read(a + i * PS, 1) for i in range(3)] == [b"\x01", b"\x02", b"\x03"]
    assert p.state == "running"
    m.check()


def test_constant_attributes_are_readable_in_hooks(Machine):
    got = []
    pol = Meddler(lambda m, p: got.append((m.frames, m.page_size, m.swap_slots, p.pid)))
    m = Machine(2, swap_slots=8, zero_page=False, policy=pol)
    p = m.spawn()
    pol.m, pol.p = m, p
    p.write(p.mmap(PS), b"x")
    assert got and set(got) == {(2, PS, 8, p.pid)}


# --- on_free, wants_access -------------------------------------------------------------


def test_on_free_for_every_frame_munmap_and_exit_free(Machine):
    pol = Quiet()
    m = Machine(8, swap_slots=8, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    s = p.mmap(2 * PS, shared=True)
    for i in range(4):
        p.write(a + i * PS, b"x")
    p.write(s, b"s")
    p.write(s + PS, b"t")
    c = p.fork()
    c.write(a, b"c")                                    # a COW copy: frame 6
    pol.take()
    p.munmap(a, 2 * PS)                                 # frame 1 is still c's
    assert pol.take() == [("on_free", 0)]
    p.munmap(s, 2 * PS)                                 # c still maps the object
    assert pol.take() == []
    c.exit()
    freed = pol.take()
    assert sorted(freed) == [("on_free", 1), ("on_free", 4), ("on_free", 5),
                             ("on_free", 6)]
    p.wait(c)
    p.exit()
    assert sorted(pol.take()) == [("on_free", 2), ("on_free", 3)]
    assert m.frames_free == 8
    m.check()


def test_on_free_when_exec_drops_the_old_space(Machine):
    pol = Quiet()
    m = Machine(4, policy=pol)
    p = m.spawn()
    p.write(p.mmap(PS), b"x")
    pol.take()
    p.exec(pymmu.Image([pymmu.Segment(0x400000, "r-x", data=b"\x90")]))
    assert pol.take() == [("on_free", 0)]


def test_on_access_only_when_wanted(Machine):
    pol = Quiet()
    m = Machine(4, swap_slots=4, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x")
    p.read(a, 1)
    assert pol.take() == [("on_map", 0)]


def test_on_access_every_page_reference_but_the_zero_page(Machine):
    pol = Recorder()
    m = Machine(4, swap_slots=4, policy=pol)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x")
    pol.take()
    p.read(a, 1)
    p.read(a, 1)
    assert pol.take() == [("on_access", 0), ("on_access", 0)]   # hits too
    p.read(a + PS - 1, 2)                               # two pages; the 2nd: zero page
    assert pol.take() == [("on_access", 0)]
    assert m.stats["zero_page_maps"] == 1
    p.write(a + PS - 1, b"yz")                          # zero page written: a frame
    assert pol.take() == [("on_access", 0), ("on_map", 1), ("on_access", 1)]
    t = pymmu.traces.Trace(addr=[a, a + PS - 2, a + 2 * PS], kind=["L", "S", "L"],
                           size=[1, 4, 1])
    m.replay(t, process=p)
    assert pol.take() == [("on_access", 0), ("on_access", 0), ("on_access", 1)]
    m.check()


# --- reprs, snapshots ------------------------------------------------------------------


def test_policy_attribute_and_repr(Machine):
    pol = Clock()
    m = Machine(4, policy=pol)
    assert m.policy is pol
    assert m.clock_hand is None
    repr(m)
    assert repr(pol) == "Clock()"


def test_deepcopy_takes_the_policy_along(Machine):
    pol = Fifo()
    m = Machine(3, swap_slots=16, zero_page=False, policy=pol)
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(5):
        p.write(a + i * PS, bytes([i]))
    m2 = copy.deepcopy(m)
    assert m2.policy is not pol and list(m2.policy.order) == list(pol.order)
    p2 = m2.process(p.pid)
    for q in (p, p2):
        for i in (0, 6, 2, 7, 1):
            q.read(a + i * PS, 1)
    assert m.stats == m2.stats
    assert list(m2.policy.order) == list(pol.order)
    m2.check()


def test_hook_exception_in_a_replay_without_process_still_exits(Machine):
    pol = Raises("on_free")
    m = Machine(2, swap_slots=8, zero_page=False, policy=pol)
    t = pymmu.traces.Trace(addr=[0x1000 * i for i in range(1, 9)], kind="S")
    with pytest.raises(Boom, match="on_free 5") as e:  # 3rd record: the 1st eviction
        m.replay(t)
    assert e.value.index == 2
    assert m.stats["writes"] == 3
    assert m.frames_free == 2 and m.swap_free == 8   # the process exited all the same
    assert m.processes() == []
    m.check()
