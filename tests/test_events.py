"""The event log: ``with m.events() as log:`` and ``m.references``.

DESIGN.md section 11 ("Events"). Every test goes through the public API and runs
on both implementations (the ``Machine`` fixture). Expected events are worked out
by hand from the rules of sections 4-6; the random workloads only check the
contract's identities (counts equal counter deltas, field rules).
"""
from __future__ import annotations

import copy
import pickle
import random

import numpy as np
import pytest

import pymmu
import pymmu.events
from pymmu import pte as P
from pymmu.traces import Trace

PS = 4096
NINE = pymmu.events.KINDS[:9]


def events(log):
    """The kept events as (kind, seq, pid, vaddr, pfn, slot) tuples."""
    a = log.array
    assert (a["t_ns"] == 0).all()              # no m.run: no simulated time
    return [(pymmu.events.KINDS[k], s, pid, v, pfn, slot) for k, s, pid, v, pfn, slot in
            zip(a["kind"].tolist(), a["seq"].tolist(), a["pid"].tolist(),
                a["vaddr"].tolist(), a["pfn"].tolist(), a["slot"].tolist())]


def kinds(log):
    return [e[0] for e in events(log)]


def pfn_of(p, addr):
    phys = p.translate(addr)
    assert phys is not None, f"{addr:#x} is not present"
    return phys // PS


# --- the shared module -----------------------------------------------------------


def test_kinds_in_code_order():
    assert pymmu.events.KINDS == (
        "zero_page_maps", "zero_fills", "cow_copies", "cow_reuses", "swap_ins",
        "swap_cache_hits", "file_reads", "evictions", "swap_outs",
        "oom", "segv", "protection")
    for k in NINE:
        assert k in pymmu.Machine(1).stats


# --- m.references ----------------------------------------------------------------


def test_m_refs_count_page_touches(Machine):
    m = Machine(8)
    assert m.references == 0
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x")
    assert m.references == 1
    p.read(a + PS - 2, 4)                      # spans two pages: two references
    assert m.references == 3
    p.read(a, 0)                               # nothing touched
    p.write(a, b"")
    assert m.references == 3
    p.write(a, bytes(3 * PS))                  # three pages
    assert m.references == 6
    with pytest.raises(pymmu.SegmentationFault):
        p.read(a + 3 * PS, 2 * PS)             # refused before any page is touched
    assert m.references == 6
    m.replay(Trace([a, a + PS - 1, a + 2 * PS], kind="LSL", size=[1, 2, 1]), process=p)
    assert m.references == 10                  # the middle record spans two pages
    m.reset_stats()
    assert m.references == 10                  # untouched by reset_stats
    c = p.fork()
    c.read(a, 1)
    assert m.references == 11                  # machine-wide


def test_snapshots_keep_m_references(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x" * (PS + 1))
    assert copy.deepcopy(m).references == 2    # kept by snapshots
    assert pickle.loads(pickle.dumps(m)).references == 2


def test_m_refs_count_the_touch_that_runs_out_of_memory(Machine):
    m = Machine(1)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x")
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + PS, b"y")
    assert m.references == 2


# --- what an event says ----------------------------------------------------------


def test_the_doc_example(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    with m.events() as log:
        p.write(a + 5, b"x")
        assert p.read(a + PS + 7, 1) == b"\0"
    assert events(log) == [
        ("zero_fills", 1, p.pid, a, 0, -1),
        ("zero_page_maps", 2, p.pid, a + PS, m.frames, -1),   # the zero page's pfn
    ]
    c = log.counts()
    assert list(c) == list(pymmu.events.KINDS)
    assert c["zero_fills"] == c["zero_page_maps"] == 1
    assert sum(c.values()) == 2
    assert log.array.dtype == pymmu.events.DTYPE
    assert log.dropped == 0 and len(log) == 2


def test_eviction_events_come_first_and_name_the_victim(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    with m.events() as log:
        p.write(a, b"A")                       # reference 1: pfn 0
        p.write(a + PS, b"B")                  # reference 2: A out to slot 0
        assert p.read(a, 1) == b"A"            # reference 3: B out to slot 1, A in
    assert events(log) == [
        ("zero_fills", 1, p.pid, a, 0, -1),
        ("evictions", 2, p.pid, a, 0, 0),
        ("swap_outs", 2, p.pid, a, 0, 0),
        ("zero_fills", 2, p.pid, a + PS, 0, -1),
        ("evictions", 3, p.pid, a + PS, 0, 1),
        ("swap_outs", 3, p.pid, a + PS, 0, 1),
        ("swap_ins", 3, p.pid, a, 0, 0),
    ]
    assert log.counts()["evictions"] == m.stats["evictions"] == 2


def test_eviction_pid_is_the_lowest_mapper_not_the_faulting_process(Machine):
    m = Machine(2, swap_slots=4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"A")                           # pfn 0
    c = p.fork()
    with m.events() as log:
        c.write(a + PS, b"B")                  # pfn 1, c's own page
        c.write(a + 2 * PS, b"C")              # clears both A bits, evicts pfn 0
    r = m.references
    assert events(log) == [
        ("zero_fills", r - 1, c.pid, a + PS, 1, -1),
        ("evictions", r, p.pid, a, 0, 0),      # shared by p and c: p is the lower pid
        ("swap_outs", r, p.pid, a, 0, 0),
        ("zero_fills", r, c.pid, a + 2 * PS, 0, -1),
    ]


def test_cow_events_and_a_swapped_shared_page_written(Machine):
    m = Machine(3, swap_slots=4)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"A")                           # pfn 0
    p.write(a + PS, b"B")                      # pfn 1
    c = p.fork()
    with m.events() as log:
        c.write(a, b"a")                       # a copy into pfn 2
        p.write(a, b"P")                       # p is now alone on pfn 0: reuse
    r = m.references
    assert events(log) == [
        ("cow_copies", r - 1, c.pid, a, 2, -1),
        ("cow_reuses", r, p.pid, a, 0, -1),
    ]
    # Page B (pfn 1, shared by p and c) goes to swap; then c writes it: a swap-in
    # into the swap cache, then a COW copy, within one reference.
    p.write(a + 2 * PS, b"x")                  # clock: clears 0, 1, 2; evicts pfn 0
    assert P.decode(p.pte(a)).swapped
    p.write(a + 3 * PS, b"y")                  # evicts pfn 1: B, slot 1
    slot_b = P.decode(c.pte(a + PS)).swap_slot
    with m.events() as log:
        assert c.read(a + PS, 1) == b"B"       # swap-in (the slot has two users)
        new = pfn_of(c, a + PS)
        assert p.read(a + PS, 1) == b"B"       # p finds it in the swap cache
    r = m.references
    got = events(log)
    assert got[-1] == ("swap_cache_hits", r, p.pid, a + PS, new, slot_b)
    assert got[-2][:2] == ("swap_ins", r - 1)
    assert got[-2][2:] == (c.pid, a + PS, new, slot_b)
    assert all(e[0] in ("evictions", "swap_outs") and e[1] == r - 1 for e in got[:-2])


def test_file_reads_and_a_dropped_file_page(Machine):
    m = Machine(1)                             # no swap: file pages can still go
    p = m.spawn()
    p.exec(pymmu.Image([pymmu.Segment(0x400000, "rx", b"\x90" * (2 * PS))], stack_size=0))
    with m.events() as log:
        p.fetch(0x400000, 4)
        p.fetch(0x400000 + PS, 4)
    r = m.references
    assert events(log) == [
        ("file_reads", r - 1, p.pid, 0x400000, 0, -1),
        ("evictions", r, p.pid, 0x400000, 0, -1),     # clean: dropped, no slot
        ("file_reads", r, p.pid, 0x400000 + PS, 0, -1),
    ]


def test_shared_object_page_no_pte_maps(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    s = p.mmap(PS, shared=True)
    c = p.fork()                               # keeps the object alive
    p.write(s, b"S")                           # pfn 0, the object's page
    p.munmap(s, PS)                            # no PTE maps it now
    a = p.mmap(PS)
    with m.events() as log:
        p.write(a, b"x")                       # evicts the object's page to slot 0
        assert c.read(s, 1) == b"S"            # evicts p's page to slot 1, reads slot 0
    r = m.references
    assert events(log) == [
        ("evictions", r - 1, -1, 0, 0, 0),
        ("swap_outs", r - 1, -1, 0, 0, 0),
        ("zero_fills", r - 1, p.pid, a, 0, -1),
        ("evictions", r, p.pid, a, 0, 1),
        ("swap_outs", r, p.pid, a, 0, 1),
        ("swap_ins", r, c.pid, s, 0, 0),
    ]


def test_vfork_child_events_carry_the_child_pid(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    v = p.vfork()
    with m.events() as log:
        v.write(a, b"v")
        v.read(a + PS, 1)
    assert [(e[0], e[2]) for e in events(log)] == [
        ("zero_fills", v.pid), ("zero_page_maps", v.pid)]


# --- refused accesses ------------------------------------------------------------


def test_segv_and_protection_events(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS, "r")
    p.read(a, 1)
    with m.events() as log:
        with pytest.raises(pymmu.SegmentationFault):
            p.read(a + 2 * PS + 123, 1)
        with pytest.raises(pymmu.ProtectionFault):
            p.write(a + PS + 5, b"x")
        with pytest.raises(pymmu.SegmentationFault):
            p.read(a + PS, 2 * PS)             # the second page is unmapped
        with pytest.raises(pymmu.ProtectionFault):
            p.fetch(a, 1)
    assert m.references == 1                   # none of them started a reference
    assert events(log) == [
        ("segv", 1, p.pid, a + 2 * PS, -1, -1),
        ("protection", 1, p.pid, a + PS, -1, -1),
        ("segv", 1, p.pid, a + 2 * PS, -1, -1),
        ("protection", 1, p.pid, a, -1, -1),
    ]
    c = log.counts()
    assert (c["segv"], c["protection"], c["oom"]) == (2, 2, 0)


def test_segv_in_replay(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    with m.events() as log:
        with pytest.raises(pymmu.SegmentationFault) as e:
            m.replay(Trace([a, a + PS + 8], kind="SL"), process=p)
    assert e.value.index == 1
    assert events(log) == [
        ("zero_fills", 1, p.pid, a, 0, -1),
        ("segv", 1, p.pid, a + PS, -1, -1),
    ]


def test_oom_event(Machine):
    m = Machine(1)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"x")
    with m.events() as log:
        with pytest.raises(pymmu.OutOfMemory):
            p.write(a + PS + 1, b"yy")
    assert events(log) == [("oom", 2, p.pid, a + PS, -1, -1)]
    assert log.counts()["oom"] == 1
    assert m.stats["evictions"] == 0


# --- the log ---------------------------------------------------------------------


def test_limit_keeps_the_latest_and_counts_every_event(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(5 * PS)
    with m.events(limit=2) as log:
        for i in range(5):
            p.write(a + i * PS, b"x")
        assert log.dropped == 3                # visible while recording
    assert [e[3] for e in events(log)] == [a + 3 * PS, a + 4 * PS]
    assert log.dropped == 3
    assert log.counts()["zero_fills"] == 5
    with m.events(limit=0) as log0:
        p.read(a, 1)
        p.write(a, b"y")
    assert len(log0.array) == 0
    assert log0.dropped == 0                   # no event: a resident page


def test_nested_blocks_raise_and_recording_stops_with_the_block(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    with m.events() as log:
        p.write(a, b"x")
        with pytest.raises(RuntimeError):
            with m.events():
                pass
        p.write(a + PS, b"x")
    p.write(a + 2 * PS, b"x")                  # not recorded anywhere
    assert kinds(log) == ["zero_fills", "zero_fills"]
    with m.events() as log2:                   # a new block works
        p.read(a + 2 * PS, 1)
    assert kinds(log2) == []
    assert kinds(log) == ["zero_fills", "zero_fills"]


# --- misuse (issue 16, item 9) ---------------------------------------------------


def test_exit_of_a_log_never_entered_leaves_the_open_block_alone(Machine):
    """A log's ``__exit__`` acts only on the block that log opened: on a log
    never entered (or whose ``__enter__`` was refused) it raises RuntimeError
    and the open block of another log records on."""
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    with m.events() as log:
        p.write(a, b"x")
        stray, refused = m.events(), m.events()
        with pytest.raises(RuntimeError):
            stray.__exit__(None, None, None)
        with pytest.raises(RuntimeError):
            refused.__enter__()                # blocks do not nest
        with pytest.raises(RuntimeError):
            refused.__exit__(None, None, None)
        p.write(a + PS, b"x")                  # still recorded
        assert len(log) == 2 and log.counts()["zero_fills"] == 2
    assert kinds(log) == ["zero_fills", "zero_fills"]
    with stray:                                # still usable: it never recorded
        p.write(a + 2 * PS, b"x")
    assert kinds(stray) == ["zero_fills"]


def test_closing_twice_raises_and_keeps_the_log(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    log = m.events()
    log.__enter__()
    p.write(a, b"x")
    log.__exit__(None, None, None)
    with pytest.raises(RuntimeError):
        log.__exit__(None, None, None)
    assert kinds(log) == ["zero_fills"]
    assert log.counts()["zero_fills"] == 1 and len(log) == 1
    with m.events() as log2:                   # nor does it close a later block
        with pytest.raises(RuntimeError):
            log.__exit__(None, None, None)
        p.write(a + PS, b"x")
    assert kinds(log2) == ["zero_fills"]
    assert kinds(log) == ["zero_fills"]
    assert repr(log) == "EventLog(done, 1 events, 0 dropped)"


@pytest.mark.parametrize("limit", [None, 1, 10])
def test_array_is_a_fresh_copy_each_call(Machine, limit):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    with m.events(limit=limit) as log:
        p.write(a, b"x")
        inside = log.array
        assert inside is not log.array
        inside["pid"] = 99
        assert (log.array["pid"] == p.pid).all()
        p.write(a + PS, b"x")
    first, second = log.array, log.array
    assert first is not second
    assert first.flags.writeable and first.flags.owndata
    first["pid"] = 99
    first.sort(order="vaddr")
    assert (second["pid"] == p.pid).all() and (log.array["pid"] == p.pid).all()
    want = [a, a + PS][-limit:] if limit else [a, a + PS]
    assert log.array["vaddr"].tolist() == want
    assert log.counts()["zero_fills"] == 2 == len(log) + log.dropped


@pytest.mark.parametrize("limit", [2 ** 63 - 1, 2 ** 63, 2 ** 64, 10 ** 30])
def test_a_limit_no_log_can_reach_keeps_every_event(Machine, limit):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    log = m.events(limit=limit)
    assert log.limit == limit
    with log:
        for i in range(3):
            p.write(a + i * PS, b"x")
    assert kinds(log) == ["zero_fills"] * 3
    assert log.dropped == 0
    with pytest.raises(ValueError):
        m.events(limit=-2 ** 63 - 1)


def test_a_policy_hook_may_not_open_read_or_close_a_block(Machine):
    """Inside a hook the log is the machine's: every use is refused at once
    (no wait), and the block records on and closes after."""
    from pymmu.policy import Fifo

    seen = []

    class Meddler(Fifo):
        def on_map(self, pfn):
            super().on_map(pfn)
            for name, call in (("array", lambda: log.array), ("len", lambda: len(log)),
                               ("exit", lambda: log.__exit__(None, None, None)),
                               ("enter", lambda: other.__enter__())):
                try:
                    call()
                except RuntimeError:
                    seen.append(name)

    m = Machine(4, policy=Meddler())
    p = m.spawn()
    a = p.mmap(2 * PS)
    other = m.events()
    with m.events() as log:
        p.write(a, b"x")
        p.write(a + PS, b"x")
    assert seen == ["array", "len", "exit", "enter"] * 2
    assert kinds(log) == ["zero_fills", "zero_fills"]
    with other:                                # never entered: still usable
        p.read(a, 1)


def hot_trace(base: int, records: int, seed: int = 0) -> Trace:
    """Loads and stores over 16 pages at ``base``, every 64th record on one of
    ``REGION`` pages: a long replay with few events (a fault per 64 records or
    so), so that a log of all of them stays small."""
    from pymmu.traces import LOAD, STORE

    rng = np.random.default_rng(seed)
    pages = rng.integers(0, 16, records, dtype=np.uint64)
    far = pages[::64]
    far[:] = rng.integers(16, REGION, len(far), dtype=np.uint64)
    pages[::64] = far
    kind = rng.choice(np.array([LOAD, STORE], np.uint8), records)
    return Trace(np.uint64(base) + pages * np.uint64(PS) + 8, kind=kind, size=8)


REGION = 4096


@pytest.mark.parametrize("limit", [None, 100])
def test_closing_a_block_while_another_thread_replays(Machine, limit):
    """``__exit__`` from this thread while another thread's replay records into
    the block stops the recording for good: the log keeps what it has (counts
    and array agree), later events go elsewhere, a new block opens. The core
    closes once the replay ends (the replay writes the log without the GIL),
    so its log then holds the whole replay's events."""
    import threading

    core = getattr(Machine(1), "_core", None) is not None
    m = Machine(32, page_size=PS, swap_slots=REGION + 64, zero_page=False)
    p = m.spawn()
    base = p.mmap(REGION * PS)
    q = m.spawn()
    qa = q.mmap(2 * PS)
    trace = hot_trace(base, 3_000_000 if core else 30_000)
    outcome = {}

    def replay():
        try:
            outcome["result"] = m.replay(trace, process=p)
        except BaseException as e:      # noqa: BLE001 - reported by the test
            outcome["error"] = e

    def replaying():
        return m._core.busy if core else m._references > 0

    worker = threading.Thread(target=replay, daemon=True)
    before = m.stats
    with m.events(limit=limit) as log:
        worker.start()
        while not replaying() and worker.is_alive():
            pass
        overlapped = worker.is_alive()
    closed_stats = m.stats if core else None
    counts, kept, dropped = log.counts(), log.array, log.dropped
    with m.events() as log2:                   # the machine records for log2 now
        q.write(qa, b"x")
    worker.join()
    assert "error" not in outcome, repr(outcome.get("error"))
    if not overlapped:
        pytest.skip("the replay ended before the block could close during it")
    q.write(qa + PS, b"x")                     # recorded nowhere
    assert log.counts() == counts and log.dropped == dropped
    assert log.array.tobytes() == kept.tobytes()
    assert sum(counts.values()) == len(kept) + dropped
    if limit is None:
        assert dropped == 0
        assert np.bincount(kept["kind"], minlength=len(pymmu.events.KINDS)).tolist() == \
            list(counts.values())
    else:
        assert len(kept) <= limit
    assert ("zero_fills", q.pid, qa) in {(pymmu.events.KINDS[k], pid, v) for k, pid, v in
                                         zip(log2.array["kind"].tolist(),
                                             log2.array["pid"].tolist(),
                                             log2.array["vaddr"].tolist())}
    assert q.pid not in log.array["pid"].tolist()
    if core:
        # the block closed once the replay ended: it holds all of its events
        for k in NINE:
            assert counts[k] == closed_stats[k] - before[k], k
        assert counts["zero_fills"] > 0
    m.check()


def test_a_snapshot_does_not_record(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    with m.events() as log:
        p.write(a, b"x")
        m2 = copy.deepcopy(m)
        p2 = m2.process(p.pid)
        p2.write(a + PS, b"y")                 # the copy's event goes nowhere
        with m2.events() as log2:              # and the copy can record on its own
            p2.read(a + PS, 1)
            p2.read(a, 1)
    assert kinds(log) == ["zero_fills"]
    assert kinds(log2) == []


# --- counts equal counter deltas -------------------------------------------------


def _workload(m, rng, steps):
    """Random processes, mappings and accesses under memory pressure; returns how
    many accesses were refused with each of oom / segv / protection."""
    refused = dict(oom=0, segv=0, protection=0)
    img = pymmu.Image([pymmu.Segment(0x400000, "rx", bytes(range(256)) * 40),
                       pymmu.Segment(0x600000, "rw", b"data" * 900, memsz=3 * PS)],
                      stack_size=2 * PS)
    root = m.spawn()
    maps = {root.pid: [(root.mmap(6 * PS), 6)]}
    for _ in range(steps):
        live = [q for q in m.processes() if q.state == "running"]
        if not live:
            break
        q = rng.choice(live)
        if q.pid not in maps:
            maps[q.pid] = list(maps.get(q.ppid, [(0x400000, 4)]))
        op = rng.random()
        try:
            if op < 0.35:
                base, n = rng.choice(maps[q.pid])
                addr = base + rng.randrange(n * PS + PS)       # sometimes past the end
                size = rng.choice([1, 8, PS])
                if rng.random() < 0.5:
                    q.write(addr, bytes([rng.randrange(256)]) * size)
                else:
                    q.read(addr, size)
            elif op < 0.45:
                base, n = rng.choice(maps[q.pid])
                q.fetch(base + rng.randrange(n * PS), 4)
            elif op < 0.55:
                base, n = rng.choice(maps[q.pid])
                recs = [base + rng.randrange(n * PS) for _ in range(rng.randrange(1, 20))]
                m.replay(Trace(recs, kind=[rng.choice("ILSM") for _ in recs],
                               size=rng.choice([1, 8])), process=q)
            elif op < 0.62 and len(live) < 6:
                child = q.fork()
                maps[child.pid] = list(maps[q.pid])
            elif op < 0.65 and len(live) < 6:
                child = q.vfork()
                maps[child.pid] = list(maps[q.pid])
            elif op < 0.70:
                q.exec(img)
                maps[q.pid] = [(0x400000, 3), (0x600000, 3),
                               ((1 << 48) - 2 * PS, 2)]
            elif op < 0.76:
                n = rng.randrange(1, 4)
                shared = rng.random() < 0.4
                prot = rng.choice(["rw", "rw", "r", "rwx"])
                maps[q.pid].append((q.mmap(n * PS, prot, shared=shared), n))
            elif op < 0.80:
                base, n = maps[q.pid].pop(rng.randrange(len(maps[q.pid])))
                q.munmap(base, n * PS)
                if not maps[q.pid]:
                    maps[q.pid].append((q.mmap(PS), 1))
            elif op < 0.84:
                q.clear_accessed()
            elif op < 0.88 and q is not root:
                q.exit(1)
            elif op < 0.92:
                q.wait()
            else:
                m.idle(rng.randrange(3))
        except pymmu.OutOfMemory:
            refused["oom"] += 1
        except pymmu.SegmentationFault:
            refused["segv"] += 1
        except pymmu.ProtectionFault:
            refused["protection"] += 1
        except pymmu.ProcessStateError:
            pass
    return refused


@pytest.mark.parametrize("policy", ["clock", "fifo", "lru", "random"])
@pytest.mark.parametrize("seed", range(4))
def test_counts_equal_counter_deltas_on_a_random_workload(Machine, policy, seed):
    rng = random.Random(seed)
    m = Machine(6, swap_slots=rng.choice([0, 4, 32]), policy=policy,
                zero_page=rng.random() < 0.8, seed=seed)
    before = m.stats
    refs = m.references
    with m.events() as log:
        refused = _workload(m, rng, 150)
    after = m.stats
    counts = log.counts()
    for k in NINE:
        assert counts[k] == after[k] - before[k], k
    assert {k: counts[k] for k in refused} == refused
    a = log.array
    assert log.dropped == 0
    assert np.bincount(a["kind"], minlength=len(pymmu.events.KINDS)).tolist() == \
        list(counts.values())
    assert (np.diff(a["seq"]) >= 0).all()
    if len(a):
        assert refs <= a["seq"].min() and a["seq"].max() <= m.references
    assert (a["vaddr"] % PS == 0).all()
    assert (a["t_ns"] == 0).all()
    code = pymmu.events.CODES
    no_frame = np.isin(a["kind"], [code["oom"], code["segv"], code["protection"]])
    assert (a["pfn"][no_frame] == -1).all() and (a["slot"][no_frame] == -1).all()
    assert (a["pfn"][~no_frame] >= 0).all()
    with_slot = np.isin(a["kind"], [code[k] for k in
                                    ("swap_ins", "swap_cache_hits", "swap_outs")])
    assert (a["slot"][with_slot] >= 0).all()
    no_slot = np.isin(a["kind"], [code[k] for k in
                                  ("zero_page_maps", "zero_fills", "cow_copies",
                                   "cow_reuses", "file_reads")])
    assert (a["slot"][no_slot] == -1).all()
    m.check()


def test_counts_over_a_block_with_a_reset_inside(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(6 * PS)
    with m.events() as log:
        for i in range(6):
            p.write(a + i * PS, b"x")
        m.reset_stats()                        # counters restart; the log does not
        for i in range(6):
            p.read(a + i * PS, 1)
    s = m.stats
    c = log.counts()
    assert c["zero_fills"] == 6
    assert c["swap_ins"] == s["swap_ins"] == 6
    assert c["evictions"] == 4 + s["evictions"]


def test_segv_beyond_the_address_space(Machine):
    # vaddr is the page of the faulting address; past 2**64 (not a uint64) the
    # last 64-bit page.
    m = Machine(4, va_bits=39)
    p = m.spawn()
    top = 1 << 39
    p.mmap(PS, addr=top - PS)
    with m.events() as log:
        for addr in (top, top + PS + 5, top - 10, 2 ** 64 - 1, 2 ** 70):
            with pytest.raises(pymmu.SegmentationFault):
                p.read(addr, 20)
    last = 2 ** 64 - PS
    assert [(e[0], e[3]) for e in events(log)] == [
        ("segv", top), ("segv", top + PS), ("segv", top), ("segv", last), ("segv", last)]


# --- the two implementations side by side ------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_core_agrees_with_the_oracle_on_a_random_workload(seed):
    """The same random workload on both: identical logs, frame tables, hands."""
    import pymmu.reference

    out = []
    for M in (pymmu.Machine, pymmu.reference.Machine):
        rng = random.Random(seed)
        m = M(5, swap_slots=rng.choice([0, 3, 16]), zero_page=rng.random() < 0.8,
              policy=rng.choice(["clock", "clock", "fifo", "lru", "random"]), seed=seed)
        with m.events() as log:
            refused = _workload(m, rng, 120)
        t = m.frame_table()
        out.append((refused, events(log), log.counts(), m.references, m.clock_hand,
                    m.stats, {f: t[f].tolist() for f in t.dtype.names},
                    [(q.pid, q.state) for q in m.processes()]))
    core, ref = out
    for name, a, b in zip(("refused", "events", "counts", "references", "clock_hand",
                           "stats", "frame_table", "processes"), core, ref):
        assert a == b, name
