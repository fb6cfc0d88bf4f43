"""Trace replay (DESIGN.md section 7, ``Machine.replay``) and known answers.

With ``zero_page=False``, enough swap and one process, every page a record
touches is one reference and ``minor_faults + major_faults`` is the miss count of
a textbook simulator of the same policy. The simulators below are written here,
independently of pymmu, from the textbook definitions and semantics.md section 8
(clock: pages inserted referenced, the hand starting at frame 0 and stopping one
past the victim, free frames filled lowest first; random: splitmix64 over the
frames in pfn order). Known answers (Belady's anomaly, the OSTEP/Silberschatz
reference string) are checked against the simulators too.

Replay on ``pymmu.reference`` is skipped while the reference has no ``replay``;
the same known answers are also checked through the ordinary access API, which
both implementations have.
"""
from __future__ import annotations

import collections
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pymmu
from pymmu import pte as P
from pymmu.traces import FETCH, LOAD, MODIFY, STORE, Trace

PS = 4096
# The sample traces ship inside the package (pymmu/samples, see its README.md).
LACKEY = pathlib.Path(pymmu.__file__).resolve().parent / "samples" / "ls.lackey.xz"

BELADY = [1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]
BOOK = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1]


# --- independent simulators ----------------------------------------------------------


def sim_fifo(refs, frames):
    resident, queue, misses = set(), collections.deque(), 0
    for r in refs:
        if r in resident:
            continue
        misses += 1
        if len(resident) == frames:
            resident.discard(queue.popleft())
        resident.add(r)
        queue.append(r)
    return misses


def sim_lru(refs, frames):
    stack, misses = collections.OrderedDict(), 0
    for r in refs:
        if r in stack:
            stack.move_to_end(r)
            continue
        misses += 1
        if len(stack) == frames:
            stack.popitem(last=False)
        stack[r] = True
    return misses


def next_uses(refs):
    nxt = [0] * len(refs)
    last = {}
    for i in range(len(refs) - 1, -1, -1):
        nxt[i] = last.get(refs[i], len(refs) + i)   # never again: farther than anything
        last[refs[i]] = i
    return nxt


def sim_opt(refs, frames, nxt=None):
    nxt = next_uses(refs) if nxt is None else nxt
    resident, misses = {}, 0                          # page -> its next use
    for i, r in enumerate(refs):
        if r not in resident:
            misses += 1
            if len(resident) == frames:
                victim = max(resident, key=resident.__getitem__)
                del resident[victim]
        resident[r] = nxt[i]
    return misses


def sim_clock(refs, frames):
    """Second chance over frames 0..frames-1 (semantics.md section 8)."""
    page_in = [None] * frames
    ref = [False] * frames
    where = {}
    hand, used, misses = 0, 0, 0
    for r in refs:
        f = where.get(r)
        if f is not None:
            ref[f] = True
            continue
        misses += 1
        if used < frames:                             # a free frame: lowest first, no scan
            f = used
            used += 1
        else:
            while ref[hand]:
                ref[hand] = False
                hand = (hand + 1) % frames
            f = hand
            hand = (hand + 1) % frames
            del where[page_in[f]]
        page_in[f] = r
        where[r] = f
        ref[f] = True                                 # just mapped: referenced
    return misses


def splitmix64(seed):
    mask = (1 << 64) - 1
    state = seed & mask
    while True:
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        yield z ^ (z >> 31)


def sim_random(refs, frames, seed=0):
    rng = splitmix64(seed)
    page_in, where, used, misses = [None] * frames, {}, 0, 0
    for r in refs:
        if r in where:
            continue
        misses += 1
        if used < frames:
            f = used
            used += 1
        else:
            f = next(rng) % frames                    # every frame evictable, pfn order
            del where[page_in[f]]
        page_in[f] = r
        where[r] = f
    return misses


def sim_mru(refs, frames):
    """Most recently used: the page referenced last goes (OSTEP's paging-policy.py
    MRU, and Chou and DeWitt's choice for looping scans)."""
    resident, last, misses = set(), None, 0
    for r in refs:
        if r not in resident:
            misses += 1
            if len(resident) == frames:
                resident.discard(last)
            resident.add(r)
        last = r
    return misses


SIMS = {"fifo": sim_fifo, "lru": sim_lru, "opt": sim_opt, "clock": sim_clock,
        "random": sim_random, "mru": sim_mru}


def test_simulators_know_the_textbook_answers():
    assert (sim_fifo(BELADY, 3), sim_fifo(BELADY, 4)) == (9, 10)
    assert (sim_lru(BELADY, 3), sim_lru(BELADY, 4)) == (10, 8)
    assert (sim_opt(BELADY, 3), sim_opt(BELADY, 4)) == (7, 6)
    assert (sim_fifo(BOOK, 3), sim_lru(BOOK, 3), sim_opt(BOOK, 3)) == (15, 12, 9)
    # second chance by hand on 1,2,3,4,1 with 3 frames: 4 sweeps all, takes frame 0;
    # 1 then misses: frame 1 (page 2, cleared) is taken.
    assert sim_clock([1, 2, 3, 4, 1], 3) == 5
    assert sim_clock([1, 2, 3, 1, 4, 1], 3) == 5   # 1 was referenced again: still swept
    assert sim_clock([1, 2, 3, 4, 2, 5, 2], 3) == 5
    # a loop over 4 pages in 3 frames: lru misses every time, mru keeps 2 of 3
    loop = [0, 1, 2, 3] * 5
    assert (sim_lru(loop, 3), sim_mru(loop, 3)) == (20, 9)
    assert sim_mru(BOOK, 3) == 16


# --- helpers ------------------------------------------------------------------------


def replaying(Machine, *args, **kw):
    if not hasattr(Machine, "replay"):
        pytest.skip(f"{Machine.__module__}.Machine has no replay yet")
    return Machine(*args, **kw)


def faults(d):
    return d["minor_faults"] + d["major_faults"]


def page_trace(refs, kinds=LOAD, base=0x100000):
    return Trace([base + r * PS for r in refs], kind=kinds, size=1)


def replay_faults(Machine, refs, frames, policy, kinds=LOAD, **kw):
    m = replaying(Machine, frames, zero_page=False, swap_slots=len(set(refs)) + 1,
                  policy=policy, **kw)
    d = m.replay(page_trace(refs, kinds))
    assert m.frames_free == m.frames and m.swap_free == m.swap_slots
    m.check()
    return faults(d)


def api_faults(Machine, refs, frames, policy, kinds=None, **kw):
    """The same references through p.read / p.write / p.fetch."""
    m = Machine(frames, zero_page=False, swap_slots=len(set(refs)) + 1, policy=policy, **kw)
    p = m.spawn()
    base = p.mmap((max(refs) + 1) * PS, "rwx")
    for i, r in enumerate(refs):
        k = LOAD if kinds is None else kinds[i]
        if k == LOAD:
            p.read(base + r * PS, 1)
        elif k == FETCH:
            p.fetch(base + r * PS, 1)
        else:
            p.write(base + r * PS, b"\x01")
    n = m.stats["minor_faults"] + m.stats["major_faults"]
    m.check()
    p.exit()
    assert m.frames_free == m.frames and m.swap_free == m.swap_slots
    return n


# --- known answers --------------------------------------------------------------------


@pytest.mark.parametrize("frames, expected", [(3, 9), (4, 10)])
def test_belady_anomaly_fifo_replay(Machine, frames, expected):
    assert replay_faults(Machine, BELADY, frames, "fifo") == expected


@pytest.mark.parametrize("frames, expected", [(3, 9), (4, 10)])
def test_belady_anomaly_fifo_api(Machine, frames, expected):
    assert api_faults(Machine, BELADY, frames, "fifo") == expected


@pytest.mark.parametrize("policy, expected", [("fifo", 15), ("lru", 12), ("opt", 9)])
def test_textbook_string_replay(Machine, policy, expected):
    assert replay_faults(Machine, BOOK, 3, policy) == expected


@pytest.mark.parametrize("policy, expected", [("fifo", 15), ("lru", 12)])
def test_textbook_string_api(Machine, policy, expected):
    assert api_faults(Machine, BOOK, 3, policy) == expected


@pytest.mark.parametrize("refs", [BELADY, BOOK], ids=["belady", "book"])
@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("policy", list(SIMS))
def test_small_strings_against_simulators(Machine, refs, frames, policy):
    expected = SIMS[policy](refs, frames)
    assert replay_faults(Machine, refs, frames, policy) == expected
    if policy != "opt":
        assert api_faults(Machine, refs, frames, policy) == expected


def test_belady_opt_and_lru_known_answers(Machine):
    assert replay_faults(Machine, BELADY, 3, "opt") == 7
    assert replay_faults(Machine, BELADY, 4, "opt") == 6
    assert replay_faults(Machine, BELADY, 3, "lru") == 10
    assert replay_faults(Machine, BELADY, 4, "lru") == 8


refs_st = st.lists(st.integers(0, 11), min_size=1, max_size=80)
kinds_st = st.sampled_from([FETCH, LOAD, STORE, MODIFY])


@given(refs=refs_st, frames=st.integers(1, 7), data=st.data())
@settings(deadline=None)
def test_clock_matches_second_chance_simulator_replay(Machine, refs, frames, data):
    kinds = data.draw(st.lists(kinds_st, min_size=len(refs), max_size=len(refs)))
    assert replay_faults(Machine, refs, frames, "clock", kinds=kinds) == \
        sim_clock(refs, frames)


@given(refs=refs_st, frames=st.integers(1, 7), data=st.data())
@settings(deadline=None)
def test_clock_matches_second_chance_simulator_api(Machine, refs, frames, data):
    kinds = data.draw(st.lists(kinds_st, min_size=len(refs), max_size=len(refs)))
    assert api_faults(Machine, refs, frames, "clock", kinds=kinds) == sim_clock(refs, frames)


@given(refs=refs_st, frames=st.integers(1, 7),
       policy=st.sampled_from(["fifo", "lru", "opt", "random", "mru"]),
       seed=st.integers(0, 2**64 - 1), data=st.data())
@settings(deadline=None)
def test_policies_match_simulators_replay(Machine, refs, frames, policy, seed, data):
    kinds = data.draw(st.lists(kinds_st, min_size=len(refs), max_size=len(refs)))
    expected = (sim_random(refs, frames, seed) if policy == "random"
                else SIMS[policy](refs, frames))
    assert replay_faults(Machine, refs, frames, policy, kinds=kinds, seed=seed) == expected


@given(refs=refs_st, frames=st.integers(1, 7),
       policy=st.sampled_from(["fifo", "lru", "random", "mru"]), seed=st.integers(0, 2**64 - 1))
@settings(deadline=None)
def test_policies_match_simulators_api(Machine, refs, frames, policy, seed):
    expected = (sim_random(refs, frames, seed) if policy == "random"
                else SIMS[policy](refs, frames))
    assert api_faults(Machine, refs, frames, policy, seed=seed) == expected


def test_page_crossing_record_is_two_references(Machine):
    # pages 0|1 crossing, then 2, then 0: with 2 frames fifo misses 0,1,2,0 -> 4
    m = replaying(Machine, 2, zero_page=False, swap_slots=8, policy="fifo")
    t = Trace([PS - 2, 2 * PS, 0], kind=[LOAD, LOAD, LOAD], size=[4, 1, 1])
    d = m.replay(t)
    assert faults(d) == sim_fifo([0, 1, 2, 0], 2) == 4
    assert d["reads"] == 3
    m2 = replaying(Machine, 2, zero_page=False, swap_slots=8, policy="fifo")
    d2 = m2.replay(Trace([PS - 2, 2 * PS, 0], size=[2, 1, 1]))   # no crossing
    assert faults(d2) == sim_fifo([0, 2, 0], 2) == 2


# --- the ls trace -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ls_trace():
    from pymmu.traces import read_lackey
    return read_lackey(LACKEY)


@pytest.fixture(scope="module")
def ls_refs(ls_trace):
    """The page sequence, computed here, checked against trace.pages(4096), with
    runs of one page collapsed (a repeat of the page just referenced is a hit that
    changes no policy's state, and keeps the order of next uses)."""
    addr = ls_trace.addr.astype(np.uint64)
    last = addr + ls_trace.size.astype(np.uint64) - np.uint64(1)
    first_p, last_p = (addr >> np.uint64(12)).tolist(), (last >> np.uint64(12)).tolist()
    pages = []
    for f, l in zip(first_p, last_p):
        pages.append(f)
        if l != f:
            pages.extend(range(f + 1, l + 1))
    assert np.array_equal(np.asarray(pages, dtype=np.uint64), ls_trace.pages(PS))
    arr = np.asarray(pages, dtype=np.uint64)
    keep = np.ones(len(arr), bool)
    keep[1:] = arr[1:] != arr[:-1]
    refs = arr[keep].tolist()
    return refs, next_uses(refs)


@pytest.mark.parametrize("frames", [16, 64, 128])
@pytest.mark.parametrize("policy", ["clock", "fifo", "lru", "opt"])
def test_ls_trace_against_simulators(Machine, request, policy, frames):
    if "reference" in Machine.__module__:
        pytest.skip("the 873k-record trace is too slow for the pure-Python reference")
    ls_trace = request.getfixturevalue("ls_trace")
    refs, nxt = request.getfixturevalue("ls_refs")
    expected = sim_opt(refs, frames, nxt) if policy == "opt" else SIMS[policy](refs, frames)
    m = replaying(Machine, frames, zero_page=False, swap_slots=512, policy=policy)
    d = m.replay(ls_trace)
    assert faults(d) == expected
    assert d["major_faults"] == d["swap_ins"]
    assert d["minor_faults"] == d["zero_fills"] == len(set(refs))
    assert m.frames_free == frames and m.swap_free == 512
    m.check()


def test_ls_trace_counters(Machine, request):
    if "reference" in Machine.__module__:
        pytest.skip("the 873k-record trace is too slow for the pure-Python reference")
    ls_trace = request.getfixturevalue("ls_trace")
    kinds = np.bincount(ls_trace.kind, minlength=4)
    m = replaying(Machine, 64, swap_slots=512)
    before = dict(m.stats)
    d = m.replay(ls_trace)
    assert d == {k: v - before[k] for k, v in m.stats.items()}
    assert d["fetches"] == kinds[FETCH]
    assert d["reads"] == kinds[LOAD]
    assert d["writes"] == kinds[STORE] + kinds[MODIFY]
    assert d["tlb_hits"] + d["tlb_misses"] == len(ls_trace.pages(PS))
    # independent count of the lackey lines
    import lzma
    with lzma.open(LACKEY, "rt") as f:
        counts = collections.Counter(line[:2] for line in f if not line.startswith("=="))
    assert (counts["I "], counts[" L"], counts[" S"], counts[" M"]) == tuple(kinds)


# --- counters and processes -----------------------------------------------------------


def test_replay_counts_one_access_per_record(Machine):
    m = replaying(Machine, 16)
    t = Trace([0x1000, 0x1ffe, 0x3000, 0x3008, 0x5000, 0x5ffc, 0x1000],
              kind=[FETCH, LOAD, STORE, MODIFY, LOAD, MODIFY, STORE],
              size=[4, 4, 8, 8, 1, 8, 1])
    before = dict(m.stats)
    d = m.replay(t)
    after = dict(m.stats)
    assert set(d) == set(after)
    assert d == {k: after[k] - before[k] for k in after}
    assert (d["fetches"], d["reads"], d["writes"]) == (1, 2, 4)
    assert d["tlb_hits"] + d["tlb_misses"] == len(t.pages(PS)) == 9
    m.check()
    assert m.frames_free == 16


def test_modify_is_one_write_fault_on_a_fresh_page(Machine):
    m = replaying(Machine, 4)
    d = m.replay(Trace([0x2000], kind=MODIFY, size=8))
    assert (d["writes"], d["reads"]) == (1, 0)
    assert (d["minor_faults"], d["zero_fills"], d["zero_page_maps"]) == (1, 1, 0)


def test_replay_reads_use_the_zero_page_by_default(Machine):
    m = replaying(Machine, 4)
    d = m.replay(Trace([0x2000, 0x3000, 0x2000], kind="LLS"))
    assert d["zero_page_maps"] == 2
    assert d["zero_fills"] == 1
    assert faults(d) == 3
    assert m.frames_free == 4


def test_replay_without_process_cleans_up(Machine):
    m = replaying(Machine, 3, swap_slots=16, zero_page=False)
    refs = [0, 1, 2, 3, 4, 0, 5, 1, 6]
    m.replay(page_trace(refs, STORE))
    assert m.frames_free == 3 and m.swap_free == 16
    m.check()
    assert m.stats["swap_outs"] > 0


def test_replay_out_of_memory_still_cleans_up(Machine):
    m = replaying(Machine, 2, zero_page=False)
    with pytest.raises(pymmu.OutOfMemory):
        m.replay(page_trace([0, 1, 2], STORE))
    assert m.frames_free == 2
    m.check()


def test_replay_in_a_given_process(Machine):
    m = replaying(Machine, 8)
    p = m.spawn()
    a = p.mmap(2 * PS, "rw")
    p.write(a + PS, b"keep")
    d = m.replay(Trace([a, a + PS + 4], kind="SL", size=[4, 4]), process=p)
    assert (d["writes"], d["reads"]) == (1, 1)
    assert P.decode(p.pte(a)).dirty
    assert p.read(a, 4) == bytes(4)                # a trace carries no data
    assert p.read(a + PS, 4) == b"keep"
    assert p.state == "running"
    m.check()


def test_replay_segfault_sets_index_and_keeps_earlier_records(Machine):
    m = replaying(Machine, 8)
    p = m.spawn()
    a = p.mmap(2 * PS, "rw")
    hole = a + 16 * PS
    t = Trace([a, a + PS, hole + 5, a + 2], kind="SLSS", size=[1, 1, 1, 1])
    before = dict(m.stats)
    with pytest.raises(pymmu.SegmentationFault) as ei:
        m.replay(t, process=p)
    e = ei.value
    assert e.index == 2
    assert e.addr == hole + 5 and e.access == "write" and e.pid == p.pid
    assert P.decode(p.pte(a)).present and P.decode(p.pte(a)).dirty
    assert P.decode(p.pte(a + PS)).present
    assert m.stats["writes"] - before["writes"] == 1
    assert m.stats["reads"] - before["reads"] == 1
    assert p.state == "running"
    m.check()


def test_replay_protection_fault_sets_index(Machine):
    m = replaying(Machine, 8)
    p = m.spawn()
    r = p.mmap(PS, "r")
    w = p.mmap(PS, "rw")
    with pytest.raises(pymmu.ProtectionFault) as ei:
        m.replay(Trace([w, r, r + 8], kind="SLS"), process=p)
    assert ei.value.index == 2 and ei.value.access == "write" and ei.value.addr == r + 8
    with pytest.raises(pymmu.ProtectionFault) as ei:
        m.replay(Trace([w, w], kind="LI"), process=p)
    assert ei.value.index == 1 and ei.value.access == "execute"
    assert P.decode(p.pte(w)).present
    m.check()


def test_replay_needs_a_trace(Machine):
    m = replaying(Machine, 4)
    with pytest.raises(TypeError):
        m.replay([0x1000, 0x2000])
    assert m.frames_free == 4


@pytest.mark.parametrize("policy", list(SIMS))
def test_ls_trace_prefix_against_simulators(Machine, ls_trace, policy):
    """The first records of the trace, on both implementations."""
    t = ls_trace[:30000]
    pages = t.pages(PS).tolist()
    frames = 12
    expected = (sim_random(pages, frames, 7) if policy == "random"
                else SIMS[policy](pages, frames))
    m = replaying(Machine, frames, zero_page=False, swap_slots=256, policy=policy, seed=7)
    d = m.replay(t)
    assert faults(d) == expected
    assert m.frames_free == frames and m.swap_free == 256
    m.check()


def pages_of(addrs, sizes, page_size):
    out = []
    for a, n in zip(addrs, sizes):
        out.extend(range(a // page_size, (a + n - 1) // page_size + 1))
    return out


@given(recs=st.lists(st.tuples(st.integers(0, 12 * 4096 - 1), st.integers(1, 9000),
                               kinds_st), min_size=1, max_size=60),
       frames=st.integers(3, 8), page_size=st.sampled_from([512, 4096]),
       policy=st.sampled_from(list(SIMS)),
       tlb=st.sampled_from([0, 4, 64]))
@settings(deadline=None)
def test_crossing_records_against_simulators(Machine, recs, frames, page_size, policy, tlb):
    addrs = [0x200000 + a for a, _, _ in recs]
    sizes = [n for _, n, _ in recs]
    refs = pages_of(addrs, sizes, page_size)
    t = Trace(addrs, kind=[k for _, _, k in recs], size=sizes)
    assert t.pages(page_size).tolist() == refs
    expected = (sim_random(refs, frames, 3) if policy == "random"
                else SIMS[policy](refs, frames))
    m = replaying(Machine, frames, page_size=page_size, zero_page=False, policy=policy,
                  swap_slots=len(set(refs)) + 1, tlb_entries=tlb, seed=3)
    d = m.replay(t)
    assert faults(d) == expected
    assert d["fetches"] + d["reads"] + d["writes"] == len(recs)
    if tlb:
        assert d["tlb_hits"] + d["tlb_misses"] == len(refs)
    else:
        assert d["tlb_hits"] == d["tlb_misses"] == 0
    assert m.frames_free == frames and m.swap_free == m.swap_slots
    m.check()


def test_opt_replay_evicts_pages_the_trace_never_uses_first(Machine):
    m = replaying(Machine, 3, policy="opt", swap_slots=8, zero_page=False)
    p = m.spawn()
    a = p.mmap(8 * PS)
    p.write(a + 7 * PS, b"idle")                  # resident, never in the trace
    t = page_trace([0, 1, 2, 0, 1, 2, 0, 1, 2], STORE, base=a)
    d = m.replay(t, process=p)
    # 0 and 1 take the free frames, 2 evicts the idle page, then all hits
    assert faults(d) == 3
    assert P.decode(p.pte(a + 7 * PS)).swapped
    p.munmap(a, PS)                               # a free frame: no opt reclaim needed
    assert p.read(a + 7 * PS, 4) == b"idle"
    m.check()


def test_replay_modify_of_a_swapped_shared_page_takes_two_faults(Machine):
    m = replaying(Machine, 2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"both")
    c = p.fork()
    e = p.mmap(4 * PS)
    for i in range(3):
        p.write(e + i * PS, b"e")
    assert P.decode(p.pte(a)).swapped and P.decode(c.pte(a)).swapped
    d = m.replay(Trace([a], kind=MODIFY, size=4), process=p)
    assert (d["major_faults"], d["minor_faults"], d["swap_ins"]) == (1, 1, 1)
    assert d["writes"] == 1
    assert c.read(a, 4) == b"both" and p.read(a, 4) == b"both"
    assert p.translate(a) != c.translate(a)
    m.check()


def test_replay_out_of_memory_in_a_given_process(Machine):
    m = replaying(Machine, 2, zero_page=False)
    p = m.spawn()
    a = p.mmap(4 * PS)
    with pytest.raises(pymmu.OutOfMemory) as ei:
        m.replay(page_trace([0, 1, 0, 2, 3], STORE, base=a), process=p)
    assert ei.value.index == 3
    assert P.decode(p.pte(a)).present and P.decode(p.pte(a + PS)).present
    assert p.pte(a + 2 * PS) == 0
    assert m.stats["writes"] == 3
    m.check()


# --- lackey traces of other real programs, made here -----------------------------------

PROGRAMS = {"true": ["/bin/true"], "echo": ["/bin/echo", "hello"],
            "sort": ["sort", "/etc/passwd"]}


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def program_trace(request, tmp_path_factory):
    """A Valgrind lackey trace of a real program, recorded now (skipped without
    valgrind): the shared ls trace is one program; these are three more."""
    import shutil
    import subprocess

    argv = PROGRAMS[request.param]
    if shutil.which("valgrind") is None or shutil.which(argv[0]) is None:
        pytest.skip("needs valgrind and " + argv[0])
    path = tmp_path_factory.mktemp("lackey") / f"{request.param}.lackey"
    proc = subprocess.run(["valgrind", "--tool=lackey", "--trace-mem=yes",
                           f"--log-file={path}", *argv],
                          capture_output=True, timeout=300)
    if proc.returncode != 0 or not path.exists():
        pytest.skip(f"valgrind could not trace {argv}: {proc.stderr[-300:]!r}")
    from pymmu.traces import read_lackey
    trace = read_lackey(path)
    pages = trace.pages(PS)
    keep = np.ones(len(pages), bool)
    keep[1:] = pages[1:] != pages[:-1]       # a repeat of the page just used is a hit
    return request.param, trace, pages[keep].tolist()


@pytest.mark.parametrize("frames", [8, 48])
@pytest.mark.parametrize("policy", list(SIMS))
def test_real_program_traces_against_simulators(Machine, program_trace, policy, frames):
    """Fault counts of every policy on other programs' traces equal the independent
    simulators' (the acceptance check's shape: real traces, every policy, several
    frame counts)."""
    if "reference" in Machine.__module__:
        pytest.skip("hundreds of thousands of records are too slow for the reference")
    name, trace, refs = program_trace
    m = replaying(Machine, frames, zero_page=False, swap_slots=len(set(refs)) + 1,
                  policy=policy)
    d = m.replay(trace)
    assert faults(d) == SIMS[policy](refs, frames), name
    assert d["minor_faults"] == d["zero_fills"] == len(set(refs))
    assert m.frames_free == frames and m.swap_free == m.swap_slots
    m.check()


def test_replay_out_of_memory_names_the_failing_records_access(Machine):
    """The error of a record that runs out of memory carries that record's access
    kind, even when the records before it (same mapping) were of another kind."""
    m = replaying(Machine, 1, zero_page=False)
    p = m.spawn()
    base = p.mmap(4 * PS, "rwx")
    with pytest.raises(pymmu.OutOfMemory) as e:
        m.replay(Trace([base, base, base + PS], kind=[FETCH, FETCH, LOAD], size=1),
                 process=p)
    assert (e.value.addr, e.value.access, e.value.index) == (base + PS, "read", 2)


def test_replay_returns_only_what_its_own_records_counted(Machine):
    # Between the chunks of a streamed trace the machine is free, and another
    # process's accesses count in m.stats, not in the replay's delta.
    m = Machine(16)
    other = m.spawn()
    a = other.mmap(PS)
    p = m.spawn()
    p.mmap(4 * PS, addr=0)

    def chunks():
        yield Trace([0, PS], kind=LOAD, size=1)
        other.write(a, b"x")
        other.read(a, 1)
        yield Trace([2 * PS], kind=STORE, size=1)

    added = m.replay(chunks(), process=p)
    assert (added["reads"], added["writes"]) == (2, 1)
    assert (m.stats["reads"], m.stats["writes"]) == (3, 2)
    assert added["zero_fills"] == 1 and m.stats["zero_fills"] == 2
