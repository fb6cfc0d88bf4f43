"""The core's error paths roll back (issue 11 item 9): when the C heap runs out
for a page-table node, in fork (mm_fork), in a fault that needs a new table
(_settle) or in spawn (mm_new), the operation raises MemoryError and changes
nothing: the same page tables, refcounts, counters and processes, no frame
leaked, ``m.check()`` passing. ``pymmu._core._fail_node_allocation(n)`` makes the
n-th node allocation from now fail, as if memory ran out there.
"""
from __future__ import annotations

import numpy as np
import pytest

import pymmu
from pymmu import _core

PS = 4096


@pytest.fixture(autouse=True)
def no_failure_left():
    yield
    _core._fail_node_allocation(0)


def state(m):
    """Everything a failed operation must leave as it was."""
    procs = m.processes()
    # (a failed access still made its TLB lookup, as one that runs out of frames
    # does: that count is bookkeeping, like reference bits, section 4)
    stats = {k: v for k, v in m.stats.items() if not k.startswith("tlb_")}
    return (stats, m.frames_free, m.swap_free, m.page_table_pages,
            [(p.pid, p.state) for p in procs],
            [p.page_table().tobytes() for p in procs if p.state == "running"],
            m.frame_table().tobytes())


def spread(m, nregions=6):
    """A process with pages in several far-apart regions (many tables), some
    resident, some in swap, some on the zero page."""
    p = m.spawn()
    for i in range(nregions):
        a = p.mmap(3 * PS, addr=(1 << 30) * (i + 1))
        p.write(a, bytes([i + 1]) * 10)
        p.read(a + PS, 1)
    return p


@pytest.mark.parametrize("nth", [1, 2, 3, 5, 8, 13])
def test_fork_that_runs_out_of_memory_changes_nothing(nth):
    m = pymmu.Machine(4, swap_slots=16)
    p = spread(m)
    before = state(m)
    _core._fail_node_allocation(nth)
    try:
        p.fork()
    except MemoryError:
        assert state(m) == before
        m.check()
    else:                           # the fork needed fewer tables than nth
        _core._fail_node_allocation(0)
        assert nth > 3
    _core._fail_node_allocation(0)
    c = p.fork()                    # and then it works
    assert c.read((1 << 30), 1) == b"\x01"
    m.check()


def test_a_fork_needs_its_tables_before_it_changes_anything():
    # the first failure hits a table after others were made: all are given back
    m = pymmu.Machine(4, swap_slots=16)
    p = spread(m, nregions=8)
    tables = m.page_table_pages
    before = state(m)
    _core._fail_node_allocation(tables - 1)        # well into the copy
    with pytest.raises(MemoryError):
        p.fork()
    assert state(m) == before
    m.check()


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_fault_that_needs_a_table_and_runs_out_changes_nothing(nth):
    m = pymmu.Machine(2, swap_slots=4)
    p = m.spawn()
    a = p.mmap(PS, addr=1 << 20)
    p.write(a, b"x")
    far = p.mmap(PS, addr=1 << 40)                 # its tables do not exist yet
    for how in ("write", "read"):
        before = state(m)
        _core._fail_node_allocation(nth)
        try:
            p.write(far, b"y") if how == "write" else p.read(far, 1)
        except MemoryError:
            assert state(m) == before, how         # no frame leaked, no table added
            m.check()
        _core._fail_node_allocation(0)
    p.write(far, b"y")
    assert p.read(far, 1) == b"y" and p.read(a, 1) == b"x"
    m.check()


def test_replay_that_runs_out_of_memory_for_a_table_raises_with_index():
    from pymmu.traces import Trace

    m = pymmu.Machine(8, swap_slots=4)
    p = m.spawn()
    a = p.mmap(PS, addr=1 << 20)
    p.read(a, 1)                                   # its tables exist
    far = p.mmap(PS, addr=1 << 40)
    _core._fail_node_allocation(1)
    with pytest.raises(MemoryError) as info:
        m.replay(Trace([a, a + 8, far, a]), process=p)
    assert info.value.index == 2
    assert p.translate(far) is None and p.stats["reads"] == 3
    m.check()


def test_spawn_that_runs_out_of_memory_changes_nothing():
    m = pymmu.Machine(4)
    m.spawn()
    before = state(m)
    _core._fail_node_allocation(1)
    with pytest.raises(MemoryError):
        m.spawn()
    assert state(m) == before
    m.check()


def test_the_injection_hook_checks_its_argument():
    with pytest.raises(ValueError):
        _core._fail_node_allocation(-1)


def test_the_core_refuses_opt_keys_out_of_range():
    # The core never trusts a look-ahead: keys outside 0..len are refused before
    # anything runs, and one too short is never read past its end.
    m = pymmu.Machine(2, swap_slots=8, policy="opt")
    p = m.spawn()
    a = p.mmap(4 * PS)
    addr = np.array([a, a + PS, a + 2 * PS, a], np.uint64)
    kind = np.ones(4, np.uint8)
    size = np.ones(4, np.uint32)
    before = state(m)
    for bad in ([-5, 1, 2, 3], [1, 2, 99, 4]):
        with pytest.raises(ValueError, match="next_use"):
            m._core.replay(p._mm, p.pid, addr, kind, size, np.array(bad, np.int64), p._stats)
        assert state(m) == before
    assert m._core.replay(p._mm, p.pid, addr, kind, size, np.array([1, 2], np.int64),
                          p._stats) is None          # short: the rest count as never used
    m.check()


def test_the_python_layers_counts_go_through_the_core():
    # Core.count: the machine's and the process's counters (and a delta) move
    # together; a counter index out of range or a negative count is refused
    # before anything moves.
    from pymmu.tables import COUNTERS

    m = pymmu.Machine(2)
    p = m.spawn()
    i = COUNTERS.index("forks")
    delta = np.zeros(len(COUNTERS), np.int64)
    m._core.count(i, 3, p._stats, delta)
    m._core.count(i, 1, p._stats)
    assert m.stats["forks"] == p.stats["forks"] == 4 and delta[i] == 3
    for args, error in (((len(COUNTERS), 1), IndexError), ((-1, 1), IndexError),
                        ((i, -1), ValueError)):
        with pytest.raises(error):
            m._core.count(*args, p._stats)
    with pytest.raises(ValueError, match="contiguous int64"):
        m._core.count(i, 1, np.zeros(3, np.int64))
    assert m.stats["forks"] == p.stats["forks"] == 4
    assert sum(m.stats.values()) == sum(p.stats.values()) == 4


def test_address_space_ids_are_reused():
    # A long-lived machine's per-address-space tables stay as big as the most
    # spaces alive at once, however many processes come and go (issue 11 item 5).
    m = pymmu.Machine(4, swap_slots=8)
    keep = m.spawn()
    keep.write(keep.mmap(PS), b"k")
    for i in range(3000):
        p = m.spawn()
        p.write(p.mmap(PS), bytes([i % 256]))
        c = p.fork()
        c.exit()
        p.wait(c)
        p.exit()
    assert m._core.mm_next <= 8
    assert keep.read(0x10000, 1) == b"k"
    m.check()


def test_a_family_name_is_not_reused_while_the_family_lives():
    # Frames' reverse maps name a fork family by its first member's id: a new
    # process must not take the id of an exited founder whose children live on.
    m = pymmu.Machine(2, swap_slots=16)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in range(4):
        p.write(a + i * PS, bytes([i + 1]))
    c = p.fork()                                   # p founded the family
    p.exit()                                       # its id stays taken
    q = m.spawn()                                  # a new family
    b = q.mmap(4 * PS)
    for i in range(4):
        q.write(b + i * PS, bytes([0x10 + i]))     # evictions through both families
    for i in range(4):
        assert c.read(a + i * PS, 1) == bytes([i + 1])
        assert q.read(b + i * PS, 1) == bytes([0x10 + i])
    m.check()
    c.exit()
    r = m.spawn()                                  # now the founder's id is free again
    r.write(r.mmap(PS), b"r")
    assert q.read(b, 1) == b"\x10"
    m.check()


@pytest.mark.parametrize("nth", [1, 2, 5, 9])
def test_a_snapshot_restore_that_runs_out_of_memory_leaves_the_original(nth):
    # the restore's tables are made by pymmu._snapshot, which counts toward the
    # same failure point as the core's own allocations
    import copy

    m = pymmu.Machine(4, swap_slots=16)
    p = spread(m)
    before = state(m)
    _core._fail_node_allocation(nth)
    try:
        copy.deepcopy(m)
    except MemoryError:
        pass
    else:
        pytest.fail("a restore with this many tables must have hit the failure")
    finally:
        _core._fail_node_allocation(0)
    assert state(m) == before
    m.check()
    m2, p2 = copy.deepcopy([m, p])
    assert p2.read(1 << 30, 1) == b"\x01"
    m2.check()
