"""Introspection for courses and embedders: m.processes(), m.frame_table(),
m.clock_hand and p.clear_accessed().

DESIGN.md section 11 (with sections 4-6 for the states it shows). Every test goes
through the public API and runs on both implementations (the ``Machine``
fixture); the expected values are worked out by hand from the rules.
"""
from __future__ import annotations

import pytest

import pymmu
from pymmu import pte as P

PS = 4096

FIELDS = ("pfn", "state", "refcount", "kind", "pid", "vaddr", "accessed", "dirty",
          "swap_slot")


def pfn_of(p, addr):
    phys = p.translate(addr)
    assert phys is not None, f"{addr:#x} is not present"
    return phys // PS


def row(m, pfn):
    """One frame_table() row as a dict of plain Python values."""
    r = m.frame_table()[pfn]
    return {f: r[f].item() for f in FIELDS}


FREE_ZEROED = dict(state="free_zeroed", refcount=0, kind="", pid=-1, vaddr=0,
                   accessed=False, dirty=False, swap_slot=-1)


def expect(pfn, **kw):
    return {"pfn": pfn, **kw}


# --- m.processes() ---------------------------------------------------------------


def test_processes_lists_every_process_not_exited_by_pid(Machine):
    m = Machine(4)
    assert m.processes() == []
    p = m.spawn()                       # 1
    c = p.fork()                        # 2, will be a zombie
    q = m.spawn()                       # 3, parentless: exited at once when it exits
    c.exit(3)
    q.exit()
    v = p.vfork()                       # 4; p is suspended
    procs = m.processes()
    assert isinstance(procs, list)
    assert [(x.pid, x.state) for x in procs] == [
        (p.pid, "suspended"), (c.pid, "zombie"), (v.pid, "running")]
    v.exit()                            # p resumes; v is a zombie
    assert p.wait(c) == 3               # c exited
    assert [(x.pid, x.state) for x in m.processes()] == [
        (p.pid, "running"), (v.pid, "zombie")]
    p.exit()                            # parentless: exited, and v is reaped
    assert m.processes() == []


# --- m.frame_table() -------------------------------------------------------------


def test_frame_table_of_a_fresh_machine_is_all_free_zeroed(Machine):
    m = Machine(5)
    t = m.frame_table()
    assert t.dtype.names == FIELDS
    assert len(t) == m.frames == 5
    assert t["pfn"].tolist() == [0, 1, 2, 3, 4]
    for pfn in range(5):
        assert row(m, pfn) == expect(pfn, **FREE_ZEROED)


def test_frame_table_after_writes_reads_and_munmap(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x")                    # pfn 0, lowest first
    p.write(a + 2 * PS, b"y")           # pfn 1
    assert p.read(a + PS, 1) == b"\0"   # the zero page: no user frame
    assert row(m, 0) == expect(0, state="used", refcount=1, kind="anon", pid=p.pid,
                               vaddr=a, accessed=True, dirty=True, swap_slot=-1)
    assert row(m, 1) == expect(1, state="used", refcount=1, kind="anon", pid=p.pid,
                               vaddr=a + 2 * PS, accessed=True, dirty=True, swap_slot=-1)
    assert row(m, 2) == expect(2, **FREE_ZEROED)
    p.munmap(a, PS)                     # frame 0 goes back dirty
    assert row(m, 0) == expect(0, state="free_dirty", refcount=0, kind="", pid=-1,
                               vaddr=0, accessed=False, dirty=False, swap_slot=-1)
    assert m.idle() == 1
    assert row(m, 0) == expect(0, **FREE_ZEROED)


def test_frame_table_accessed_and_dirty_follow_the_ptes(Machine):
    m = Machine(4)
    p = m.spawn()
    img = pymmu.Image([pymmu.Segment(0x400000, "r", b"code" * 10)], stack_size=0)
    p.exec(img)
    assert p.read(0x400000, 4) == b"code"      # a clean file page
    pfn = pfn_of(p, 0x400000)
    assert row(m, pfn) == expect(pfn, state="used", refcount=1, kind="file", pid=p.pid,
                                 vaddr=0x400000, accessed=True, dirty=False, swap_slot=-1)
    assert p.clear_accessed() == 1
    r = row(m, pfn)
    assert (r["accessed"], r["dirty"]) == (False, False)


def test_frame_table_file_page_written_first_is_anon(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(pymmu.Image([pymmu.Segment(0x400000, "rw", b"data" * 10),
                        pymmu.Segment(0x500000, "rw", b"more")], stack_size=0))
    p.write(0x400000, b"D")                    # file read, mapped writable: private
    assert p.read(0x500000, 4) == b"more"      # file read, clean
    assert row(m, pfn_of(p, 0x400000))["kind"] == "anon"
    assert row(m, pfn_of(p, 0x500000))["kind"] == "file"
    p.write(0x500000, b"M")                    # COW reuse: the frame becomes private
    assert row(m, pfn_of(p, 0x500000))["kind"] == "anon"


def test_frame_table_after_fork_and_a_cow_copy(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"A")
    p.write(a + PS, b"B")
    c = p.fork()
    for pfn, vaddr in ((0, a), (1, a + PS)):
        # The parent keeps A and D; the child's copies have A clear.
        assert row(m, pfn) == expect(pfn, state="used", refcount=2, kind="anon",
                                     pid=p.pid, vaddr=vaddr, accessed=True, dirty=True,
                                     swap_slot=-1)
    c.write(a + PS, b"b")                      # COW copy into pfn 2
    assert pfn_of(c, a + PS) == 2
    assert row(m, 2) == expect(2, state="used", refcount=1, kind="anon", pid=c.pid,
                               vaddr=a + PS, accessed=True, dirty=True, swap_slot=-1)
    assert row(m, 1)["refcount"] == 1 and row(m, 1)["pid"] == p.pid
    # The lowest pid that maps it: once the parent is gone, the child.
    p.exit()
    assert row(m, 0) == expect(0, state="used", refcount=1, kind="anon", pid=c.pid,
                               vaddr=a, accessed=False, dirty=True, swap_slot=-1)
    assert row(m, 1)["state"] == "free_dirty"


def test_frame_table_vfork_child_pages_name_the_parent(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"A")
    v = p.vfork()
    v.write(a + PS, b"V")                      # lands in the parent's space
    assert row(m, 0)["pid"] == p.pid
    assert row(m, 1)["pid"] == p.pid and row(m, 1)["vaddr"] == a + PS


def test_frame_table_shared_mapping(Machine):
    m = Machine(4)
    p = m.spawn()
    s = p.mmap(2 * PS, shared=True)
    c = p.fork()
    c.write(s + PS, b"S")                      # first touch after the fork: pfn 0
    assert p.read(s + PS, 1) == b"S"
    assert row(m, 0) == expect(0, state="used", refcount=2, kind="shared", pid=p.pid,
                               vaddr=s + PS, accessed=True, dirty=True, swap_slot=-1)
    # A shared-object page no PTE maps: resident, used, refcount 0, no mapper.
    q = m.spawn()
    t = q.mmap(PS, shared=True)
    d = q.fork()                               # d keeps the object alive, untouched
    q.write(t, b"T")                           # pfn 1
    q.munmap(t, PS)
    assert row(m, 1) == expect(1, state="used", refcount=0, kind="shared", pid=-1,
                               vaddr=0, accessed=False, dirty=False, swap_slot=-1)
    assert d.read(t, 1) == b"T"
    assert row(m, 1)["pid"] == d.pid and row(m, 1)["refcount"] == 1


def test_frame_table_swap_cache_frame_has_its_slot(Machine):
    # Frames 2: page A, shared by two forks, is swapped to slot 0; the parent's read
    # brings it back into the swap cache (the children's entries still name slot 0).
    m = Machine(2, swap_slots=4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"A")                           # pfn 0
    c1, c2 = p.fork(), p.fork()
    p.write(a + PS, b"B")                      # pfn 1
    p.write(a + 2 * PS, b"C")                  # evicts A (pfn 0) to slot 0
    assert P.decode(p.pte(a)).swap_slot == 0
    assert row(m, 0)["swap_slot"] == -1        # C: a fresh page
    assert p.read(a, 1) == b"A"                # evicts B to slot 1, A swapped in
    pfn = pfn_of(p, a)
    assert pfn == 1
    assert row(m, pfn) == expect(pfn, state="used", refcount=1, kind="anon", pid=p.pid,
                                 vaddr=a, accessed=True, dirty=False, swap_slot=0)
    assert c1.read(a, 1) == b"A"               # a swap-cache hit: c1 maps it too
    assert row(m, pfn) == expect(pfn, state="used", refcount=2, kind="anon", pid=p.pid,
                                 vaddr=a, accessed=True, dirty=False, swap_slot=0)
    assert row(m, 0)["swap_slot"] == -1
    m.check()


# --- m.clock_hand ----------------------------------------------------------------


def test_clock_hand_moves_one_past_each_victim(Machine):
    m = Machine(3, swap_slots=8)
    assert m.clock_hand == 0
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(3):
        p.write(a + i * PS, b"x")              # pfns 0..2, no reclaim
    assert m.clock_hand == 0
    p.write(a + 3 * PS, b"x")                  # clears 0,1,2, wraps, evicts pfn 0
    assert m.clock_hand == 1
    p.write(a + 4 * PS, b"x")                  # pfn 1 is unreferenced: victim
    assert m.clock_hand == 2
    p.write(a + 5 * PS, b"x")                  # pfn 2: victim; the hand wraps
    assert m.clock_hand == 0
    assert m.stats["evictions"] == 3


def test_clock_hand_is_none_for_other_policies(Machine):
    for policy in ("fifo", "lru", "random"):
        assert Machine(2, policy=policy).clock_hand is None


def test_clear_accessed_steers_the_clock(Machine):
    m = Machine(3, swap_slots=8)
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(3):
        p.write(a + i * PS, b"x")
    assert p.clear_accessed() == 3
    p.read(a, 1)                               # only pfn 0 is referenced now
    p.write(a + 3 * PS, b"x")                  # pfn 0 gets a second chance, pfn 1 goes
    assert m.clock_hand == 2
    assert P.decode(p.pte(a + PS)).swapped
    assert pfn_of(p, a + 3 * PS) == 1


# --- p.clear_accessed() ----------------------------------------------------------


def test_clear_accessed_counts_and_clears_the_a_bits(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x")
    p.write(a + PS, b"y")
    p.read(a + 2 * PS, 1)                      # a zero-page PTE is present too
    for addr in (a, a + PS, a + 2 * PS):
        assert p.pte(addr) & P.ACCESSED
    assert p.clear_accessed() == 3
    for addr in (a, a + PS, a + 2 * PS):
        assert not p.pte(addr) & P.ACCESSED
    assert p.pte(a) & P.DIRTY                  # only A is cleared
    assert p.clear_accessed() == 0
    p.read(a + PS, 1)
    assert p.pte(a + PS) & P.ACCESSED
    assert p.clear_accessed() == 1
    m.check()


def test_clear_accessed_drops_the_tlb_entries(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x")
    p.write(a + PS, b"y")
    p.read(a, 1)
    before = m.stats
    p.read(a, 1)
    assert m.stats["tlb_hits"] - before["tlb_hits"] == 1
    p.clear_accessed()
    before = m.stats
    p.read(a, 1)                               # a miss: the entry was dropped ...
    p.read(a + PS, 1)
    after = m.stats
    assert after["tlb_misses"] - before["tlb_misses"] == 2
    assert after["tlb_hits"] == before["tlb_hits"]
    assert p.pte(a) & P.ACCESSED               # ... and the touch sets A again
    assert after["minor_faults"] == before["minor_faults"]


def test_clear_accessed_skips_swap_entries(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x")
    p.write(a + PS, b"y")                      # a is now a swap entry
    assert P.decode(p.pte(a)).swapped
    pte = p.pte(a)
    assert p.clear_accessed() == 1
    assert p.pte(a) == pte


def test_clear_accessed_after_fork_child_has_nothing_set(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x")
    p.write(a + PS, b"y")
    c = p.fork()
    assert c.clear_accessed() == 0             # fork clears A in the child's copies
    assert p.clear_accessed() == 2


def test_clear_accessed_process_states(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x")
    v = p.vfork()
    with pytest.raises(pymmu.ProcessStateError):
        p.clear_accessed()                     # suspended: its space is lent out
    assert v.clear_accessed() == 1             # the child clears the borrowed space
    assert not p.pte(a) & P.ACCESSED           # (introspection of p still works)
    v.exit()
    assert p.clear_accessed() == 0
    c = p.fork()
    c.exit()
    with pytest.raises(pymmu.ProcessStateError):
        c.clear_accessed()                     # zombie
    p.wait(c)
    with pytest.raises(pymmu.ProcessStateError):
        c.clear_accessed()                     # exited
