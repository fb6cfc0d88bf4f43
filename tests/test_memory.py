"""Physical memory rules (DESIGN.md section 2, semantics.md section 2).

Frames, the shared zero page, the zero-fill-on-demand pool, ``m.idle`` and the
security rule. Every expected value is worked out by hand from the spec.
"""
from __future__ import annotations

import pytest

import pymmu
from pymmu import pte as P

PS = 4096


def pfn_of(p, addr, page_size=PS):
    phys = p.translate(addr)
    assert phys is not None, f"{addr:#x} is not present"
    return phys // page_size


# --- frames ----------------------------------------------------------------------


def test_fresh_machine_has_all_frames_free_and_zero(Machine):
    m = Machine(8)
    assert (m.frames, m.frames_free, m.page_size) == (8, 8, PS)
    assert (m.swap_slots, m.swap_free) == (0, 0)
    assert [m.refcount(pfn) for pfn in range(9)] == [0] * 9
    assert all(v == 0 for v in m.stats.values())
    m.check()
    p = m.spawn()
    a = p.mmap(8 * PS)
    # A fresh machine's frames are all zero: writing one byte per page shows zeros around it.
    for i in range(8):
        p.write(a + i * PS + 100, b"\x01")
    data = p.read(a, 8 * PS)
    expected = bytearray(8 * PS)
    for i in range(8):
        expected[i * PS + 100] = 1
    assert data == bytes(expected)


def test_frames_handed_out_lowest_pfn_first(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in (2, 0, 3, 1):     # touch order, not address order, decides
        p.write(a + i * PS, b"x")
    assert [pfn_of(p, a + i * PS) for i in (2, 0, 3, 1)] == [0, 1, 2, 3]
    assert m.frames_free == 4


def test_frames_free_counts_allocations_and_frees(Machine):
    m = Machine(6)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x" * (3 * PS))
    assert m.frames_free == 3
    p.munmap(a, PS)
    assert m.frames_free == 4
    p.exit()
    assert m.frames_free == 6
    m.check()


def test_refcount_counts_ptes_over_all_processes(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    pfn = pfn_of(p, a)
    assert m.refcount(pfn) == 1
    c1 = p.fork()
    c2 = p.fork()
    assert m.refcount(pfn) == 3
    c1.munmap(a, PS)
    assert m.refcount(pfn) == 2
    c2.exit()
    assert m.refcount(pfn) == 1
    assert m.refcount(pfn + 1) == 0          # a free frame


def test_refcount_out_of_range_raises_valueerror(Machine):
    m = Machine(4)
    for bad in (-1, 5, 100):
        with pytest.raises(ValueError):
            m.refcount(bad)
    assert m.refcount(4) == 0                 # the zero page is pfn frames
    with pytest.raises(TypeError):
        m.refcount(1.0)


# --- the shared zero page ----------------------------------------------------------


def test_zero_page_is_pfn_frames_and_uses_no_user_frame(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(3 * PS)
    assert p.read(a + 5, 3) == b"\0\0\0"
    assert p.translate(a + 5) == 4 * PS + 5
    assert m.frames_free == 4
    assert m.refcount(4) == 1
    q = m.spawn()
    b = q.mmap(PS)
    q.read(b, 1)
    p.read(a + PS, 1)
    assert m.refcount(4) == 3                 # zero-page PTEs over all processes
    assert p.translate(a + PS) // PS == 4


def test_zero_page_is_never_written(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.read(a, 1)                              # maps the zero page
    p.write(a, b"\xff" * PS)                  # gets its own frame
    assert p.translate(a) // PS == 0
    assert m.refcount(4) == 0
    q = m.spawn()
    b = q.mmap(PS)
    assert q.read(b, PS) == bytes(PS)
    assert q.translate(b) // PS == 4


# --- page-table pages live outside the user frames --------------------------------


def test_fork_needs_no_user_frame(Machine):
    m = Machine(2)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"y" * (2 * PS))
    assert m.frames_free == 0
    c = p.fork()                              # page-table copies need no user frame
    assert m.frames_free == 0
    assert c.read(a, 2 * PS) == b"y" * (2 * PS)
    m.check()


@pytest.mark.parametrize("va_bits,page_size,levels", [
    (48, 4096, 4), (39, 4096, 3), (32, 4096, 2),
    (48, 512, 7),      # 6 bits per level, 39 vpn bits
    (48, 65536, 3),    # 13 bits per level, 32 vpn bits: a partial top level
    (32, 512, 4),      # 7 bits per level (4-byte entries), 23 vpn bits
])
def test_page_table_radix_tree_levels(Machine, va_bits, page_size, levels):
    m = Machine(4, va_bits=va_bits, page_size=page_size)
    p = m.spawn()
    lo = p.mmap(2 * page_size)
    hi = 2 ** (va_bits - 1)                   # a different top-level slot than lo
    p.mmap(page_size, addr=hi)
    assert m.frames_free == 4                 # table nodes are not user frames
    p.write(lo, b"a")
    n1 = m.page_table_pages
    p.write(lo + page_size, b"b")             # same leaf node
    assert m.page_table_pages == n1
    p.write(hi, b"c")                         # shares only the root
    assert m.page_table_pages == n1 + levels - 1
    assert m.frames_free == 1


# --- zero-fill-on-demand pool ------------------------------------------------------


def test_demand_zero_takes_pool_first_then_dirty_frames(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    b = p.mmap(PS)
    p.write(a, b"\xaa" * PS)                  # pfn 0
    p.write(b, b"\xbb" * PS)                  # pfn 1
    assert m.stats["zero_pool_hits"] == 2
    p.munmap(a, PS)                           # pfn 0 goes back dirty
    c = p.mmap(PS)
    p.write(c, b"c")                          # pool: pfn 2
    assert pfn_of(p, c) == 2
    assert m.stats["zero_pool_hits"] == 3
    d = p.mmap(PS)
    p.write(d, b"d")                          # pool: pfn 3
    assert pfn_of(p, d) == 3
    e = p.mmap(PS)
    p.write(e, b"e")                          # pool empty: dirty pfn 0, zeroed on the spot
    assert pfn_of(p, e) == 0
    assert m.stats["zero_fills"] == 5
    assert m.stats["zero_pool_hits"] == 4
    assert p.read(e, PS) == b"e" + bytes(PS - 1)


def test_cow_copy_prefers_dirty_free_frames(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(PS)
    b = p.mmap(PS)
    p.write(a, b"A" * PS)                     # pfn 0
    p.write(b, b"B" * PS)                     # pfn 1
    p.munmap(b, PS)                           # pfn 1 dirty; pool holds 2..7
    c = p.fork()
    c.write(a, b"c")                          # copy: the dirty set first
    assert pfn_of(c, a) == 1
    assert c.read(a, PS) == b"c" + b"A" * (PS - 1)
    assert m.stats["cow_copies"] == 1
    assert m.stats["zero_pool_hits"] == 2
    d = c.mmap(PS)
    c.write(d, b"d")                          # demand zero: the pool, lowest pfn
    assert pfn_of(c, d) == 2
    assert m.stats["zero_pool_hits"] == 3


def test_cow_copy_uses_pool_when_no_dirty_frame(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"A")                          # pfn 0
    c = p.fork()
    c.write(a, b"B")                          # no dirty frame: the pool's lowest
    assert pfn_of(c, a) == 1
    assert m.stats["zero_pool_hits"] == 1     # a copy is not a zero fill


def test_idle_zeroes_dirty_frames_lowest_first(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"\x77" * (4 * PS))            # pfn 0..3, pool now empty
    p.munmap(a, 4 * PS)                       # all four dirty
    assert m.frames_free == 4
    assert m.idle(1) == 1                     # pfn 0 into the pool
    b = p.mmap(2 * PS)
    hits = m.stats["zero_pool_hits"]
    p.write(b, b"x")
    assert pfn_of(p, b) == 0
    assert m.stats["zero_pool_hits"] == hits + 1
    p.write(b + PS, b"y")                     # pool empty again: dirty pfn 1
    assert pfn_of(p, b + PS) == 1
    assert m.stats["zero_pool_hits"] == hits + 1
    assert p.read(b + PS, PS) == b"y" + bytes(PS - 1)
    assert m.idle() == 2                      # pfns 2 and 3
    assert m.idle() == 0
    assert m.idle(5) == 0
    m.check()


def test_idle_on_fresh_machine_moves_nothing(Machine):
    m = Machine(4)
    assert m.idle() == 0
    assert m.idle(10) == 0
    assert m.frames_free == 4


def test_idle_respects_zero_pool_target(Machine):
    m = Machine(8, zero_pool=2)
    p = m.spawn()
    a = p.mmap(8 * PS)
    p.write(a, b"z" * (8 * PS))
    # a fresh machine's frames all count as pre-zeroed, even past the target
    assert m.stats["zero_pool_hits"] == 8
    p.munmap(a, 8 * PS)
    assert m.idle(0) == 0
    assert m.idle() == 2                      # up to the target
    assert m.idle() == 0
    assert m.idle(3) == 0
    b = p.mmap(PS)
    p.write(b, b"b")                          # from the pool: pfn 0
    assert pfn_of(p, b) == 0
    assert m.idle() == 1                      # refills to 2 with the lowest dirty (pfn 2)
    c = p.mmap(2 * PS)
    p.write(c, b"c" * (2 * PS))
    assert [pfn_of(p, c), pfn_of(p, c + PS)] == [1, 2]
    assert m.stats["zero_pool_hits"] == 11


def test_idle_with_zero_pool_zero_never_zeroes(Machine):
    m = Machine(4, zero_pool=0)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"q")
    p.munmap(a, PS)
    assert m.idle() == 0
    assert m.idle(4) == 0


def test_idle_argument_checked(Machine):
    m = Machine(4)
    with pytest.raises(ValueError):
        m.idle(-1)
    with pytest.raises(TypeError):
        m.idle(1.5)
    with pytest.raises(TypeError):
        m.idle("2")


# --- security: no byte of a freed frame is visible to another process --------------


def _dirty_every_frame(m, byte=b"\xaa"):
    """One process fills every user frame with ``byte`` and exits (parentless: reaped)."""
    p = m.spawn()
    a = p.mmap(m.frames * PS)
    p.write(a, byte * (m.frames * PS))
    p.exit()
    assert m.frames_free == m.frames


def test_security_demand_zero_frame_from_dirty_set_is_zeroed(Machine):
    m = Machine(4)
    _dirty_every_frame(m)
    q = m.spawn()
    a = q.mmap(4 * PS)
    for i in range(4):
        q.write(a + i * PS + 9, b"\x01")
    assert m.stats["zero_pool_hits"] == 4     # only the first process's
    expected = bytearray(4 * PS)
    for i in range(4):
        expected[i * PS + 9] = 1
    assert q.read(a, 4 * PS) == bytes(expected)


def test_security_first_touch_without_zero_page_is_zeroed(Machine):
    m = Machine(4, zero_page=False)
    _dirty_every_frame(m)
    q = m.spawn()
    a = q.mmap(4 * PS)
    assert q.read(a, 4 * PS) == bytes(4 * PS)
    assert m.frames_free == 0


def test_security_cow_copy_into_dirty_frame_is_a_full_copy(Machine):
    m = Machine(4)
    _dirty_every_frame(m)
    q = m.spawn()
    a = q.mmap(PS)
    q.write(a, b"Q" * 10)                     # rest of the page is zero
    c = q.fork()
    c.write(a + 5, b"c")
    assert c.read(a, PS) == b"QQQQQcQQQQ" + bytes(PS - 10)
    assert q.read(a, PS) == b"Q" * 10 + bytes(PS - 10)


def test_security_file_page_into_dirty_frame_is_zero_past_file_bytes(Machine):
    m = Machine(4)
    _dirty_every_frame(m)
    q = m.spawn()
    q.exec(pymmu.Image([pymmu.Segment(0x400010, "r", data=b"hi", memsz=3 * PS)],
                       stack_size=0))
    assert q.read(0x400000, 3 * PS) == bytes(16) + b"hi" + bytes(3 * PS - 18)


def test_security_shared_object_frames_are_zeroed_for_the_next_user(Machine):
    m = Machine(4)
    _dirty_every_frame(m, b"\x11")
    p = m.spawn()
    a = p.mmap(2 * PS, shared=True)
    assert p.read(a, 2 * PS) == bytes(2 * PS)  # first touch: frames 0, 1, zeroed
    p.write(a, b"\xcc" * (2 * PS))
    c = p.fork()
    c.exit()
    p.wait()
    p.exit()                                   # the object goes, its frames go dirty
    assert m.frames_free == 4
    q = m.spawn()
    b = q.mmap(2 * PS, shared=True)
    assert q.read(b, 2 * PS) == bytes(2 * PS)
    d = q.mmap(2 * PS)
    q.write(d, b"\0")
    q.write(d + PS, b"\0")
    assert q.read(d, 2 * PS) == bytes(2 * PS)


def test_security_reused_swap_slot_is_not_visible(Machine):
    # One page per call: a call pins the pages it touched, and only 2 frames exist.
    m = Machine(2, swap_slots=4)
    p = m.spawn()
    a = p.mmap(4 * PS)
    for i in range(4):
        p.write(a + i * PS, b"\xee" * PS)      # two pages must go to swap
    for i in range(4):
        assert p.read(a + i * PS, PS) == b"\xee" * PS
    assert m.stats["swap_outs"] >= 2
    p.exit()
    assert (m.frames_free, m.swap_free) == (2, 4)
    q = m.spawn()
    b = q.mmap(4 * PS)
    for i in range(4):
        q.write(b + i * PS + 1, b"\x02")
    for i in range(4):
        assert q.read(b + i * PS, PS) == b"\0\x02" + bytes(PS - 2)
    m.check()


def test_zero_page_is_never_evicted(Machine):
    m = Machine(1, swap_slots=4)
    p = m.spawn()
    z = p.mmap(PS)
    p.read(z, 1)                              # the zero page
    a = p.mmap(3 * PS)
    for i in range(3):                        # one frame: each write evicts the last page
        p.write(a + i * PS, bytes([i + 1]) * 8)
    for i in range(3):
        assert p.read(a + i * PS, 8) == bytes([i + 1]) * 8
    assert m.stats["evictions"] >= 2
    raw = p.pte(z)
    assert raw & P.PRESENT and raw & P.ZERO
    assert p.translate(z) == m.frames * PS
    assert m.refcount(m.frames) == 1
    assert p.read(z, PS) == bytes(PS)
    m.check()
