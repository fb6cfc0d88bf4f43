"""Mapping rules (DESIGN.md section 3, semantics.md section 4).

mmap placement, alignment, rounding and overlap; munmap with holes and splits;
mprotect splits, PTE rewrites and the must-be-mapped rule; guard mappings; prot
parsing; ``maps()``.
"""
from __future__ import annotations

import pytest

import pymmu
from pymmu import pte as P

PS = 4096
MMAP_MIN = 0x10000


def spans(p):
    """``[(start, end, prot), ...]`` of a process's mappings."""
    return [(mp.start, mp.end, mp.prot) for mp in p.maps()]


# --- mmap ----------------------------------------------------------------------------


def test_mmap_first_fit_starts_at_mmap_min(Machine):
    m = Machine(4)
    p = m.spawn()
    assert p.mmap(PS) == MMAP_MIN
    assert p.mmap(PS) == MMAP_MIN + PS


def test_mmap_rounds_length_up_to_whole_pages(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(1)
    b = p.mmap(PS + 1)
    c = p.mmap(PS)
    assert (a, b, c) == (MMAP_MIN, MMAP_MIN + PS, MMAP_MIN + 3 * PS)
    assert spans(p) == [(a, a + PS, 3), (b, b + 2 * PS, 3), (c, c + PS, 3)]
    p.write(b + PS + PS - 1, b"!")            # the rounded-up tail is usable
    with pytest.raises(pymmu.SegmentationFault):
        p.read(c + PS, 1)


def test_mmap_picks_lowest_free_range_that_fits(Machine):
    m = Machine(4)
    p = m.spawn()
    assert p.mmap(PS, addr=MMAP_MIN + 2 * PS) == MMAP_MIN + 2 * PS
    assert p.mmap(3 * PS) == MMAP_MIN + 3 * PS       # the 2-page hole is too small
    assert p.mmap(2 * PS) == MMAP_MIN                # fits the hole exactly
    assert p.mmap(PS) == MMAP_MIN + 6 * PS
    p.munmap(MMAP_MIN + PS, PS)
    assert p.mmap(PS) == MMAP_MIN + PS               # a freed page is reused


def test_mmap_with_page_size_512_places_at_mmap_min(Machine):
    m = Machine(4, page_size=512)
    p = m.spawn()
    assert p.mmap(1) == MMAP_MIN
    assert p.mmap(513) == MMAP_MIN + 512
    assert p.mmap(1) == MMAP_MIN + 3 * 512


def test_mmap_fixed_addr_below_mmap_min_is_allowed(Machine):
    m = Machine(4)
    p = m.spawn()
    assert p.mmap(PS, addr=0) == 0
    p.write(0, b"null page")
    assert p.read(0, 9) == b"null page"
    assert p.mmap(PS) == MMAP_MIN             # addr=None still starts at MMAP_MIN


def test_mmap_fixed_addr_must_be_page_aligned(Machine):
    m = Machine(4)
    p = m.spawn()
    for bad in (MMAP_MIN + 1, MMAP_MIN + PS // 2, 1):
        with pytest.raises(ValueError):
            p.mmap(PS, addr=bad)
    with pytest.raises(ValueError):
        p.mmap(PS, addr=-PS)
    assert p.maps() == []


def test_mmap_fixed_overlap_raises_valueerror_and_changes_nothing(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a + PS, b"keep")
    before = p.maps()
    for addr, length in ((a, PS), (a + PS, PS), (a - PS, 2 * PS), (a + 2 * PS, 5 * PS),
                         (a - PS, 10 * PS)):
        with pytest.raises(ValueError):
            p.mmap(length, addr=addr)
    assert p.maps() == before
    assert p.read(a + PS, 4) == b"keep"
    assert p.mmap(PS, addr=a + 3 * PS) == a + 3 * PS   # adjacent is fine
    m.check()


@pytest.mark.parametrize("va_bits", [32, 39, 48])
def test_mmap_fixed_must_end_within_address_space(Machine, va_bits):
    m = Machine(4, va_bits=va_bits)
    p = m.spawn()
    top = 2 ** va_bits
    with pytest.raises(ValueError):
        p.mmap(2 * PS, addr=top - PS)
    with pytest.raises(ValueError):
        p.mmap(PS, addr=top)
    assert p.mmap(PS, addr=top - PS) == top - PS
    p.write(top - 1, b"T")
    assert p.read(top - 1, 1) == b"T"


def test_mmap_without_free_range_raises_valueerror(Machine):
    m = Machine(4, va_bits=32)
    p = m.spawn()
    with pytest.raises(ValueError):
        p.mmap(2 ** 32)
    assert p.mmap(2 ** 32 - MMAP_MIN) == MMAP_MIN    # exactly fits
    with pytest.raises(ValueError):
        p.mmap(PS)
    assert p.mmap(PS, addr=0) == 0                   # fixed below MMAP_MIN still works


def test_new_mapping_has_no_ptes(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(16 * PS)
    assert p.pte(a) == 0
    assert p.translate(a) is None
    assert len(p.page_table()) == 0
    assert p.rss == 0
    assert m.frames_free == 4
    assert all(v == 0 for v in m.stats.values())


def test_mmap_shared_creates_shared_mapping(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS, "rw", shared=True)
    (mp,) = p.maps()
    assert (mp.start, mp.end, mp.prot, mp.shared, mp.kind, mp.offset) == (
        a, a + 2 * PS, 3, True, "shared", 0)
    assert mp.perms == "rw-s"


def test_shared_object_lives_while_any_mapping_refers_to_it(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS, shared=True)
    p.write(a, b"shm" * 2000)                 # both pages
    c = p.fork()
    p.munmap(a, 2 * PS)
    assert m.frames_free == 2                 # the child's mapping keeps the object
    assert c.read(a, 9) == b"shmshmshm"
    c.write(a + PS, b"still")
    c.exit()
    assert m.frames_free == 4                 # last mapping gone: frames freed
    p.wait()
    m.check()


# --- munmap ---------------------------------------------------------------------------


def test_munmap_middle_splits_mapping(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS, "rw")
    p.write(a, b"a" * (3 * PS))
    p.munmap(a + PS, PS)
    assert spans(p) == [(a, a + PS, 3), (a + 2 * PS, a + 3 * PS, 3)]
    assert m.frames_free == 2
    with pytest.raises(pymmu.SegmentationFault):
        p.read(a + PS, 1)
    assert p.read(a, PS) == b"a" * PS
    assert p.read(a + 2 * PS, PS) == b"a" * PS
    assert p.pte(a + PS) == 0
    m.check()


def test_munmap_range_with_holes_unmaps_what_is_there(Machine):
    m = Machine(8)
    p = m.spawn()
    p.mmap(2 * PS, addr=0x10000)
    p.mmap(PS, addr=0x14000)
    p.mmap(2 * PS, addr=0x16000)
    for addr in (0x10000, 0x11000, 0x14000, 0x16000, 0x17000):
        p.write(addr, b"x")
    assert m.frames_free == 3
    p.munmap(0x11000, 0x6000)                 # [0x11000, 0x17000)
    assert spans(p) == [(0x10000, 0x11000, 3), (0x17000, 0x18000, 3)]
    assert m.frames_free == 6
    assert p.read(0x17000, 1) == b"x"
    m.check()


def test_munmap_of_nothing_is_fine(Machine):
    m = Machine(4)
    p = m.spawn()
    p.munmap(0x10000, 10 * PS)
    a = p.mmap(PS)
    p.munmap(a + PS, PS)
    assert spans(p) == [(a, a + PS, 3)]


def test_munmap_rounds_length_up(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.munmap(a, 1)
    assert spans(p) == [(a + PS, a + 3 * PS, 3)]
    p.munmap(a + PS, PS + 1)
    assert p.maps() == []


def test_munmap_drops_frame_refcounts(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    pfn = p.translate(a) // PS
    c = p.fork()
    assert m.refcount(pfn) == 2
    p.munmap(a, PS)
    assert m.refcount(pfn) == 1
    c.write(a, b"y")                          # sole user now: reused in place
    assert c.translate(a) // PS == pfn
    assert m.stats["cow_reuses"] == 1
    assert m.stats["cow_copies"] == 0


def test_munmap_argument_errors(Machine):
    m = Machine(4, va_bits=39)
    p = m.spawn()
    a = p.mmap(2 * PS)
    for addr, length in ((a + 1, PS), (a, 0), (a, -PS), (-PS, PS), (2 ** 39, PS),
                         (2 ** 39 - PS, 2 * PS)):
        with pytest.raises(ValueError):
            p.munmap(addr, length)
    with pytest.raises(TypeError):
        p.munmap(float(a), PS)
    with pytest.raises(TypeError):
        p.munmap(a, "4096")
    assert spans(p) == [(a, a + 2 * PS, 3)]


# --- mprotect --------------------------------------------------------------------------


def test_mprotect_splits_mapping(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(4 * PS, "rw")
    p.mprotect(a + PS, 2 * PS, "r")
    assert spans(p) == [(a, a + PS, 3), (a + PS, a + 3 * PS, 1), (a + 3 * PS, a + 4 * PS, 3)]
    with pytest.raises(pymmu.ProtectionFault):
        p.write(a + PS, b"x")
    p.write(a, b"ok")
    p.write(a + 3 * PS, b"ok")


def test_adjacent_mappings_are_never_merged(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(4 * PS, "rw")
    p.mprotect(a + PS, 2 * PS, "r")
    p.mprotect(a + PS, 2 * PS, "rw")
    assert spans(p) == [(a, a + PS, 3), (a + PS, a + 3 * PS, 3), (a + 3 * PS, a + 4 * PS, 3)]
    b = p.mmap(PS, addr=a + 4 * PS)
    assert len(p.maps()) == 4
    assert p.maps()[-1].start == b


def test_mprotect_requires_every_page_mapped(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, addr=0x10000)
    p.mmap(PS, addr=0x12000)                  # a hole at 0x11000
    p.write(a, b"w")
    before_maps, before_pte = p.maps(), p.pte(a)
    with pytest.raises(ValueError):
        p.mprotect(0x10000, 3 * PS, "r")
    with pytest.raises(ValueError):
        p.mprotect(0x11000, PS, "r")
    with pytest.raises(ValueError):
        p.mprotect(0x12000, 2 * PS, "r")       # runs off the end
    assert p.maps() == before_maps
    assert p.pte(a) == before_pte
    p.write(a, b"still writable")
    m.check()


def test_mprotect_argument_errors(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    for addr, length in ((a + 1, PS), (a, 0), (a, -1), (-PS, PS)):
        with pytest.raises(ValueError):
            p.mprotect(addr, length, "r")
    with pytest.raises(ValueError):
        p.mprotect(a, PS, "rq")
    with pytest.raises(TypeError):
        p.mprotect(a, PS, None)
    assert spans(p) == [(a, a + 2 * PS, 3)]


def test_mprotect_rounds_length_up(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.mprotect(a, PS + 1, "r")
    assert spans(p) == [(a, a + 2 * PS, 1), (a + 2 * PS, a + 3 * PS, 3)]


def test_mprotect_readonly_clears_writable_and_cow(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x")
    p.write(a + PS, b"y")
    c = p.fork()                              # a+PS is now COW in both
    assert p.pte(a + PS) & P.COW
    p.mprotect(a, 2 * PS, "r")
    for addr in (a, a + PS):
        raw = p.pte(addr)
        assert raw & P.PRESENT and raw & P.READABLE and raw & P.USER
        assert not raw & (P.WRITABLE | P.COW | P.EXECUTABLE)
    assert c.pte(a) & P.COW                   # the other process is untouched
    assert p.read(a, 1) == b"x"


def test_mprotect_back_to_rw_sets_cow_and_next_write_reuses(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    pfn = p.translate(a) // PS
    p.mprotect(a, PS, "r")
    p.mprotect(a, PS, "rw")
    raw = p.pte(a)
    assert raw & P.COW and not raw & P.WRITABLE
    s = dict(m.stats)
    p.write(a, b"z")                          # write-protect fault, refcount 1: reuse
    assert m.stats["cow_reuses"] == s["cow_reuses"] + 1
    assert m.stats["minor_faults"] == s["minor_faults"] + 1
    assert m.stats["cow_copies"] == 0
    assert p.translate(a) // PS == pfn
    raw = p.pte(a)
    assert raw & P.WRITABLE and not raw & P.COW
    assert m.frames_free == 3


def test_mprotect_keeps_zero_page_ptes_without_cow(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "r")
    p.read(a, 1)
    p.mprotect(a, PS, "rwx")
    raw = p.pte(a)
    assert raw & P.ZERO and raw & P.PRESENT and raw & P.EXECUTABLE and raw & P.READABLE
    assert not raw & (P.COW | P.WRITABLE)
    assert p.translate(a) // PS == m.frames
    p.write(a, b"w")                          # zero fill
    assert m.stats["zero_fills"] == 1
    assert m.refcount(m.frames) == 0


def test_mprotect_shared_page_to_rw_is_writable(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "r", shared=True)
    p.read(a, 1)                              # shared: a real frame, not the zero page
    raw = p.pte(a)
    assert raw & P.SHARED and not raw & P.WRITABLE and not raw & P.ZERO
    p.mprotect(a, PS, "rw")
    raw = p.pte(a)
    assert raw & P.SHARED and raw & P.WRITABLE and not raw & P.COW
    faults = m.stats["minor_faults"]
    p.write(a, b"s")
    assert m.stats["minor_faults"] == faults


def test_mprotect_sets_executable_bit(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "rw")
    p.write(a, b"\x90")
    with pytest.raises(pymmu.ProtectionFault):
        p.fetch(a, 1)
    p.mprotect(a, PS, "rx")
    assert p.pte(a) & P.EXECUTABLE
    assert not p.pte(a) & P.WRITABLE
    assert p.fetch(a, 1) == b"\x90"


def test_mprotect_invalidates_tlb(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")                          # miss
    p.read(a, 1)                              # hit
    p.mprotect(a, PS, "r")
    p.read(a, 1)                              # the entry was invalidated: miss
    assert (m.stats["tlb_misses"], m.stats["tlb_hits"]) == (2, 1)
    with pytest.raises(pymmu.ProtectionFault):
        p.write(a, b"y")
    assert p.read(a, 1) == b"x"


# --- guard mappings and prot parsing -------------------------------------------------


@pytest.mark.parametrize("prot", ["", 0, "---"])
def test_guard_mapping_faults_every_access(Machine, prot):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, prot)
    (mp,) = p.maps()
    assert mp.prot == 0 and mp.perms == "---p"
    with pytest.raises(pymmu.ProtectionFault):
        p.read(a, 1)
    with pytest.raises(pymmu.ProtectionFault):
        p.write(a, b"x")
    with pytest.raises(pymmu.ProtectionFault):
        p.fetch(a, 1)
    assert p.pte(a) == 0
    assert m.stats["reads"] == m.stats["writes"] == m.stats["fetches"] == 0


def test_guard_page_protection_fault_even_when_present(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    p.mprotect(a, PS, "")
    assert p.pte(a) & P.PRESENT
    assert not p.pte(a) & (P.READABLE | P.WRITABLE | P.EXECUTABLE)
    with pytest.raises(pymmu.ProtectionFault):
        p.read(a, 1)
    p.mprotect(a, PS, "r")
    assert p.read(a, 1) == b"x"


@pytest.mark.parametrize("prot,flags", [
    ("r", 1), ("w", 3), ("x", 4), ("rw", 3), ("wr", 3), ("rx", 5), ("r-x", 5), ("-w-", 3),
    ("rwx", 7), ("xwr", 7), ("wx", 7), ("--x", 4), ("r--", 1),
    (0, 0), (1, 1), (2, 3), (3, 3), (4, 4), (5, 5), (6, 7), (7, 7),
    (pymmu.PROT_READ | pymmu.PROT_EXEC, 5),
])
def test_prot_parsing_and_write_implies_read(Machine, prot, flags):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, prot)
    assert p.maps()[0].prot == flags
    p.mprotect(a, PS, prot)
    assert p.maps()[0].prot == flags


def test_prot_constants():
    assert (pymmu.PROT_READ, pymmu.PROT_WRITE, pymmu.PROT_EXEC) == (1, 2, 4)


@pytest.mark.parametrize("prot", ["rr", "rwr", "q", "R", "RW", "r w", "rw+", 8, -1, 15])
def test_bad_prot_raises_valueerror(Machine, prot):
    m = Machine(4)
    p = m.spawn()
    with pytest.raises(ValueError):
        p.mmap(PS, prot)
    assert p.maps() == []


@pytest.mark.parametrize("prot", [None, 1.0, b"rw", ["r"]])
def test_non_str_non_int_prot_raises_typeerror(Machine, prot):
    m = Machine(4)
    p = m.spawn()
    with pytest.raises(TypeError):
        p.mmap(PS, prot)
    assert p.maps() == []


def test_write_only_mapping_is_readable(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "w")
    p.write(a, b"wr")
    assert p.read(a, 2) == b"wr"
    assert p.pte(a) & P.READABLE


def test_execute_only_mapping_cannot_be_read(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "x")
    assert p.fetch(a, 4) == bytes(4)
    with pytest.raises(pymmu.ProtectionFault):
        p.read(a, 1)
    raw = p.pte(a)
    assert raw & P.EXECUTABLE and not raw & P.READABLE


# --- maps() ----------------------------------------------------------------------------


def test_maps_lists_mappings_sorted_with_fields(Machine):
    m = Machine(4)
    p = m.spawn()
    p.mmap(PS, "rx", addr=0x30000)
    p.mmap(2 * PS, "r", addr=0x20000)
    p.mmap(PS, "rw", shared=True, addr=0x40000)
    p.mmap(PS)
    maps = p.maps()
    assert all(isinstance(mp, pymmu.Mapping) for mp in maps)
    assert [(mp.start, mp.end, mp.prot, mp.shared, mp.kind, mp.offset) for mp in maps] == [
        (0x10000, 0x11000, 3, False, "anon", 0),
        (0x20000, 0x22000, 1, False, "anon", 0),
        (0x30000, 0x31000, 5, False, "anon", 0),
        (0x40000, 0x41000, 3, True, "shared", 0),
    ]
    assert [mp.perms for mp in maps] == ["rw-p", "r--p", "r-xp", "rw-s"]
    assert str(maps[0]).startswith("000000010000-000000011000 rw-p 00000000 00:00 0")
    assert str(maps[3]).startswith("000000040000-000000041000 rw-s 00000000 00:00 0")


def test_maps_shared_offset_follows_split(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(4 * PS, shared=True)
    p.write(a + 2 * PS, b"third page")
    p.munmap(a, PS)
    p.mprotect(a + 3 * PS, PS, "r")
    assert [(mp.start, mp.end, mp.offset, mp.kind) for mp in p.maps()] == [
        (a + PS, a + 3 * PS, PS, "shared"),
        (a + 3 * PS, a + 4 * PS, 3 * PS, "shared"),
    ]
    assert p.read(a + 2 * PS, 10) == b"third page"


def test_maps_returns_a_snapshot(Machine):
    m = Machine(4)
    p = m.spawn()
    p.mmap(PS)
    maps = p.maps()
    maps.clear()
    assert len(p.maps()) == 1
