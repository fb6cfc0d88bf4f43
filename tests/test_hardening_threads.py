"""Issue 11, items 1 and 2: calls from another thread during a replay, and crafted traces.

* Item 1: the replay loop runs without the GIL. Every public call on the machine or
  one of its processes, made from another thread while it runs, is either refused
  with ``RuntimeError`` (every call that could change something) or safe (it
  returns correct data and leaves no trace): no crash, no PTE installed in an
  unrelated process, no page reading another process's bytes, ``check()`` passes.
* Item 2: a ``Trace`` crafted through ``__setstate__``/``pickle.loads``, a subclass
  that overrides its columns (or ``next_use``), or a binary file edited by hand is
  refused with ``TypeError``, ``ValueError`` or ``TraceError``, never replayed as
  garbage, never a crash.

Fast: each threaded test runs one replay of a few seconds at most.
"""
from __future__ import annotations

import copy
import copyreg
import pickle
import threading

import numpy as np
import pytest

import pymmu
from pymmu import Image, Segment
from pymmu.traces import LOAD, STORE, Trace, TraceError

PS = 4096
REGION = 4096               # pages the long replay runs over
RECORDS = 3_000_000


# --------------------------------------------------------------------------- item 1

def pattern(i: int, n: int = PS) -> bytes:
    return bytes([(i * 37 + 11) & 0xFF or 1]) * n


def long_trace(base: int, records: int = RECORDS, seed: int = 0) -> Trace:
    """Loads and stores all over ``REGION`` pages at ``base``: far more pages than
    frames, so most records fault, evict and swap."""
    rng = np.random.default_rng(seed)
    pages = rng.integers(0, REGION, records, dtype=np.uint64)
    offs = rng.integers(0, PS - 8, records, dtype=np.uint64)
    kinds = rng.choice(np.array([LOAD, STORE], np.uint8), records)
    return Trace(np.uint64(base) + pages * np.uint64(PS) + offs, kind=kinds, size=8)


class Replay(threading.Thread):
    """``m.replay(*args, **kw)`` in a thread; ``.result`` or ``.error`` after join."""

    def __init__(self, m, *args, **kw):
        super().__init__(daemon=True)
        self.m, self.args, self.kw = m, args, kw
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.m.replay(*self.args, **self.kw)
        except BaseException as e:      # noqa: BLE001 - reported by the test
            self.error = e

    def start_and_wait_busy(self):
        self.start()
        while not self.m._core.busy and self.is_alive():
            pass
        return self.m._core.busy


def world():
    """A machine under pressure and its processes:

    * ``p`` replays; ``pz``, a mapping of p no record touches;
    * ``q`` holds 8 written pages (the witness of read-only calls), and has a
      zombie child ``z``;
    * ``r``, the target of calls that would change something.
    """
    m = pymmu.Machine(64, page_size=PS, swap_slots=REGION + 256, zero_page=False,
                      tlb_entries=64)
    p = m.spawn()
    base = p.mmap(REGION * PS)
    pz = p.mmap(4 * PS)
    q = m.spawn()
    qa = q.mmap(8 * PS, "rwx")
    for i in range(8):
        q.write(qa + i * PS, pattern(i))
    z = q.fork()
    z.exit(7)
    r = m.spawn()
    ra = r.mmap(4 * PS, "rwx")
    r.write(ra, b"r")
    return m, p, base, pz, q, qa, z, r, ra


def calls(m, p, base, pz, q, qa, z, r, ra):
    """(name, call, changes_something) for every public call: read-only ones on
    p and q, the others on r (or refused on p, q and the machine)."""
    image = Image([Segment(0x400000, "r-x", b"\x90" * 64)], stack_size=PS)
    small = Trace([ra, ra + 1], kind="LS")
    ro = [
        ("q.translate", lambda: q.translate(qa)),
        ("p.translate", lambda: p.translate(base + 5 * PS)),
        ("q.pte", lambda: q.pte(qa + PS)),
        ("p.pte", lambda: p.pte(base)),
        ("q.page_table", q.page_table),
        ("p.page_table", p.page_table),
        ("q.rss/pss/uss", lambda: (q.rss, q.pss, q.uss)),
        ("p.rss/pss/uss", lambda: (p.rss, p.pss, p.uss)),
        ("m.refcount", lambda: [m.refcount(pfn) for pfn in (0, 17, m.frames)]),
        ("q.maps", q.maps),
        ("p.maps", p.maps),
        ("m.stats", lambda: m.stats),
        ("p.stats", lambda: p.stats),
        ("q.stats", lambda: q.stats),
        ("m.check", m.check),
        ("m.frame_table", m.frame_table),
        ("m.processes", m.processes),
        ("m.process", lambda: m.process(q.pid)),
        ("m.clock_hand", lambda: m.clock_hand),
        ("m.references", lambda: m.references),
        ("m.frames_free", lambda: m.frames_free),
        ("m.swap_free", lambda: m.swap_free),
        ("m.page_table_pages", lambda: m.page_table_pages),
        ("states", lambda: (p.state, q.state, z.state, r.state, p.pid, q.pid)),
        ("repr", lambda: (repr(m), repr(p), repr(q))),
        ("show(q)", lambda: pymmu.show(q)),
        ("show(m)", lambda: pymmu.show(m)),
        ("m.page_size/frames/swap_slots", lambda: (m.page_size, m.frames, m.swap_slots)),
    ]
    mut = [
        ("m.idle", m.idle),
        ("m.reset_stats", m.reset_stats),
        ("m.spawn", m.spawn),
        ("m.replay", lambda: m.replay(small)),
        ("m.replay(process=r)", lambda: m.replay(small, process=r)),
        ("m.events", lambda: m.events().__enter__()),
        ("pickle.dumps(m)", lambda: pickle.dumps(m)),
        ("deepcopy(m)", lambda: copy.deepcopy(m)),
        ("deepcopy(q)", lambda: copy.deepcopy(q)),
        ("q.read", lambda: q.read(qa, 16)),
        ("q.fetch", lambda: q.fetch(qa, 16)),
        ("p.read", lambda: p.read(base, 16)),
        ("p.write", lambda: p.write(base, b"\0")),     # zeros: p must read zeros after
        ("r.write", lambda: r.write(ra, b"x")),
        ("r.write(numpy)", lambda: r.write(ra, np.ones(8, np.uint8))),
        ("r.read", lambda: r.read(ra, 8)),
        ("r.fetch", lambda: r.fetch(ra, 8)),
        ("r.mmap", lambda: r.mmap(PS)),
        ("r.mmap(shared)", lambda: r.mmap(PS, shared=True)),
        ("r.munmap", lambda: r.munmap(ra + 3 * PS, PS)),
        ("r.mprotect", lambda: r.mprotect(ra, PS, "r")),
        ("r.clear_accessed", r.clear_accessed),
        ("r.fork", r.fork),
        ("r.vfork", r.vfork),
        ("r.exec", lambda: r.exec(image)),
        ("r.exit", lambda: r.exit(1)),
        ("q.wait", lambda: q.wait(z)),
        ("q.wait()", q.wait),
        ("p.fork", p.fork),
        ("p.mmap", lambda: p.mmap(PS)),
        ("p.munmap", lambda: p.munmap(pz + 3 * PS, PS)),
    ]
    return [(n, f, False) for n, f in ro] + [(n, f, True) for n, f in mut]


def reads_zeros(p, base) -> bool:
    """Every byte of p's REGION reads as zero (page by page: a read pins the
    pages it covers, and there are fewer frames than pages)."""
    zero = bytes(PS)
    return all(p.read(base + i * PS, PS) == zero for i in range(REGION))


def hammer(m, worker, table):
    """Call everything in ``table`` round-robin while ``worker`` replays.

    Returns (refused, answered, problems): per call name, how often it was
    refused with RuntimeError while the replay surely ran (busy before and after
    the call), how often it answered then; problems lists what went wrong."""
    refused, answered, problems = {}, {}, []
    core = m._core
    while worker.is_alive():
        for name, call, changes in table:
            before = core.busy
            try:
                call()
            except RuntimeError as e:
                if "busy" not in str(e):
                    problems.append(f"{name}: RuntimeError without 'busy': {e}")
                if before and core.busy:
                    refused[name] = refused.get(name, 0) + 1
                continue
            except Exception as e:  # noqa: BLE001
                # outside the replay, r may have exited, z been reaped, and so on
                if not isinstance(e, (pymmu.MMUError, ValueError, KeyError)) or (
                        before and core.busy):
                    problems.append(f"{name}: {type(e).__name__}: {e}")
                continue
            if before and core.busy:
                answered[name] = answered.get(name, 0) + 1
                if changes:
                    problems.append(f"{name} ran during the replay instead of being refused")
    return refused, answered, problems


def test_every_call_during_a_replay_is_refused_or_safe():
    m, p, base, pz, q, qa, z, r, ra = world()
    stats_p = p.stats
    q_pages = set(q.page_table()["vaddr"].tolist())
    q_maps = [str(x) for x in q.maps()]
    table = calls(m, p, base, pz, q, qa, z, r, ra)
    worker = Replay(m, long_trace(base), process=p)
    if not worker.start_and_wait_busy():
        pytest.skip("the replay ended before any call could overlap it")
    refused, answered, problems = hammer(m, worker, table)
    worker.join()
    assert worker.error is None, repr(worker.error)
    assert not problems, "\n".join(dict.fromkeys(problems))
    assert refused or answered, "no call overlapped the replay"
    m.check()
    # nothing leaked into q: no PTE of its own added, its bytes intact
    assert set(q.page_table()["vaddr"].tolist()) <= q_pages
    assert [str(x) for x in q.maps()] == q_maps
    for i in range(8):
        assert q.read(qa + i * PS, PS) == pattern(i), f"q's page {i}"
    # p never wrote a byte (a replay's STORE marks pages dirty, writes no data):
    # everything it reads is zeros, never another process's bytes
    assert p.read(pz, 3 * PS) == bytes(3 * PS)
    assert reads_zeros(p, base), "p reads bytes it never wrote"
    m.check()
    # (p.read and p.write may have run after the replay, before the thread ended)
    assert RECORDS <= sum(p.stats[k] - stats_p[k] for k in ("reads", "writes")) < RECORDS + 10**4


def test_read_only_calls_on_other_processes_leave_the_replay_alone():
    """The issue's reproductions: translate/pte/page_table of an unrelated
    process, in a tight loop during the replay, must not steer the replay's
    page walks into that process (its page-walk cache and TLB are the machine's)."""
    m, p, base, pz, q, qa, z, r, ra = world()
    q_pages = set(q.page_table()["vaddr"].tolist())
    worker = Replay(m, long_trace(base, seed=1), process=p)
    if not worker.start_and_wait_busy():
        pytest.skip("the replay ended before any call could overlap it")
    while worker.is_alive():
        for call in (lambda: q.translate(qa + 3 * PS), lambda: q.pte(qa),
                     q.page_table, lambda: q.rss, lambda: m.refcount(3),
                     lambda: r.translate(ra), r.page_table):
            try:
                call()
            except RuntimeError:
                pass
    worker.join()
    assert worker.error is None, repr(worker.error)
    m.check()
    assert set(q.page_table()["vaddr"].tolist()) <= q_pages
    for i in range(8):
        assert q.read(qa + i * PS, PS) == pattern(i)
    assert reads_zeros(p, base)


@pytest.mark.parametrize("limit", [None, 1000])
def test_an_event_log_read_or_closed_during_a_replay(limit):
    """An events() block opened before the replay: reading it (array, counts,
    len, dropped) or closing it from another thread while the replay records
    into it is refused or safe; after the replay its counts equal the counters."""
    m = pymmu.Machine(32, page_size=PS, swap_slots=REGION + 64, zero_page=False)
    p = m.spawn()
    base = p.mmap(REGION * PS)
    log = m.events(limit=limit)
    log.__enter__()
    before = m.stats
    worker = Replay(m, long_trace(base, records=600_000, seed=2), process=p)
    if not worker.start_and_wait_busy():
        log.__exit__(None, None, None)
        pytest.skip("the replay ended before any call could overlap it")
    core, closed, problems = m._core, False, []
    while worker.is_alive():
        for name, call in (("array", lambda: log.array), ("counts", log.counts),
                           ("len", lambda: len(log)), ("dropped", lambda: log.dropped),
                           ("repr", lambda: repr(log))):
            try:
                call()
            except RuntimeError:
                pass
            except Exception as e:  # noqa: BLE001
                problems.append(f"log.{name}: {type(e).__name__}: {e}")
        if not closed:
            was = core.busy
            try:
                log.__exit__(None, None, None)
            except RuntimeError:
                pass
            else:
                closed = True
                if was and core.busy:
                    problems.append("the events block closed during the replay")
    worker.join()
    assert worker.error is None, repr(worker.error)
    assert not problems, "\n".join(dict.fromkeys(problems))
    if not closed:
        log.__exit__(None, None, None)
    m.check()
    after = m.stats
    counts = log.counts()
    for kind, n in counts.items():
        if kind in after:
            assert n == after[kind] - before[kind], kind


def test_a_second_replay_and_chunked_replays_are_refused():
    """A replay from the main thread during one in another is refused before
    anything happens; chunks of a streamed replay in the other thread too."""
    m, p, base, pz, q, qa, z, r, ra = world()
    stats_p, stats_r = p.stats, r.stats
    trace = long_trace(base, seed=3)
    chunks = [trace[i:i + 500_000] for i in range(0, len(trace), 500_000)]
    worker = Replay(m, iter(chunks), process=p)
    if not worker.start_and_wait_busy():
        pytest.skip("the replay ended before any call could overlap it")
    refused = 0
    while worker.is_alive():
        try:
            m.replay(Trace([ra] * 100, kind="S"), process=r)
        except RuntimeError:
            refused += 1
    worker.join()
    assert worker.error is None, repr(worker.error)
    m.check()
    # between chunks the machine is free: a replay of r may run there, whole
    assert (r.stats["writes"] - stats_r["writes"]) % 100 == 0
    assert sum(p.stats[k] - stats_p[k] for k in ("reads", "writes")) == RECORDS


# --------------------------------------------------------------------------- item 2

REJECT = (TypeError, ValueError, TraceError)


def replaying(policy="clock", frames=8):
    m = pymmu.Machine(frames, page_size=PS, swap_slots=64, policy=policy, zero_page=False)
    p = m.spawn()
    base = p.mmap(32 * PS)
    return m, p, base


def crafted_pickle(state) -> bytes:
    """The pickle of a Trace whose state is ``state`` (what a hostile file holds)."""

    class Crafted:
        def __reduce__(self):
            return copyreg._reconstructor, (Trace, object, None), state

    return pickle.dumps(Crafted(), protocol=pickle.HIGHEST_PROTOCOL)


def good_columns(n=10, base=0x10000):
    return (np.arange(n, dtype=np.uint64) * np.uint64(PS) + np.uint64(base),
            np.full(n, LOAD, np.uint8), np.full(n, 8, np.uint32))


def bad_states():
    a, k, s = good_columns()
    k255, k200, s0 = k.copy(), k.copy(), s.copy()
    k255[:] = 255
    k200[4] = 200
    s0[3] = 0
    return {
        "kind 255": (a, k255, s),
        "kind 200": (a, k200, s),
        "kind 4": (a, np.full(10, 4, np.uint8), s),
        "size 0": (a, k, s0),
        "addr longer": (np.concatenate([a, a]), k, s),
        "kind shorter": (a, k[:3], s),
        "size empty": (a, k, s[:0]),
        "addr float64": (a.astype(np.float64), k, s),
        "addr int64 negative": (a.astype(np.int64) - 2 ** 20, k, s),
        "kind int64 huge": (a, k.astype(np.int64) + 2 ** 40, s),
        "size uint64 huge": (a, k, s.astype(np.uint64) + np.uint64(2 ** 40)),
        "addr object": (np.array([1, "x"] * 5, dtype=object), k, s),
        "addr bool": (a.astype(bool), k, s),
        "addr 2-D": (a.reshape(2, 5), k, s),
        "addr 0-d": (np.array(a[0]), k, s),
        "list columns": (a.tolist(), k.tolist(), s.tolist()),
        "record past 2**64": (np.full(10, 2 ** 64 - 4, np.uint64), k, s),
        "state of 2": (a, k),
        "state of 4": (a, k, s, s),
        "state None": None,
        "state dict": {"_addr": a, "_kind": k255, "_size": s},
        "slots state": (None, {"_addr": a, "_kind": k255, "_size": s}),
    }


@pytest.mark.parametrize("how", ["__setstate__", "pickle.loads"])
@pytest.mark.parametrize("case", sorted(bad_states()))
def test_a_crafted_trace_state_is_refused(case, how):
    state = bad_states()[case]
    with pytest.raises(REJECT):
        if how == "__setstate__":
            t = Trace.__new__(Trace)
            t.__setstate__(state)
        else:
            t = pickle.loads(crafted_pickle(state))
        # should it have been accepted, it must at least replay safely
        m, p, base = replaying()
        m.replay(t, process=p)
        m.check()
        pytest.fail(f"{case}: accepted and replayed: {t!r}")


@pytest.mark.parametrize("how", ["__setstate__", "pickle.loads"])
def test_a_good_state_still_unpickles(how):
    state = good_columns()
    t = Trace.__new__(Trace)
    if how == "__setstate__":
        t.__setstate__(state)
    else:
        t = pickle.loads(crafted_pickle(state))
    assert [c.tolist() for c in (t.addr, t.kind, t.size)] == [c.tolist() for c in state]
    assert not t.addr.flags.writeable
    m, p, base = replaying()
    assert m.replay(t, process=p)["reads"] == 10
    m.check()


def subclass(addr=None, kind=None, size=None, next_use=None):
    """A Trace subclass whose properties return these columns instead of its own."""
    ns = {}
    for name, value in (("addr", addr), ("kind", kind), ("size", size)):
        if value is not None:
            ns[name] = property(lambda self, v=value: v)
    if next_use is not None:
        ns["next_use"] = lambda self, page_size, v=next_use: v
    return type("Crafted", (Trace,), ns)


def bad_subclasses():
    a, k, s = good_columns(base=0x10000)
    k255, k200, s0 = k.copy(), k.copy(), s.copy()
    k255[:] = 255
    k200[4] = 200
    s0[3] = 0
    wr = k.copy()
    wr.flags.writeable = True
    return {
        # bad records: TraceError with .index, the records before applied
        "kind 255": (dict(kind=k255), TraceError, 0),
        "kind 200": (dict(kind=k200), TraceError, 4),
        "size 0": (dict(size=s0), TraceError, 3),
        # bad columns: nothing replayed
        "addr longer": (dict(addr=np.concatenate([a, a])), REJECT, None),
        "kind shorter": (dict(kind=k[:3]), REJECT, None),
        "size empty": (dict(size=s[:0]), REJECT, None),
        "addr float64": (dict(addr=a.astype(np.float64)), REJECT, None),
        "addr int64": (dict(addr=a.astype(np.int64)), REJECT, None),
        "kind int64": (dict(kind=k.astype(np.int64) + 300), REJECT, None),
        "size uint64": (dict(size=s.astype(np.uint64)), REJECT, None),
        "addr list": (dict(addr=a.tolist()), REJECT, None),
        "kind None-like": (dict(kind=np.array([], np.uint8)), REJECT, None),
        "addr 2-D": (dict(addr=a.reshape(2, 5)), REJECT, None),
        "kind object": (dict(kind=k.astype(object)), REJECT, None),
    }


@pytest.mark.parametrize("policy", ["clock", "opt", "lru"])
@pytest.mark.parametrize("case", sorted(bad_subclasses()))
def test_a_subclass_overriding_columns_is_refused(case, policy):
    overrides, expected, index = bad_subclasses()[case]
    a, k, s = good_columns(base=0x10000)
    t = subclass(**overrides)(a, k, s)
    m, p, base = replaying(policy)
    assert base == 0x10000
    with pytest.raises(expected) as e:
        m.replay(t, process=p)
    if index is not None:
        assert e.value.index == index
        assert p.stats["reads"] == index
    m.check()
    # the machine goes on
    m.replay(Trace(good_columns()[0]), process=p)
    m.check()


@pytest.mark.parametrize("policy", ["clock", "opt"])
def test_a_subclass_with_strided_or_writable_columns_replays_its_columns(policy):
    """Columns that are right but not a Trace's own storage (a strided view, a
    writable array) are copied, then replayed as they are."""
    a, k, s = good_columns(n=16, base=0x10000)
    wk = np.array([LOAD, STORE] * 8, np.uint8)                # writable
    t = subclass(addr=np.repeat(a, 2)[::2], kind=wk)(a, k, s)
    m, p, base = replaying(policy, frames=4)
    d = m.replay(t, process=p)
    assert (d["reads"], d["writes"]) == (8, 8)
    m.check()


@pytest.mark.parametrize("policy", ["clock", "opt"])
def test_a_subclass_with_longer_consistent_columns_replays_safely(policy):
    """Three overridden columns that agree with each other but not with the
    Trace's own storage (which opt's look-ahead was computed from)."""
    a, k, s = good_columns(n=4, base=0x10000)
    big = good_columns(n=32, base=0x10000)
    t = subclass(*big)(a, k, s)
    m, p, base = replaying(policy, frames=4)
    try:
        d = m.replay(t, process=p)
    except REJECT:
        pass
    else:
        assert d["reads"] in (4, 32)
    m.check()


@pytest.mark.parametrize("bad", ["short", "huge", "negative", "float", "empty"])
def test_opt_with_a_subclass_whose_next_use_lies(bad):
    """opt's look-ahead comes from the trace: one that overrides next_use with a
    wrong answer must not steer the core out of its arrays."""
    a, k, s = good_columns(n=64, base=0x10000)
    a = a % np.uint64(32 * PS) + np.uint64(0x10000)         # 32 pages, reused
    lie = {"short": np.zeros(3, np.int64),
           "huge": np.full(64, 2 ** 62, np.int64),
           "negative": np.full(64, -5, np.int64),
           "float": np.zeros(64, np.float64),
           "empty": np.zeros(0, np.int64)}[bad]
    t = subclass(next_use=lie)(a, k, s)
    m, p, base = replaying("opt", frames=4)
    try:
        d = m.replay(t, process=p)
    except REJECT:
        pass
    else:
        assert d["reads"] == 64
        want = pymmu.Machine(4, page_size=PS, swap_slots=64, policy="opt", zero_page=False)
        wp = want.spawn()
        wp.mmap(32 * PS)
        assert d == want.replay(Trace(a, k, s), process=wp)
    m.check()


@pytest.mark.parametrize("policy", ["clock", "opt"])
@pytest.mark.parametrize("edit", ["kind 255", "kind 200", "size 0", "past 2**64"])
def test_a_binary_trace_edited_by_hand(tmp_path, edit, policy):
    """load() checks only the header; replay refuses the bad record (TraceError
    with its index) or faults on it, never reads it as something else."""
    from pymmu.traces import load

    a, k, s = good_columns(n=16, base=0x10000)
    path = tmp_path / "t.pmt"
    Trace(a, k, s).save(path)
    t = load(path)
    raw = bytearray(path.read_bytes())
    # find the columns in the file by their known bytes
    at = {"kind": raw.find(bytes(k)), "size": raw.find(s.astype("<u4").tobytes()),
          "addr": raw.find(a.astype("<u8").tobytes())}
    assert min(at.values()) > 0
    if edit.startswith("kind"):
        raw[at["kind"] + 5] = int(edit.split()[1])
    elif edit == "size 0":
        raw[at["size"] + 4 * 5: at["size"] + 4 * 6] = bytes(4)
    else:
        raw[at["addr"] + 8 * 5: at["addr"] + 8 * 6] = (2 ** 64 - 4).to_bytes(8, "little")
    del t
    path.write_bytes(bytes(raw))
    t = load(path)
    m, p, base = replaying(policy)
    with pytest.raises((TraceError, pymmu.SegmentationFault, ValueError)) as e:
        m.replay(t, process=p)
    if isinstance(e.value, (TraceError, pymmu.SegmentationFault)):
        assert e.value.index == 5
        assert p.stats["reads"] == 5
    m.check()


@pytest.mark.parametrize("case", ["kind 255", "addr longer", "addr float64"])
def test_a_crafted_chunk_of_a_streamed_replay_is_refused_when_reached(case):
    """An iterable of Traces (as stream() yields): the chunks before a crafted one
    are applied, the crafted one is refused before the core sees its columns."""
    overrides, expected, index = bad_subclasses()[case]
    a, k, s = good_columns(base=0x10000)
    evil = subclass(**overrides)(a, k, s)
    m, p, base = replaying()
    with pytest.raises(expected) as e:
        m.replay(iter([Trace(a, k, s), evil]), process=p)
    if index is not None:
        assert e.value.index == 10 + index
    assert p.stats["reads"] == 10 + (index or 0)
    m.check()
