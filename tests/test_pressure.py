"""Memory pressure: reclaim policies, swap, the swap cache and OutOfMemory.

DESIGN.md sections 4 (rule 6), 6 and 7; semantics.md section 5 (swap entries) and
section 8 (reclaim). Every test goes through the public API and runs on both
implementations (the ``Machine`` fixture). Expected values are worked out by hand
from the rules, or by a small simulator written here (the splitmix64 generator of
the random policy, a byte-level model of a fork family), never by running pymmu.
"""
from __future__ import annotations

import random

import pytest

import pymmu
from pymmu import pte as P

PS = 4096


def pfn_of(p, addr):
    phys = p.translate(addr)
    assert phys is not None, f"{addr:#x} is not present"
    return phys // PS


def dec(p, addr):
    return P.decode(p.pte(addr))


def swapped_slot(p, addr):
    d = dec(p, addr)
    assert d.swapped, f"{addr:#x} is not a swap entry: {P.describe(p.pte(addr))}"
    return d.swap_slot


def faults(m):
    s = m.stats
    return s["minor_faults"] + s["major_faults"]


def snapshot(m):
    return dict(m.stats)


def delta(m, before):
    return {k: v - before[k] for k, v in m.stats.items() if v != before[k]}


def all_free(m):
    return m.frames_free == m.frames and m.swap_free == m.swap_slots


# --- clock (semantics.md section 8) --------------------------------------------------


def test_clock_hand_starts_at_pfn0_and_clears_all_accessed_bits(Machine):
    m = Machine(4, swap_slots=8)
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(4):
        p.write(a + i * PS, bytes([i + 1]))
    assert [pfn_of(p, a + i * PS) for i in range(4)] == [0, 1, 2, 3]
    assert all(dec(p, a + i * PS).accessed for i in range(4))
    assert m.stats["evictions"] == 0
    # No frame free: the hand walks 0,1,2,3 clearing A, then 0 is the victim.
    p.write(a + 4 * PS, b"\x05")
    assert m.stats["evictions"] == 1 and m.stats["swap_outs"] == 1
    assert swapped_slot(p, a) == 0
    assert pfn_of(p, a + 4 * PS) == 0
    assert dec(p, a + 4 * PS).accessed          # a page just mapped is referenced
    for i in (1, 2, 3):
        assert not dec(p, a + i * PS).accessed, i
    # The hand stopped at pfn 1. Re-reference page 1 (pfn 1): it gets a second
    # chance, pfn 2 (page 2) is the next victim, and the hand stops at 3.
    p.read(a + 1 * PS, 1)
    assert dec(p, a + PS).accessed
    p.write(a + 5 * PS, b"\x06")
    assert swapped_slot(p, a + 2 * PS) == 1
    assert pfn_of(p, a + 5 * PS) == 2
    assert not dec(p, a + PS).accessed
    # Hand at 3: page 3 (pfn 3, A clear since the first sweep) goes next.
    p.write(a + 6 * PS, b"\x07")
    assert swapped_slot(p, a + 3 * PS) == 2
    assert pfn_of(p, a + 6 * PS) == 3
    # Hand at 0: pfn 0 (page 4) is referenced -> cleared; pfn 1 (page 1, cleared by
    # the previous sweep) is the victim.
    p.write(a + 7 * PS, b"\x08")
    assert swapped_slot(p, a + 1 * PS) == 3
    assert pfn_of(p, a + 7 * PS) == 1
    assert not dec(p, a + 4 * PS).accessed
    for i in range(8):
        assert p.read(a + i * PS, 1) == bytes([i + 1])
    m.check()
    p.exit()
    assert all_free(m)


def test_clock_second_chance_clears_accessed_in_every_mapper(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"A")
    p.write(a + PS, b"B")
    c = p.fork()
    assert not dec(c, a).accessed                 # fork clears A in the child's copy
    c.read(a, 1)
    c.read(a + PS, 1)
    for q in (p, c):
        assert dec(q, a).accessed and dec(q, a + PS).accessed
    p.write(a + 2 * PS, b"C")                     # hand 0: clear, 1: clear, 0: victim
    for q in (p, c):
        assert swapped_slot(q, a) == 0            # both PTEs of the frame
        assert not dec(q, a + PS).accessed        # cleared in both mappers
        assert q.read(a + PS, 1) == b"B"
    assert pfn_of(p, a + 2 * PS) == 0
    assert m.swap_free == 7
    assert m.stats["swap_outs"] == 1
    m.check()
    for q in (c, p):
        assert q.read(a, 1) == b"A"
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)
    m.check()


def test_clock_scans_only_when_no_frame_is_free(Machine):
    m = Machine(3, swap_slots=8)
    p = m.spawn()
    a = p.mmap(6 * PS)
    for i in range(3):
        p.write(a + i * PS, bytes([i + 1]))
    p.write(a + 3 * PS, b"\x04")                  # sweep clears 0,1,2; victim pfn 0
    assert swapped_slot(p, a) == 0
    p.munmap(a + PS, PS)                          # pfn 1 is free again
    assert m.frames_free == 1
    assert not dec(p, a + 2 * PS).accessed
    assert dec(p, a + 3 * PS).accessed
    before = snapshot(m)
    p.write(a + 4 * PS, b"\x05")                  # a free frame: no scan at all
    assert delta(m, before).get("evictions", 0) == 0
    assert pfn_of(p, a + 4 * PS) == 1
    assert dec(p, a + 3 * PS).accessed            # untouched: the hand did not move
    # Hand is still at pfn 1: page 4 (referenced) is cleared, pfn 2 (page 2) is
    # the victim; the hand stops at 0.
    p.write(a + 5 * PS, b"\x06")
    assert swapped_slot(p, a + 2 * PS) == 1
    assert pfn_of(p, a + 5 * PS) == 2
    assert not dec(p, a + 4 * PS).accessed
    assert dec(p, a + 3 * PS).accessed            # pfn 0 not reached by this sweep
    # The hand wrapped to 0: pfn 0 (page 3) is cleared, pfn 1 (page 4) goes.
    p.mmap(PS, addr=a + PS)                       # fill the hole again
    p.write(a + PS, b"\x07")
    assert swapped_slot(p, a + 4 * PS) == 2
    assert pfn_of(p, a + PS) == 1
    assert not dec(p, a + 3 * PS).accessed
    m.check()
    p.exit()
    assert all_free(m)


def test_clock_passes_over_pinned_frames(Machine):
    # The page of a call that is already touched is pinned: the hand passes over
    # it untouched (its A bit stays set) and it is never the victim.
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(2 * PS)
    b = p.mmap(PS, addr=0x100000)
    p.write(a + PS - 1, b"x")                     # page a -> pfn 0
    p.write(b, b"b")                              # page b -> pfn 1
    assert (pfn_of(p, a), pfn_of(p, b)) == (0, 1)
    # One write over pages a (resident, pinned once touched) and a+PS (needs a frame):
    # hand 0 pinned -> skip, 1 referenced -> clear, 0 skip, 1 victim.
    p.write(a + PS - 1, b"yz")
    assert swapped_slot(p, b) == 0
    assert (pfn_of(p, a), pfn_of(p, a + PS)) == (0, 1)
    assert dec(p, a).accessed
    assert p.read(a + PS - 1, 2) == b"yz"
    assert p.read(b, 1) == b"b"
    m.check()
    p.exit()
    assert all_free(m)


def test_clock_out_of_memory_when_every_frame_is_pinned(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"\x11" * 10)
    before_pte = [p.pte(a + i * PS) & ~P.ACCESSED for i in range(3)]
    writes = m.stats["writes"]
    # A write over 3 pages with 2 frames: the third page finds both frames pinned.
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + PS - 1, b"\xff" * (PS + 2))
    assert m.stats["writes"] == writes
    m.check()
    for i in range(3):                            # nothing written anywhere
        assert p.read(a + i * PS, PS) == (b"\x11" * 10 + bytes(PS - 10) if i == 0
                                          else bytes(PS)), i
    assert p.pte(a) & ~P.ACCESSED == before_pte[0]
    p.write(a + PS - 1, b"\xff\xff")              # two pages fit
    assert p.read(a + PS - 1, 2) == b"\xff\xff"
    m.check()
    p.exit()
    assert all_free(m)


# --- fifo, lru, random, opt ---------------------------------------------------------


@pytest.mark.parametrize("policy, victims", [
    ("fifo", [0, 1, 2]),      # loaded earliest, re-use does not matter
    ("lru", [1, 2, 0]),       # page 0 was read after 1 and 2
])
def test_fifo_and_lru_victims(Machine, policy, victims):
    m = Machine(3, swap_slots=8, policy=policy)
    p = m.spawn()
    a = p.mmap(8 * PS)
    for i in range(3):
        p.write(a + i * PS, bytes([i + 1]))
    p.read(a, 1)                                  # touch page 0 again
    for k, v in enumerate(victims):
        p.write(a + (3 + k) * PS, bytes([4 + k]))
        assert swapped_slot(p, a + v * PS) == k, (policy, k)
        for w in victims[k + 1:]:
            assert dec(p, a + w * PS).present
    for i in range(6):
        assert p.read(a + i * PS, 1) == bytes([i + 1])
    m.check()
    p.exit()
    assert all_free(m)


def test_fifo_swap_in_is_a_new_load(Machine):
    m = Machine(2, swap_slots=8, policy="fifo")
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"0")
    p.write(a + PS, b"1")
    p.write(a + 2 * PS, b"2")                     # evicts page 0 (earliest)
    assert dec(p, a).swapped
    assert p.read(a, 1) == b"0"                   # page 0 loaded again: evicts page 1
    assert dec(p, a + PS).swapped
    p.read(a + 2 * PS, 1)
    assert p.read(a + PS, 1) == b"1"              # evicts page 2, not the newer page 0
    assert dec(p, a + 2 * PS).swapped and dec(p, a).present
    m.check()
    p.exit()
    assert all_free(m)


def _splitmix64(seed):
    state = seed & (2**64 - 1)
    while True:
        state = (state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        yield z ^ (z >> 31)


def _random_victims(Machine, seed, frames=4, pages=20):
    """Evicted page indices, checked against splitmix64 at every step."""
    m = Machine(frames, swap_slots=64, policy="random", seed=seed)
    p = m.spawn()
    a = p.mmap(pages * PS)
    rng = _splitmix64(seed)
    in_frame = {}
    out = []
    for i in range(pages):
        p.write(a + i * PS, bytes([i + 1]))
        if i >= frames:
            # every frame is evictable (anon, a slot is free): victim = next() % frames
            victim_pfn = next(rng) % frames
            victim = in_frame[victim_pfn]
            assert dec(p, a + victim * PS).swapped, (seed, i, victim)
            out.append(victim)
        pfn = pfn_of(p, a + i * PS)
        if i >= frames:
            assert pfn == victim_pfn
        in_frame[pfn] = i
    for i in range(pages):
        assert p.read(a + i * PS, 1) == bytes([i + 1])
    m.check()
    return out


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 + 7])
def test_random_policy_follows_splitmix64(Machine, seed):
    first = _random_victims(Machine, seed)
    assert _random_victims(Machine, seed) == first          # same seed, same victims


def test_random_policy_seed_matters(Machine):
    runs = {tuple(_random_victims(Machine, s, pages=12)) for s in range(4)}
    assert len(runs) > 1


def test_opt_outside_replay_is_a_value_error(Machine):
    m = Machine(2, swap_slots=8, policy="opt")
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"a")                              # free frames: no reclaim needed
    p.write(a + PS, b"b")
    with pytest.raises(ValueError, match="(?i)replay|opt"):
        p.write(a + 2 * PS, b"c")
    assert p.read(a, 1) == b"a" and p.read(a + PS, 1) == b"b"
    assert p.pte(a + 2 * PS) == 0
    m.check()


# --- swap ---------------------------------------------------------------------------


def test_eviction_writes_a_slot_and_swap_in_is_a_major_fault(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    secret = bytes(range(256)) * (PS // 256)
    p.write(a, secret)
    before = snapshot(m)
    p.write(a + PS, b"B")
    d = delta(m, before)
    assert d["evictions"] == 1 and d["swap_outs"] == 1
    assert swapped_slot(p, a) == 0
    assert p.translate(a) is None
    assert m.swap_free == 3
    before = snapshot(m)
    assert p.read(a, PS) == secret
    d = delta(m, before)
    assert d["major_faults"] == 1 and d["swap_ins"] == 1
    assert d.get("minor_faults", 0) == 0
    # the frame came from evicting page B into the lowest free slot (0 was still A's)
    assert swapped_slot(p, a + PS) == 1
    # A came back clean by a read: it keeps slot 0 in the swap cache (rule 6); B took 1
    assert m.swap_free == 2
    assert p.read(a + PS, 1) == b"B"
    m.check()
    p.exit()
    assert all_free(m)


def test_swap_in_by_only_user_is_writable_at_once(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"first")
    p.write(a + PS, b"B")
    assert dec(p, a).swapped
    assert p.read(a, 5) == b"first"               # read fault, sole user
    d = dec(p, a)
    assert d.present and d.writable and not d.cow
    before = faults(m)
    p.write(a, b"again")
    assert faults(m) == before                    # no second fault
    assert p.read(a, 5) == b"again"
    m.check()


def test_fork_family_ptes_all_become_swap_entries(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"family")
    c1 = p.fork()
    c2 = c1.fork()                                # grandchild: same family
    pfn = pfn_of(p, a)
    assert m.refcount(pfn) == 3
    p.write(a + PS, b"B")
    p.write(a + 2 * PS, b"C")                     # clock: pfn 0 (the shared page) goes
    slots = {swapped_slot(q, a) for q in (p, c1, c2)}
    assert slots == {0}
    assert m.stats["swap_outs"] == 1
    assert pfn_of(p, a + 2 * PS) == pfn and m.refcount(pfn) == 1
    m.check()
    for q in (c2, c1, p):                         # one swap-in, then swap-cache hits
        assert q.read(a, 6) == b"family"
    assert m.stats["swap_ins"] == 1 and m.stats["swap_cache_hits"] == 2
    assert p.translate(a) == c1.translate(a) == c2.translate(a)
    assert m.refcount(pfn_of(p, a)) == 3
    m.check()
    c2.exit()
    c1.wait(c2)
    c1.exit()
    p.wait(c1)
    p.exit()
    assert all_free(m)
    m.check()


def test_swap_cache_sharers_keep_one_frame(Machine):
    m = Machine(3, swap_slots=8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"shared bytes")
    c = p.fork()
    b = p.mmap(2 * PS)
    p.write(b, b"B")
    p.write(b + PS, b"C")
    d = p.mmap(PS)
    p.write(d, b"D")                              # clock sweep: pfn 0 (page a) evicted
    assert swapped_slot(p, a) == swapped_slot(c, a) == 0
    assert m.swap_free == 7
    before = snapshot(m)
    assert p.read(a, 12) == b"shared bytes"       # first reader: swap-in, major
    dd = delta(m, before)
    assert dd["major_faults"] == 1 and dd["swap_ins"] == 1
    assert dd.get("swap_cache_hits", 0) == 0
    pp = dec(p, a)
    assert pp.present and not pp.writable and pp.cow   # sharers remain: read-only + cow
    assert swapped_slot(c, a) == 0
    before = snapshot(m)
    assert c.read(a, 12) == b"shared bytes"       # second reader: the swap cache
    dd = delta(m, before)
    assert dd["minor_faults"] == 1 and dd["swap_cache_hits"] == 1
    assert dd.get("major_faults", 0) == 0 and dd.get("swap_ins", 0) == 0
    assert p.translate(a) == c.translate(a)
    pfn = pfn_of(p, a)
    assert m.refcount(pfn) == 2
    # slot 0's count reached 0 but the frame caches it (rule 6); slot 1 holds page b
    assert m.swap_free == 6
    cc = dec(c, a)
    assert cc.present and not cc.writable and cc.cow
    m.check()
    # Writes now copy: each process ends up with its own bytes.
    c.write(a, b"child")
    assert p.read(a, 12) == b"shared bytes"
    assert c.read(a, 12) == b"childd bytes"
    m.check()
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)


def test_clean_swap_cache_page_is_dropped_without_swap_out(Machine):
    m = Machine(3, swap_slots=16)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"cached")
    c = p.fork()
    c2 = p.fork()                                 # keeps the swap entry: slot stays in use
    e = p.mmap(16 * PS)
    k = 0
    while not dec(p, a).swapped:                  # push page a out
        p.write(e + k * PS, b"x")
        k += 1
    slot = swapped_slot(p, a)
    assert swapped_slot(c, a) == swapped_slot(c2, a) == slot
    assert p.read(a, 6) == b"cached"              # into the swap cache (c2 still names slot)
    assert c.read(a, 6) == b"cached"
    assert p.translate(a) == c.translate(a)
    assert swapped_slot(c2, a) == slot
    # Keep writing new pages: each needs one eviction. The one that takes the
    # clean swap-cache page must not write swap.
    seen = False
    while k < 16:
        before = snapshot(m)
        p.write(e + k * PS, b"y")
        k += 1
        d = delta(m, before)
        assert d["evictions"] == 1
        if dec(p, a).swapped:
            assert d.get("swap_outs", 0) == 0, "clean swap-cache page written again"
            assert swapped_slot(p, a) == swapped_slot(c, a) == swapped_slot(c2, a) == slot
            seen = True
            break
        assert d["swap_outs"] == 1
    assert seen
    m.check()
    assert p.read(a, 6) == c.read(a, 6) == c2.read(a, 6) == b"cached"
    for q in (c, c2):
        q.exit()
        p.wait(q)
    p.exit()
    assert all_free(m)


def test_shared_mapping_survives_eviction_across_fork(Machine):
    m = Machine(2, swap_slots=16)
    p = m.spawn()
    s = p.mmap(2 * PS, shared=True)
    p.write(s, b"parent0")
    p.write(s + PS, b"parent1")
    c = p.fork()
    c.write(s + PS, b"child1")
    assert p.read(s + PS, 7) == b"child11"
    e = p.mmap(4 * PS)
    for i in range(4):                            # both shared frames get evicted
        p.write(e + i * PS, bytes([i]))
    assert p.translate(s) is None and p.translate(s + PS) is None
    assert c.translate(s) is None and c.translate(s + PS) is None
    assert m.stats["swap_outs"] >= 2
    m.check()
    assert c.read(s, 7) == b"parent0"
    assert p.read(s + PS, 7) == b"child11"
    c.write(s, b"CHILD")                          # still one object for both
    assert p.read(s, 7) == b"CHILDt0"
    if p.translate(s) is not None and c.translate(s) is not None:
        assert p.translate(s) == c.translate(s)
    for i in range(4):
        assert p.read(e + i * PS, 1) == bytes([i])
    m.check()
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)
    m.check()


def _state(m, procs_pages):
    return (m.frames_free, m.swap_free,
            [(q.pte(x) & ~P.ACCESSED, q.read(x, PS) if q.translate(x) is not None else None)
             for q, pages in procs_pages for x in pages])


def test_out_of_memory_without_swap_changes_nothing(Machine):
    m = Machine(2)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"a")
    p.write(a + PS, b"b")
    assert p.read(a + 3 * PS, 4) == bytes(4)       # zero page: no frame needed
    before = _state(m, [(p, [a + i * PS for i in range(4)])])
    writes = m.stats["writes"]
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + 2 * PS, b"c")
    m.check()
    assert _state(m, [(p, [a + i * PS for i in range(4)])]) == before
    assert p.pte(a + 2 * PS) == 0
    assert m.stats["writes"] == writes
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + 3 * PS, b"d")                   # zero page -> needs a frame
    m.check()
    assert dec(p, a + 3 * PS).zero
    assert p.read(a, 1) == b"a" and p.read(a + PS, 1) == b"b"
    p.exit()
    assert all_free(m)


def test_out_of_memory_when_swap_is_full(Machine):
    m = Machine(2, swap_slots=1)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in range(3):
        p.write(a + i * PS, bytes([i + 1]) * 4)
    assert swapped_slot(p, a) == 0 and m.swap_free == 0
    pages = [a + i * PS for i in range(4)]
    before = _state(m, [(p, pages)])
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + 3 * PS, b"\x04")
    m.check()
    assert _state(m, [(p, pages)]) == before
    # Swapping page 0 back in needs a frame, and evicting a resident page needs a
    # slot: slot 0 is still page 0's until the swap-in is done.
    with pytest.raises(pymmu.OutOfMemory):
        p.read(a, 4)
    m.check()
    assert swapped_slot(p, a) == 0
    assert _state(m, [(p, pages)]) == before
    p.munmap(a + 2 * PS, PS)                       # frees a frame
    assert p.read(a, 4) == b"\x01" * 4
    assert m.swap_free == 0                        # back clean by a read: it keeps slot 0
    p.write(a, b"\x05")                            # no fault: cached and dirty now
    assert m.swap_free == 0 and p.read(a, 1) == b"\x05"
    m.check()
    p.exit()
    assert all_free(m)


@pytest.mark.parametrize("zero_page", [True, False])
def test_no_byte_leaks_through_reused_swap_slots_or_frames(Machine, zero_page):
    m = Machine(2, swap_slots=12, zero_page=zero_page)
    p = m.spawn()
    a = p.mmap(5 * PS)
    for i in range(5):
        p.write(a + i * PS, bytes([0xA0 + i]) * PS)   # three pages end up in swap
    assert m.swap_free == 9
    for i in range(5):
        assert p.read(a + i * PS, PS) == bytes([0xA0 + i]) * PS
    p.exit()
    assert all_free(m)
    q = m.spawn()
    b = q.mmap(5 * PS)
    # reads only: the pages go through the same frames and slots
    for rnd in range(2):
        for i in range(5):
            assert q.read(b + i * PS, PS) == bytes(PS), (rnd, i)
    m.check()
    c = m.spawn()
    d = c.mmap(5 * PS)
    for i in range(5):
        c.write(d + i * PS + 7, b"\x01")
    for rnd in range(2):
        for i in range(5):
            assert c.read(d + i * PS, PS) == bytes(7) + b"\x01" + bytes(PS - 8), (rnd, i)
        for i in range(5):
            assert q.read(b + i * PS, PS) == bytes(PS), (rnd, i)
    m.check()
    q.exit()
    c.exit()
    assert all_free(m)


def test_munmap_and_exit_free_swap_slots(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in range(4):
        p.write(a + i * PS, b"z")
    assert m.swap_free == 1
    c = p.fork()
    p.munmap(a, PS)                                # c still has slot of page 0
    assert m.swap_free == 1
    c.munmap(a, PS)
    assert m.swap_free == 2
    c.exit()
    p.wait(c)
    assert m.swap_free == 2
    p.exit()
    assert all_free(m)
    m.check()


@pytest.mark.parametrize("policy", ["clock", "fifo", "lru", "random"])
def test_fork_family_survives_random_reads_and_writes(Machine, policy):
    """Several processes of one fork family, few frames, thousands of accesses:
    every byte matches a per-process model (private pages copy, shared ones don't)."""
    rnd = random.Random(20240601)
    npages, nshared = 10, 2
    m = Machine(6, swap_slots=64, page_size=1024, policy=policy, seed=5)
    ps = 1024
    root = m.spawn()
    a = root.mmap(npages * ps)
    s = root.mmap(nshared * ps, shared=True)
    procs = {root.pid: (root, bytearray(npages * ps))}
    shared = bytearray(nshared * ps)

    def fork_one():
        pid = rnd.choice(sorted(procs))
        parent, mem = procs[pid]
        child = parent.fork()
        procs[child.pid] = (child, bytearray(mem))

    for _ in range(3):
        fork_one()
    for step in range(3000):
        pid = rnd.choice(sorted(procs))
        q, mem = procs[pid]
        op = rnd.random()
        if op < 0.05:
            n = rnd.randint(1, 64)
            off = rnd.randrange(nshared * ps - n)
            if rnd.random() < 0.5:
                data = bytes(rnd.getrandbits(8) for _ in range(n))
                q.write(s + off, data)
                shared[off:off + n] = data
            else:
                assert q.read(s + off, n) == bytes(shared[off:off + n]), step
            continue
        n = rnd.choice([1, 8, 64, 300])
        off = rnd.randrange(npages * ps - n)
        if op < 0.55:
            data = bytes([rnd.getrandbits(8)]) * n
            q.write(a + off, data)
            mem[off:off + n] = data
        else:
            assert q.read(a + off, n) == bytes(mem[off:off + n]), (step, pid, off, n)
        if step % 500 == 499:
            m.check()
            if len(procs) > 2:                     # one leaf exits, a new one forks
                victim = max(procs)
                vq, _ = procs.pop(victim)
                vq.exit()
                parent = m.process(vq.ppid) if vq.ppid else None
                if parent is not None and parent.pid in procs:
                    parent.wait(vq)
            fork_one()
    assert m.stats["swap_ins"] > 100 and m.stats["swap_outs"] > 100
    for pid, (q, mem) in procs.items():
        for i in range(npages):                   # one page per call: 6 frames
            assert q.read(a + i * ps, ps) == bytes(mem[i * ps:(i + 1) * ps]), (pid, i)
        assert q.read(s, nshared * ps) == bytes(shared), pid
    m.check()
    # exit children first (deepest pids first), waiting where a parent is alive
    for pid in sorted(procs, reverse=True):
        q, _ = procs[pid]
        ppid = q.ppid
        q.exit()
        if ppid and ppid in procs and m.process(ppid).state == "running":
            m.process(ppid).wait(q)
    assert all(m.process(pid).state == "exited" for pid in procs)
    assert all_free(m), (m.frames_free, m.swap_free)
    m.check()


# --- more swap-cache and reverse-map cases ---------------------------------------------


def test_swap_cache_frame_reused_by_a_writer_leaves_the_slot_intact(Machine):
    """A frame in the swap cache whose slot others still name must not be written in
    place while it stays in the cache: the other sharers read the old bytes."""
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"original")
    c = p.fork()
    e = p.mmap(4 * PS)
    k = 0
    while not dec(p, a).swapped:
        p.write(e + k * PS, b"e")
        k += 1
    assert dec(c, a).swapped
    before = snapshot(m)
    p.write(a, b"PARENT")                          # swap-in (major), then cow (minor)
    d = delta(m, before)
    assert d["major_faults"] == 1 and d["swap_ins"] == 1
    assert d["minor_faults"] == 1
    assert d.get("cow_reuses", 0) + d.get("cow_copies", 0) == 1
    assert d["writes"] == 1
    dp = dec(p, a)
    assert dp.present and dp.writable and not dp.cow
    assert dec(c, a).swapped
    assert c.read(a, 8) == b"original"
    assert p.read(a, 8) == b"PARENTal"
    m.check()
    c.exit()
    p.wait(c)
    assert p.read(a, 8) == b"PARENTal"
    p.exit()
    assert all_free(m)


def test_swapped_page_of_an_unmapped_sharer_comes_back_writable(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"mine")
    c = p.fork()
    c.munmap(a, PS)                                # the reverse map must skip c
    e = p.mmap(4 * PS)
    k = 0
    while not dec(p, a).swapped:
        p.write(e + k * PS, b"e")
        k += 1
    assert c.pte(a) == 0
    slots_used = m.swap_slots - m.swap_free
    slot = swapped_slot(p, a)
    assert p.read(a, 4) == b"mine"                 # sole user: writable at once, clean
    d = dec(p, a)
    assert d.writable and not d.cow and not d.dirty
    assert m.frame_table()["swap_slot"][pfn_of(p, a)] == slot   # kept in the swap cache
    p.write(a, b"MINE")                            # no fault; now dirty
    assert dec(p, a).dirty and m.swap_slots - m.swap_free >= slots_used
    m.check()
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)


def test_fork_of_swapped_pages_duplicates_swap_entries(Machine):
    m = Machine(1, swap_slots=8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    for i in range(3):
        p.write(a + i * PS, bytes([0x30 + i]) * 3)
    assert dec(p, a).swapped and dec(p, a + PS).swapped
    free = m.swap_free
    c = p.fork()
    assert m.swap_free == free                     # counts go up, no new slot
    assert swapped_slot(c, a) == swapped_slot(p, a)
    assert c.read(a, 3) == b"000"                  # child brings it in first
    assert p.read(a, 3) == b"000"
    for q in (p, c):
        for i in range(3):
            assert q.read(a + i * PS, 3) == bytes([0x30 + i]) * 3
    c.write(a + PS, b"c")
    assert p.read(a + PS, 3) == b"111"
    assert c.read(a + PS, 3) == b"c11"
    m.check()
    c.exit()                                      # drops the child's references
    p.wait(c)
    m.check()
    p.exit()
    assert all_free(m)


def test_exec_drops_swap_entries(Machine):
    m = Machine(1, swap_slots=8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in range(4):
        p.write(a + i * PS, b"x")
    assert m.swap_free == 5
    p.exec(pymmu.Image([pymmu.Segment(0x400000, "rx", b"\xc3")], entry=0x400000))
    assert m.swap_free == 8 and m.frames_free == 1
    assert p.fetch(0x400000, 1) == b"\xc3"
    m.check()
    p.exit()
    assert all_free(m)


def test_eviction_invalidates_other_processes_tlb_entries(Machine):
    """p's translation of its page must not survive the frame going to q."""
    m = Machine(1, swap_slots=8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"p's secret")
    assert p.read(a, 10) == b"p's secret"          # TLB entry for p
    q = m.spawn()
    b = q.mmap(PS, addr=a)                        # same virtual page, other ASID
    q.write(b, b"q's bytes!")                     # takes pfn 0 from p
    assert dec(p, a).swapped
    assert p.translate(a) is None
    assert p.read(a, 10) == b"p's secret"          # must fault, not hit a stale TLB
    assert q.read(b, 10) == b"q's bytes!"
    m.check()


def test_clock_clears_accessed_in_every_mapper_of_a_shared_object(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    s = p.mmap(2 * PS, shared=True)
    p.write(s, b"S0")
    p.write(s + PS, b"S1")
    c = p.fork()
    c.read(s, 1)
    c.read(s + PS, 1)
    e = p.mmap(PS)
    p.write(e, b"E")                              # sweep: clear pfn 0, 1; victim pfn 0
    for q in (p, c):
        assert q.translate(s) is None
        assert not dec(q, s + PS).accessed
    assert m.stats["swap_outs"] == 1
    assert c.read(s, 2) == b"S0" and p.read(s + PS, 2) == b"S1"
    m.check()


def test_random_victims_are_drawn_from_evictable_frames_in_pfn_order(Machine):
    # No swap: the anonymous page is not evictable; only the file pages are.
    img = pymmu.Image([pymmu.Segment(0x400000, "rx", bytes(range(256)) * (16 * PS // 256)),
                       pymmu.Segment(0x800000, "rw", b"D" * 100)], entry=0x400000)
    seed = 99
    m = Machine(4, policy="random", seed=seed)
    p = m.spawn()
    p.exec(img)
    p.write(0x800000, b"d")                        # pfn 0: anon, pinned by "no swap"
    rng = _splitmix64(seed)
    where = {}
    for i in range(3):
        p.fetch(0x400000 + i * PS, 1)
        where[pfn_of(p, 0x400000 + i * PS)] = i
    assert sorted(where) == [1, 2, 3]
    for i in range(3, 16):
        p.fetch(0x400000 + i * PS, 1)
        victim_pfn = [1, 2, 3][next(rng) % 3]
        assert p.pte(0x400000 + where[victim_pfn] * PS) == 0, i
        assert pfn_of(p, 0x400000 + i * PS) == victim_pfn
        del where[victim_pfn]
        where[victim_pfn] = i
    assert pfn_of(p, 0x800000) == 0
    assert m.stats["swap_outs"] == 0
    assert p.read(0x800000, 2) == b"dD"
    m.check()


def test_swap_cache_frame_freed_by_exit_is_not_reused_for_the_slot(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"XXXX")
    c = p.fork()
    e = p.mmap(4 * PS)
    k = 0
    while not dec(p, a).swapped:
        p.write(e + k * PS, b"e")
        k += 1
    assert p.read(a, 4) == b"XXXX"                 # frame joins the swap cache
    slot = swapped_slot(c, a)
    p.exit()                                       # the frame is freed, the slot is c's
    m.check()
    q = m.spawn()
    b = q.mmap(2 * PS)
    q.write(b, b"QQQQ")
    q.write(b + PS, b"QQQQ")                       # frames reused (and maybe evicted)
    assert swapped_slot(c, a) == slot
    before = snapshot(m)
    assert c.read(a, 4) == b"XXXX"
    assert delta(m, before).get("swap_cache_hits", 0) == 0
    assert q.read(b, 4) == b"QQQQ" and q.read(b + PS, 4) == b"QQQQ"
    m.check()
    q.exit()
    c.exit()
    assert all_free(m)


def test_mprotect_over_swapped_pages(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"prot")
    p.write(a + PS, b"other")                      # a is swapped out
    assert dec(p, a).swapped
    p.mprotect(a, PS, "r")
    assert dec(p, a).swapped
    assert p.read(a, 4) == b"prot"                 # swap-in into a read-only mapping
    d = dec(p, a)
    assert d.present and not d.writable and not d.cow
    with pytest.raises(pymmu.ProtectionFault):
        p.write(a, b"x")
    p.mprotect(a, PS, "rw")
    p.write(a, b"P")
    assert p.read(a, 4) == b"Prot"
    assert p.read(a + PS, 5) == b"other"
    m.check()
    p.exit()
    assert all_free(m)


def test_rss_counts_only_resident_pages(Machine):
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in range(4):
        p.write(a + i * PS, b"r")
    assert p.rss == 2 * PS and p.uss == 2 * PS and p.pss == 2 * PS
    c = p.fork()
    assert p.rss == c.rss == 2 * PS and p.uss == 0 and p.pss == PS
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)


def test_file_pages_shared_by_fork_are_dropped_from_both(Machine):
    img = pymmu.Image([pymmu.Segment(0x400000, "rx", b"\x90" * (3 * PS)),
                       pymmu.Segment(0x800000, "rw", b"data" * 100)], entry=0x400000)
    m = Machine(2, swap_slots=4)
    p = m.spawn()
    p.exec(img)
    p.fetch(0x400000, 1)                            # pfn 0: file
    c = p.fork()
    assert m.refcount(0) == 2
    p.fetch(0x401000, 1)                            # pfn 1
    p.fetch(0x402000, 1)                            # sweep: pfn 0 dropped from both
    assert p.pte(0x400000) == 0 and c.pte(0x400000) == 0
    assert m.stats["swap_outs"] == 0
    before = snapshot(m)
    assert c.fetch(0x400000, 2) == b"\x90\x90"      # read from the image again
    assert delta(m, before)["file_reads"] == 1
    # a written data page is anonymous: it goes to swap and comes back intact
    p.write(0x800000, b"DATA")
    for x in (0x400000, 0x401000, 0x402000):
        p.fetch(x, 1)
    assert dec(p, 0x800000).swapped
    assert p.read(0x800000, 8) == b"DATAdata"
    assert c.read(0x800000, 8) == b"datadata"
    m.check()
    c.exit()
    p.wait(c)
    p.exit()
    assert all_free(m)
