"""Page out only if needed: DESIGN.md section 4 rule 6 (amended) and section 6.

A private page swapped in by a read or execute fault by its only user stays in
the swap cache with its slot, mapped writable but clean. Evicting it again drops
it with no write while no PTE mapping it is dirty, and writes it back to its own
slot when one is. A write fault's swap-in frees the slot. A slot is free once no
swap entry names it and no frame caches it.
"""
from __future__ import annotations

import pathlib

import pytest

import pymmu
from pymmu import pte as P

PS = 4096
SAMPLES = pathlib.Path(pymmu.__file__).parent / "samples"


def dec(p, addr):
    return P.decode(p.pte(addr))


def slot_of(p, addr):
    d = dec(p, addr)
    assert d.swapped, f"{addr:#x} is not a swap entry: {P.describe(p.pte(addr))}"
    return d.swap_slot


def cached_slot(m, p, addr):
    """The swap slot the frame mapped at ``addr`` caches (-1: none)."""
    return int(m.frame_table()["swap_slot"][p.translate(addr) // PS])


def delta(m, before):
    return {k: v - before[k] for k, v in m.stats.items() if v != before[k]}


def one_frame_with_a_in_swap(Machine, swap_slots=4):
    """A 1-frame machine whose page ``a`` (holding b"A...") is in swap slot 0 and
    page ``b`` resident, dirty."""
    m = Machine(1, swap_slots=swap_slots)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"A" * PS)
    p.write(a + PS, b"B" * PS)
    assert slot_of(p, a) == 0
    return m, p, a, a + PS


def test_read_swap_in_keeps_the_slot_and_maps_writable_but_clean(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine)
    assert m.swap_free == 3
    assert p.read(a, 1) == b"A"                   # evicts b (slot 1), reads a's slot 0
    d = dec(p, a)
    assert d.present and d.writable and not d.cow and not d.dirty
    assert cached_slot(m, p, a) == 0
    assert slot_of(p, b) == 1
    assert m.swap_free == 2                        # slot 0 cached, slot 1 b's
    m.check()


def test_clean_page_evicted_again_is_dropped_into_its_own_slot(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine)
    p.read(a, 1)
    before = dict(m.stats)
    assert p.read(b, 1) == b"B"                    # evicts a: clean, no write
    d = delta(m, before)
    assert d["evictions"] == 1 and d.get("swap_outs", 0) == 0
    assert slot_of(p, a) == 0
    assert p.read(a, PS) == b"A" * PS
    m.check()


def test_written_page_is_written_back_to_its_own_slot(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine)
    p.read(a, 1)
    before = dict(m.stats)
    p.write(a, b"a")                               # no fault: already writable
    assert delta(m, before).get("minor_faults", 0) == 0 and dec(p, a).dirty
    free = m.swap_free
    before = dict(m.stats)
    p.read(b, 1)                                   # evicts a: dirty, back to slot 0
    d = delta(m, before)
    assert d["evictions"] == 1 and d["swap_outs"] == 1
    assert slot_of(p, a) == 0
    assert m.swap_free == free                     # no new slot taken
    assert p.read(a, 2) == b"aA"
    m.check()


def test_write_fault_swap_in_frees_the_slot_and_maps_dirty(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine)
    p.write(a, b"w")                               # evicts b into slot 1; a's slot 0 freed
    d = dec(p, a)
    assert d.present and d.writable and d.dirty
    assert cached_slot(m, p, a) == -1
    assert m.swap_free == 3
    before = dict(m.stats)
    p.read(b, 1)                                   # a is dirty and has no slot: new write
    dd = delta(m, before)
    assert dd["swap_outs"] == 1 and slot_of(p, a) == 0
    assert p.read(a, 2) == b"wA"
    m.check()


def test_cached_slot_is_freed_with_its_frame(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine)
    p.read(a, 1)
    assert m.swap_free == 2
    p.munmap(a, PS)                                # the frame goes: so does slot 0
    assert m.swap_free == 3
    m.check()
    p.exit()
    assert m.swap_free == m.swap_slots and m.frames_free == m.frames


def test_cow_reuse_takes_the_page_out_of_the_cache(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine, swap_slots=8)
    p.read(a, 1)
    c = p.fork()                                   # both map a's frame read-only + cow
    assert cached_slot(m, p, a) == 0
    c.exit()
    p.wait(c)
    free = m.swap_free
    before = dict(m.stats)
    p.write(a, b"z")                               # refcount 1: reused in place
    assert delta(m, before)["cow_reuses"] == 1
    assert cached_slot(m, p, a) == -1
    assert m.swap_free == free + 1                 # slot 0: no entry, no cache
    m.check()


def test_dirty_bit_survives_fork_for_the_write_back(Machine):
    m, p, a, b = one_frame_with_a_in_swap(Machine, swap_slots=8)
    p.read(a, 1)
    p.write(a, b"d")                               # dirty, still cached
    c = p.fork()
    before = dict(m.stats)
    p.read(b, 1)                                   # evicts the shared frame
    d = delta(m, before)
    assert d["evictions"] == 1 and d["swap_outs"] == 1
    assert slot_of(p, a) == slot_of(c, a) == 0
    assert c.read(a, 2) == b"dA"
    m.check()


def test_full_swap_still_evicts_a_cached_page(Machine):
    # Two frames, one slot. a goes out to slot 0 and comes back by a read, cached:
    # swap is full, yet evicting a again needs no new slot (section 6).
    m = Machine(2, swap_slots=1)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"A")
    p.write(a + PS, b"B")
    p.write(a + 2 * PS, b"C")                      # evicts a into slot 0
    assert slot_of(p, a) == 0 and m.swap_free == 0
    with pytest.raises(pymmu.OutOfMemory):
        p.read(a, 1)                               # b and c would need a new slot
    p.munmap(a + PS, PS)                           # frees b's frame
    assert p.read(a, 1) == b"A"                    # cached in slot 0; swap still full
    assert m.swap_free == 0
    before = dict(m.stats)
    p.write(a + 3 * PS, b"D")                      # c needs a slot: a is the victim
    d = delta(m, before)
    assert d["evictions"] == 1 and d.get("swap_outs", 0) == 0
    assert slot_of(p, a) == 0
    assert p.read(a + 2 * PS, 1) == b"C" and p.read(a + 3 * PS, 1) == b"D"
    m.check()


def test_known_answer_ls_six_frames_clock(Machine):
    """The issue's known answer: 40,000 records of ls under clock with 6 frames
    (every first touch takes a frame): 133 evictions cost 59 writes, not 133."""
    from pymmu.traces import read

    trace = read(SAMPLES / "ls.lackey.xz")[:40_000]
    m = Machine(6, swap_slots=1024, zero_page=False)
    d = m.replay(trace)
    assert d["evictions"] == 133
    assert d["swap_outs"] == 59
    m.check()
