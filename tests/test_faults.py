"""What an access does (DESIGN.md section 4, semantics.md section 5).

Rules 1-5 and 7 (swap-in, rule 6, needs reclaim and is tested elsewhere), COW copy
versus reuse with xv6 cowtest-style scenarios, multi-page accesses, failed
operations changing nothing, per-access counters and the TLB model.
"""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

import pymmu
from pymmu import pte as P

PS = 4096


def snapshot(m):
    return dict(m.stats)


def delta(m, before):
    """The counters that changed since ``before``, as {name: increase}."""
    return {k: v - before[k] for k, v in m.stats.items() if v != before[k]}


def pfn_of(p, addr):
    phys = p.translate(addr)
    assert phys is not None, f"{addr:#x} is not present"
    return phys // PS


# --- rule 1: segmentation faults ----------------------------------------------------


def test_segfault_outside_any_mapping(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    for addr in (0, a - 1, a + PS, 0x7FFF_FFFF_F000):
        with pytest.raises(pymmu.SegmentationFault) as e:
            p.read(addr, 1)
        assert (e.value.addr, e.value.access, e.value.pid) == (addr, "read", p.pid)
    with pytest.raises(pymmu.SegmentationFault) as e:
        p.write(a + PS + 7, b"x")
    assert (e.value.addr, e.value.access) == (a + PS + 7, "write")
    with pytest.raises(pymmu.SegmentationFault) as e:
        p.fetch(a - 3, 1)
    assert (e.value.addr, e.value.access) == (a - 3, "execute")


@pytest.mark.parametrize("va_bits", [32, 39, 48])
def test_segfault_at_or_beyond_va_bits(Machine, va_bits):
    m = Machine(4, va_bits=va_bits)
    p = m.spawn()
    top = 2 ** va_bits
    p.mmap(PS, addr=top - PS)
    for addr in (top, top + PS, 2 ** 64 - 1, 2 ** 70):
        with pytest.raises(pymmu.SegmentationFault) as e:
            p.read(addr, 1)
        assert e.value.addr == addr
        assert p.translate(addr) is None      # translate never faults
        assert p.pte(addr) == 0
    with pytest.raises(pymmu.SegmentationFault) as e:
        p.write(top - 2, b"abcd")             # the second page is past the top
    assert e.value.addr == top
    assert p.read(top - 2, 2) == b"\0\0"


def test_negative_address_raises_valueerror(Machine):
    m = Machine(4)
    p = m.spawn()
    p.mmap(PS)
    for call in (lambda: p.read(-1, 1), lambda: p.write(-PS, b"x"), lambda: p.fetch(-5, 1)):
        with pytest.raises(ValueError):
            call()


# --- rule 2: protection faults --------------------------------------------------------


def test_protection_fault_when_prot_lacks_access(Machine):
    m = Machine(4)
    p = m.spawn()
    r = p.mmap(PS, "r")
    rw = p.mmap(PS, "rw")
    with pytest.raises(pymmu.ProtectionFault) as e:
        p.write(r + 5, b"x")
    assert (e.value.addr, e.value.access, e.value.pid) == (r + 5, "write", p.pid)
    with pytest.raises(pymmu.ProtectionFault) as e:
        p.fetch(rw, 2)
    assert (e.value.addr, e.value.access) == (rw, "execute")
    assert isinstance(e.value, pymmu.MemoryFault)
    assert not isinstance(e.value, pymmu.SegmentationFault)


def test_protection_fault_even_when_page_present(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "r")
    p.read(a, 1)                              # present (zero page)
    assert p.pte(a) & P.PRESENT
    with pytest.raises(pymmu.ProtectionFault):
        p.write(a, b"x")
    b = p.mmap(PS, "rw")
    p.write(b, b"present")
    p.mprotect(b, PS, "r")
    with pytest.raises(pymmu.ProtectionFault):
        p.write(b, b"x")
    with pytest.raises(pymmu.ProtectionFault):
        p.fetch(b, 1)
    assert p.read(b, 7) == b"present"


# --- rule 3: present and allowed: no fault -----------------------------------------


def test_present_allowed_access_takes_no_fault(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "rwx")
    p.write(a, b"abc")
    s = snapshot(m)
    assert p.read(a, 3) == b"abc"
    p.write(a + 3, b"d")
    assert p.fetch(a, 4) == b"abcd"
    assert delta(m, s) == {"reads": 1, "writes": 1, "fetches": 1, "tlb_hits": 3}


def test_every_access_sets_accessed_and_write_sets_dirty(Machine):
    m = Machine(4, zero_page=False)
    p = m.spawn()
    a = p.mmap(2 * PS, "rwx")
    p.read(a, 1)
    raw = p.pte(a)
    assert raw & P.ACCESSED and not raw & P.DIRTY
    p.fetch(a + PS, 1)
    raw = p.pte(a + PS)
    assert raw & P.ACCESSED and not raw & P.DIRTY
    p.write(a, b"x")
    assert p.pte(a) & P.DIRTY and p.pte(a) & P.ACCESSED


def test_present_pte_bits_mirror_mapping_prot(Machine):
    m = Machine(4)
    p = m.spawn()
    rw = p.mmap(PS, "rw")
    rx = p.mmap(PS, "rx")
    p.write(rw, b"x")
    p.fetch(rx, 1)
    d = P.decode(p.pte(rw))
    assert (d.present, d.user, d.readable, d.writable, d.executable) == (True, True, True, True, False)
    assert (d.cow, d.zero, d.shared, d.swapped) == (False, False, False, False)
    d = P.decode(p.pte(rx))
    assert (d.present, d.user, d.readable, d.writable, d.executable, d.zero) == (
        True, True, True, False, True, True)


# --- rule 5 and rule 4 (zero page): demand zero --------------------------------------


def test_first_read_maps_shared_zero_page(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    s = snapshot(m)
    assert p.read(a + 10, 4) == bytes(4)
    assert delta(m, s) == {"reads": 1, "minor_faults": 1, "zero_page_maps": 1, "tlb_misses": 1}
    d = P.decode(p.pte(a))
    assert d.present and d.zero and d.readable and d.user and d.accessed
    assert not (d.writable or d.cow or d.dirty)
    assert d.pfn == m.frames
    assert m.frames_free == 4
    assert m.refcount(m.frames) == 1


def test_first_fetch_maps_zero_page(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "rx")
    s = snapshot(m)
    assert p.fetch(a, 2) == b"\0\0"
    assert delta(m, s) == {"fetches": 1, "minor_faults": 1, "zero_page_maps": 1, "tlb_misses": 1}
    assert pfn_of(p, a) == m.frames


def test_write_to_zero_page_allocates_zeroed_frame(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.read(a, 1)
    s = snapshot(m)
    p.write(a + 1, b"z")
    # the TLB entry matched (a hit) but did not allow the write: zero fill
    assert delta(m, s) == {"writes": 1, "minor_faults": 1, "zero_fills": 1,
                           "zero_pool_hits": 1, "tlb_hits": 1}
    d = P.decode(p.pte(a))
    assert d.present and d.writable and d.dirty and d.accessed
    assert not (d.zero or d.cow)
    assert d.pfn == 0
    assert m.refcount(m.frames) == 0
    assert m.refcount(0) == 1
    assert p.read(a, 3) == b"\0z\0"


def test_first_write_allocates_zeroed_frame(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    s = snapshot(m)
    p.write(a + 100, b"hello")
    assert delta(m, s) == {"writes": 1, "minor_faults": 1, "zero_fills": 1,
                           "zero_pool_hits": 1, "tlb_misses": 1}
    assert p.pte(a) & (P.WRITABLE | P.DIRTY) == P.WRITABLE | P.DIRTY
    assert p.read(a, PS) == bytes(100) + b"hello" + bytes(PS - 105)
    assert m.refcount(m.frames) == 0


def test_zero_page_off_first_read_allocates_writable_frame(Machine):
    m = Machine(4, zero_page=False)
    p = m.spawn()
    a = p.mmap(PS)
    s = snapshot(m)
    assert p.read(a, 4) == bytes(4)
    assert delta(m, s) == {"reads": 1, "minor_faults": 1, "zero_fills": 1,
                           "zero_pool_hits": 1, "tlb_misses": 1}
    assert pfn_of(p, a) == 0
    assert p.pte(a) & P.WRITABLE
    assert not p.pte(a) & P.ZERO
    s = snapshot(m)
    p.write(a, b"w")                          # no second fault
    assert delta(m, s) == {"writes": 1, "tlb_hits": 1}


def test_zero_page_off_readonly_mapping_frame_not_writable(Machine):
    m = Machine(4, zero_page=False)
    p = m.spawn()
    a = p.mmap(PS, "r")
    p.read(a, 1)
    raw = p.pte(a)
    assert raw & P.PRESENT and not raw & (P.WRITABLE | P.COW | P.ZERO)
    assert m.refcount(m.frames) == 0
    assert m.frames_free == 3


def test_shared_mapping_never_uses_zero_page(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, shared=True)
    s = snapshot(m)
    assert p.read(a, 1) == b"\0"
    assert delta(m, s) == {"reads": 1, "minor_faults": 1, "zero_fills": 1,
                           "zero_pool_hits": 1, "tlb_misses": 1}
    d = P.decode(p.pte(a))
    assert d.present and d.shared and d.writable and not d.zero and not d.cow
    assert m.refcount(m.frames) == 0


def test_shared_mapping_pages_seen_by_all_forked_processes(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(3 * PS, shared=True)
    p.write(a, b"before fork")
    c = p.fork()
    assert c.pte(a) & P.WRITABLE and c.pte(a) & P.SHARED   # stays writable in both
    assert p.pte(a) & P.WRITABLE and not p.pte(a) & P.COW
    assert m.refcount(pfn_of(p, a)) == 2
    c.write(a, b"child")
    assert p.read(a, 11) == b"childe fork"
    c.write(a + 2 * PS, b"touched after fork")   # first touch: the object's new page
    s = snapshot(m)
    assert p.read(a + 2 * PS, 18) == b"touched after fork"
    assert delta(m, s) == {"reads": 1, "minor_faults": 1, "tlb_misses": 1}
    assert pfn_of(p, a + 2 * PS) == pfn_of(c, a + 2 * PS)
    p.write(a + PS, b"parent")
    assert c.read(a + PS, 6) == b"parent"
    assert m.stats["cow_copies"] == 0
    assert m.frames_free == 5


def test_readonly_shared_mapping_not_writable(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "r", shared=True)
    p.read(a, 1)
    raw = p.pte(a)
    assert raw & P.SHARED and raw & P.PRESENT and not raw & P.WRITABLE


# --- rule 4: copy on write -------------------------------------------------------------


def test_fork_cow_story_only_written_page_is_copied(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    A, B, C = a, a + PS, a + 2 * PS
    p.write(A, b"A" * PS)
    p.write(B, b"B" * PS)
    p.write(C, b"C" * PS)
    c = p.fork()
    assert m.frames_free == 5                 # fork copies no page
    s = snapshot(m)
    c.write(C, b"c")
    assert delta(m, s) == {"writes": 1, "minor_faults": 1, "cow_copies": 1, "tlb_misses": 1}
    assert [pfn_of(c, x) for x in (A, B, C)] == [0, 1, 3]
    assert [m.refcount(pfn) for pfn in range(4)] == [2, 2, 1, 1]
    assert c.read(C, PS) == b"c" + b"C" * (PS - 1)
    assert p.read(C, PS) == b"C" * PS
    d = P.decode(c.pte(C))
    assert d.writable and d.dirty and not d.cow
    assert P.decode(c.pte(A)).cow


def test_cow_write_with_refcount_one_reuses_frame(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"orig")
    c = p.fork()
    c.write(a, b"copy")                       # copy: parent's frame back to refcount 1
    assert m.refcount(0) == 1
    assert p.pte(a) & P.COW                   # parent's PTE still says COW
    free = m.frames_free
    s = snapshot(m)
    p.write(a, b"PARE")
    assert delta(m, s) == {"writes": 1, "minor_faults": 1, "cow_reuses": 1, "tlb_misses": 1}
    assert m.frames_free == free              # no frame allocated
    assert pfn_of(p, a) == 0
    d = P.decode(p.pte(a))
    assert d.writable and not d.cow
    assert p.read(a, 4) == b"PARE" and c.read(a, 4) == b"copy"


def test_cow_survivor_writes_in_place_after_sharers_exit(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x" * (2 * PS))
    c1 = p.fork()
    c2 = p.fork()
    c1.exit()
    c2.exit()
    assert [m.refcount(0), m.refcount(1)] == [1, 1]
    s = snapshot(m)
    p.write(a, b"y" * (2 * PS))
    assert delta(m, s) == {"writes": 1, "minor_faults": 2, "cow_reuses": 2, "tlb_misses": 2}
    assert [pfn_of(p, a), pfn_of(p, a + PS)] == [0, 1]


def test_cow_write_by_parent_copies_while_child_shares(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"1")
    c = p.fork()
    p.write(a, b"2")
    assert m.stats["cow_copies"] == 1
    assert pfn_of(p, a) == 1 and pfn_of(c, a) == 0
    assert c.read(a, 1) == b"1"
    s = snapshot(m)
    c.write(a, b"3")                          # now the child is the sole user
    assert delta(m, s)["cow_reuses"] == 1
    assert pfn_of(c, a) == 0


def test_read_of_cow_page_takes_no_fault(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"shared")
    c = p.fork()
    s = snapshot(m)
    assert c.read(a, 6) == b"shared"
    assert p.read(a, 6) == b"shared"
    assert delta(m, s) == {"reads": 2, "tlb_misses": 2}
    assert pfn_of(c, a) == pfn_of(p, a) == 0


def test_xv6_simpletest_fork_more_than_half_of_memory(Machine):
    m = Machine(16)
    p = m.spawn()
    a = p.mmap(12 * PS)
    p.write(a, b"\x5a" * (12 * PS))
    free = m.frames_free
    assert free == 4
    c = p.fork()                              # without COW this could not fit
    c.exit(0)
    assert p.wait() == 0
    assert m.frames_free == free
    p.write(a, b"\x5b" * (12 * PS))           # sole user again: reuse, no allocation
    assert m.frames_free == free
    assert m.stats["cow_reuses"] == 12 and m.stats["cow_copies"] == 0
    m.check()


def test_xv6_threetest_three_generations(Machine):
    n = 10
    m = Machine(24)
    p = m.spawn()
    a = p.mmap(n * PS)

    def tag_pages(proc, count, value):
        for i in range(count):
            proc.write(a + i * PS, value.to_bytes(4, "little", signed=True))

    def tags(proc, count):
        return [int.from_bytes(proc.read(a + i * PS, 4), "little", signed=True)
                for i in range(count)]

    tag_pages(p, n, p.pid)
    free = m.frames_free
    c1 = p.fork()
    c2 = c1.fork()
    tag_pages(c2, 8, c2.pid)
    assert tags(c2, 8) == [c2.pid] * 8
    assert tags(c2, n)[8:] == [p.pid] * 2
    c2.exit(-1)
    tag_pages(c1, 5, 9999)
    c1.exit(0)
    assert c2.state == "exited"               # a zombie of an exiting parent is reaped
    tag_pages(p, n, p.pid)
    assert p.wait() == 0
    assert tags(p, n) == [p.pid] * n
    assert m.stats["cow_copies"] == 8 + 5
    assert m.stats["cow_reuses"] == n
    assert m.frames_free == free
    assert [m.refcount(pfn) for pfn in range(n)] == [1] * n
    m.check()


def test_xv6_forkforktest_frames_return(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"f" * (4 * PS))
    free = m.frames_free
    for _ in range(2):
        c = p.fork()
        for _ in range(20):
            g = c.fork()
            g.write(a, b"g")                  # a copy that the exit gives back
            g.exit(0)
            assert c.wait(g) == 0
        c.exit(0)
    assert p.wait() == 0
    assert p.wait() == 0
    with pytest.raises(pymmu.ProcessStateError):
        p.wait()
    assert m.frames_free == free
    assert [m.refcount(pfn) for pfn in range(4)] == [1] * 4
    assert m.stats["forks"] == 42 and p.stats["forks"] == 2
    assert p.read(a, 4 * PS) == b"f" * (4 * PS)
    m.check()


def test_fork_shares_frames_without_copying(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"d" * (4 * PS))
    s = snapshot(m)
    c = p.fork()
    assert delta(m, s) == {"forks": 1}
    assert m.frames_free == 4
    for i in range(4):
        assert pfn_of(c, a + i * PS) == pfn_of(p, a + i * PS) == i
        assert m.refcount(i) == 2


# --- rule 7: file-backed pages ----------------------------------------------------------


def _image(data=b"DATA" * 8, prot="rw", memsz=None, vaddr=0x400000):
    return pymmu.Image([pymmu.Segment(vaddr, prot, data=data, memsz=memsz)],
                       entry=vaddr, stack_size=PS)


def test_file_page_read_maps_readonly_cow_in_writable_mapping(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(_image())
    s = snapshot(m)
    assert p.read(0x400000, 8) == b"DATADATA"
    assert delta(m, s) == {"reads": 1, "major_faults": 1, "file_reads": 1, "tlb_misses": 1}
    d = P.decode(p.pte(0x400000))
    assert d.present and d.cow and d.readable and not d.writable and not d.dirty
    s = snapshot(m)
    p.write(0x400000, b"data")                # rule 4: refcount 1, reuse
    assert delta(m, s) == {"writes": 1, "minor_faults": 1, "cow_reuses": 1, "tlb_hits": 1}
    d = P.decode(p.pte(0x400000))
    assert d.writable and d.dirty and not d.cow
    assert p.read(0x400000, 12) == b"dataDATADATA"


def test_file_page_write_maps_writable_at_once(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(_image())
    s = snapshot(m)
    p.write(0x400002, b"ta")
    assert delta(m, s) == {"writes": 1, "major_faults": 1, "file_reads": 1, "tlb_misses": 1}
    d = P.decode(p.pte(0x400000))
    assert d.writable and d.dirty and not d.cow
    assert p.read(0x400000, 8) == b"DAtaDATA"


def test_file_page_in_readonly_mapping_has_no_cow(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(_image(prot="rx"))
    assert p.fetch(0x400000, 4) == b"DATA"
    d = P.decode(p.pte(0x400000))
    assert d.present and d.executable and not d.writable and not d.cow
    with pytest.raises(pymmu.ProtectionFault):
        p.write(0x400000, b"x")


def test_file_page_read_uses_dirty_frame_first(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(_image(memsz=2 * PS))
    p.write(0x400000 + PS, b"bss")            # bss: demand zero, pfn 0 from the pool
    assert pfn_of(p, 0x400000 + PS) == 0
    q = m.spawn()
    b = q.mmap(PS)
    q.write(b, b"q")                          # pfn 1
    q.exit()                                  # pfn 1 dirty
    p.read(0x400000, 1)                       # a file read: dirty set first
    assert pfn_of(p, 0x400000) == 1


def test_bss_pages_are_demand_zero(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(_image(data=b"abc", memsz=3 * PS))
    s = snapshot(m)
    assert p.read(0x400000 + PS, 4) == bytes(4)
    assert delta(m, s) == {"reads": 1, "minor_faults": 1, "zero_page_maps": 1, "tlb_misses": 1}
    s = snapshot(m)
    p.write(0x400000 + 2 * PS, b"z")
    assert delta(m, s) == {"writes": 1, "minor_faults": 1, "zero_fills": 1,
                           "zero_pool_hits": 1, "tlb_misses": 1}
    assert p.read(0x400000, 4) == b"abc\0"    # file bytes then zero in the same page
    assert m.stats["file_reads"] == 1


def test_each_process_reads_its_own_copy_of_an_image(Machine):
    m = Machine(8)
    img = _image()
    p, q = m.spawn(), m.spawn()
    p.exec(img)
    q.exec(img)
    assert p.read(0x400000, 4) == q.read(0x400000, 4) == b"DATA"
    assert m.stats["file_reads"] == 2
    assert pfn_of(p, 0x400000) != pfn_of(q, 0x400000)
    p.write(0x400000, b"pppp")
    assert q.read(0x400000, 4) == b"DATA"


def test_forked_child_shares_file_page_then_copies_on_write(Machine):
    m = Machine(8)
    p = m.spawn()
    p.exec(_image())
    p.read(0x400000, 1)
    c = p.fork()
    assert pfn_of(c, 0x400000) == pfn_of(p, 0x400000)
    assert m.refcount(pfn_of(p, 0x400000)) == 2
    c.write(0x400000, b"C")
    assert m.stats["cow_copies"] == 1
    assert m.stats["file_reads"] == 1
    assert p.read(0x400000, 4) == b"DATA" and c.read(0x400000, 4) == b"CATA"


def test_forked_child_reads_untouched_file_page_itself(Machine):
    m = Machine(8)
    p = m.spawn()
    p.exec(_image())
    c = p.fork()
    assert c.read(0x400000, 4) == b"DATA"
    assert c.stats["file_reads"] == 1 and p.stats["file_reads"] == 0
    assert p.pte(0x400000) == 0


# --- multi-page accesses -----------------------------------------------------------------


def test_write_spanning_pages_touches_each_in_order(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    data = bytes(range(256)) * 40             # 10240 bytes: pages 0, 1, 2 from a + 100
    s = snapshot(m)
    p.write(a + 100, data)
    assert delta(m, s) == {"writes": 1, "minor_faults": 3, "zero_fills": 3,
                           "zero_pool_hits": 3, "tlb_misses": 3}
    assert [pfn_of(p, a + i * PS) for i in range(3)] == [0, 1, 2]
    assert p.pte(a + 3 * PS) == 0
    s = snapshot(m)
    assert p.read(a + 100, len(data)) == data
    assert delta(m, s) == {"reads": 1, "tlb_hits": 3}


def test_read_spanning_present_and_absent_pages(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a + PS, b"mid")
    s = snapshot(m)
    got = p.read(a, 3 * PS)
    assert got == bytes(PS) + b"mid" + bytes(2 * PS - 3)
    assert delta(m, s) == {"reads": 1, "minor_faults": 2, "zero_page_maps": 2,
                           "tlb_misses": 2, "tlb_hits": 1}
    assert m.refcount(m.frames) == 2


def test_span_keeps_faulted_pages_resident_until_done(Machine):
    # Three pages in one call need three frames at once, swap or not.
    m = Machine(2, swap_slots=8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a, b"x" * (3 * PS))
    assert m.stats["writes"] == 0
    assert p.read(a, 2 * PS) == bytes(2 * PS)  # the two pages it got stay, zero
    m.check()


def test_access_of_zero_bytes_does_nothing(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    s = snapshot(m)
    assert p.read(a, 0) == b""
    assert p.fetch(a, 0) == b""
    p.write(a, b"")
    assert p.read(a + 10 * PS, 0) == b""      # even where nothing is mapped
    assert delta(m, s) == {}
    assert p.pte(a) == 0


# --- an operation that raises changes nothing -------------------------------------------


def test_segfault_on_later_page_changes_nothing(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a + 8, b"old")
    s, raw = snapshot(m), p.pte(a)
    with pytest.raises(pymmu.SegmentationFault) as e:
        p.write(a + PS - 2, b"new!")
    assert e.value.addr == a + PS             # the page start of the later page
    assert p.read(a + PS - 2, 2) == b"\0\0"
    with pytest.raises(pymmu.SegmentationFault) as e:
        p.read(a + PS - 2, 4)
    assert e.value.addr == a + PS
    s2 = snapshot(m)
    assert s2["writes"] == s["writes"] and s2["minor_faults"] == s["minor_faults"]
    assert p.pte(a) & ~(P.ACCESSED) == raw & ~(P.ACCESSED)
    m.check()


def test_failed_access_counts_nothing(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    b = p.mmap(PS, "r")
    s = snapshot(m)
    with pytest.raises(pymmu.ProtectionFault) as e:
        p.write(a + PS - 1, b"xy")            # page a is fine, page b is read-only
    assert (e.value.addr, e.value.access) == (b, "write")
    assert delta(m, s) == {}                  # checks come before any change
    assert p.pte(a) == 0
    assert m.frames_free == 4
    with pytest.raises(pymmu.SegmentationFault):
        p.read(b + PS - 1, 2)
    assert delta(m, s) == {}
    assert p.pte(b) == 0
    m.check()


def test_out_of_memory_without_swap_changes_no_byte(Machine):
    m = Machine(2)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"1")
    p.write(a + PS, b"2")
    with pytest.raises(pymmu.OutOfMemory) as e:
        p.write(a + 2 * PS, b"3")
    assert isinstance(e.value, pymmu.MMUError)
    assert m.stats["writes"] == 2
    assert p.read(a, 1) == b"1" and p.read(a + PS, 1) == b"2"
    assert p.read(a + 2 * PS, 1) == b"\0"     # the zero page needs no frame
    m.check()
    p.munmap(a, PS)
    p.write(a + 2 * PS, b"3")                 # now there is a frame
    assert p.read(a + 2 * PS, 1) == b"3"


def test_out_of_memory_in_a_span_writes_nothing(Machine):
    m = Machine(2)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a + PS, b"keep")
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + PS - 2, b"ABCDEF" + bytes(PS))   # pages 0, 1 fine, page 2 no frame
    assert p.read(a + PS, 4) == b"keep"
    assert p.read(a + PS - 2, 2) == b"\0\0"
    assert m.stats["writes"] == 1
    m.check()


# --- counters per access ----------------------------------------------------------------


def test_reads_writes_fetches_count_calls_not_pages(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS, "rwx")
    p.write(a, bytes(4 * PS))
    p.read(a, 4 * PS)
    p.read(a, 1)
    p.fetch(a + PS - 1, 2)
    assert (m.stats["reads"], m.stats["writes"], m.stats["fetches"]) == (2, 1, 1)
    assert (p.stats["reads"], p.stats["writes"], p.stats["fetches"]) == (2, 1, 1)


def test_events_count_in_the_process_that_caused_them(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"p")
    c = p.fork()
    c.write(a, b"c")
    c.read(a + PS, 1)
    assert c.stats["cow_copies"] == 1 and p.stats["cow_copies"] == 0
    assert c.stats["zero_page_maps"] == 1 and p.stats["zero_page_maps"] == 0
    assert p.stats["forks"] == 1 and c.stats["forks"] == 0
    assert p.stats["zero_fills"] == 1 and c.stats["zero_fills"] == 0
    for k in m.stats:
        assert m.stats[k] == p.stats[k] + c.stats[k], k


def test_reset_stats_zeroes_machine_counters_only(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    m.reset_stats()
    assert all(v == 0 for v in m.stats.values())
    assert p.stats["writes"] == 1 and p.stats["zero_fills"] == 1
    p.read(a, 1)
    assert m.stats["reads"] == 1 and m.stats["tlb_hits"] == 1


# --- the TLB --------------------------------------------------------------------------------


def test_tlb_hit_after_miss(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    p.read(a, 1)
    p.read(a, 1)
    assert (m.stats["tlb_misses"], m.stats["tlb_hits"]) == (1, 2)


def test_tlb_disabled_counts_nothing(Machine):
    m = Machine(4, tlb_entries=0)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"x" * (2 * PS))
    p.read(a, 2 * PS)
    p.read(a, 1)
    assert m.stats["tlb_hits"] == 0 and m.stats["tlb_misses"] == 0
    assert m.stats["minor_faults"] == 2


def test_tlb_is_direct_mapped_by_vpn(Machine):
    m = Machine(4, tlb_entries=2)
    p = m.spawn()
    a = p.mmap(3 * PS)                        # vpns 16, 17, 18: slots 0, 1, 0
    p.write(a, b"x" * (3 * PS))               # 3 misses
    p.read(a + PS, 1)                         # slot 1 kept vpn 17: hit
    p.read(a + 2 * PS, 1)                     # slot 0 holds vpn 18: hit
    p.read(a, 1)                              # vpn 16 was evicted: miss
    p.read(a + 2 * PS, 1)                     # and it evicted vpn 18: miss
    assert (m.stats["tlb_misses"], m.stats["tlb_hits"]) == (5, 2)


def test_tlb_entries_are_tagged_by_address_space(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")                          # miss
    c = p.fork()                              # flushes the parent's entries
    s = snapshot(m)
    p.read(a, 1)                              # miss (flushed)
    c.read(a, 1)                              # miss (other ASID; takes the slot)
    p.read(a, 1)                              # miss (one slot per vpn)
    assert delta(m, s) == {"reads": 3, "tlb_misses": 3}
    q = m.spawn()
    b = q.mmap(PS, addr=a)
    s = snapshot(m)
    q.read(b, 1)
    assert delta(m, s) == {"reads": 1, "tlb_misses": 1, "minor_faults": 1, "zero_page_maps": 1}
    assert p.read(a, 1) == b"x"


def test_tlb_invalidated_on_cow_break(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"1")
    c = p.fork()
    c.read(a, 1)                              # miss, fills the read-only COW entry
    c.write(a, b"2")                          # hit that does not allow the write: copy
    c.read(a, 1)                              # hit on the new entry
    assert (c.stats["tlb_misses"], c.stats["tlb_hits"]) == (1, 2)
    assert c.read(a, 1) == b"2" and p.read(a, 1) == b"1"


def test_tlb_invalidated_on_munmap(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"secret")
    p.munmap(a, PS)
    assert p.mmap(PS) == a
    s = snapshot(m)
    assert p.read(a, 6) == bytes(6)           # a stale entry would show b"secret"
    assert delta(m, s) == {"reads": 1, "tlb_misses": 1, "minor_faults": 1, "zero_page_maps": 1}


def test_tlb_invalidated_on_exec(Machine):
    m = Machine(4)
    p = m.spawn()
    p.mmap(PS, addr=0x400000)
    p.write(0x400000, b"old")
    p.exec(_image(data=b"new"))
    s = snapshot(m)
    assert p.read(0x400000, 3) == b"new"
    assert delta(m, s) == {"reads": 1, "tlb_misses": 1, "major_faults": 1, "file_reads": 1}


def test_tlb_invalidated_on_eviction(Machine):
    m = Machine(1, swap_slots=2)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"first")                      # miss
    p.read(a, 1)                              # hit
    p.write(a + PS, b"second")                # evicts page a
    assert P.decode(p.pte(a)).swapped
    s = snapshot(m)
    assert p.read(a, 5) == b"first"           # a stale entry would read the wrong frame
    d = delta(m, s)
    assert d["tlb_misses"] == 1 and "tlb_hits" not in d
    assert d["swap_ins"] == 1 and d["major_faults"] == 1


# --- properties --------------------------------------------------------------------------------


writes_strategy = st.lists(
    st.tuples(st.integers(0, 4 * PS - 1), st.binary(min_size=1, max_size=2 * PS)),
    min_size=1, max_size=6)


@given(parent_writes=writes_strategy, child_writes=writes_strategy)
def test_fork_isolates_private_memory(Machine, parent_writes, child_writes):
    m = Machine(16)
    p = m.spawn()
    a = p.mmap(4 * PS)
    model = bytearray(4 * PS)
    for off, data in parent_writes:
        data = data[:4 * PS - off]
        p.write(a + off, data)
        model[off:off + len(data)] = data
    c = p.fork()
    child_model = bytearray(model)
    for off, data in child_writes:
        data = data[:4 * PS - off]
        c.write(a + off, data)
        child_model[off:off + len(data)] = data
    assert p.read(a, 4 * PS) == bytes(model)
    assert c.read(a, 4 * PS) == bytes(child_model)
    m.check()
    c.exit()
    p.wait()
    p.exit()
    assert m.frames_free == 16
    m.check()
