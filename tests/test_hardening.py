"""Hardening (issue 11): huge images, foreign processes, long-lived machines that
keep no garbage, costs proportional to the work, exception types for absurd
numbers, and vfork children's trace replays.

Each test reproduces what an adversarial user did to break the previous version.
The timing tests compare a small and a four-times-larger run (a ratio, not an
absolute time) so that they hold on a slow CI machine; the memory tests measure
the growth over many cycles with ``tracemalloc`` or watch objects with weakrefs.
"""
from __future__ import annotations

import gc
import struct
import subprocess
import sys
import time
import tracemalloc
import weakref

import numpy as np
import pytest

import pymmu
from pymmu.errors import ProcessStateError, SegmentationFault
from pymmu.traces import LOAD, MODIFY, STORE, Trace

PS = 4096


def _elf(path, vaddr, data, memsz):
    """A minimal ET_EXEC x86-64 ELF file with one PT_LOAD segment (r-x)."""
    phoff, ehsize, phentsize = 64, 64, 56
    offset = phoff + phentsize
    header = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
              + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, vaddr, phoff, 0, 0,
                            ehsize, phentsize, 1, 64, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, vaddr, vaddr, len(data), memsz, 0x1000)
    path.write_bytes(header + phdr + data)
    return path


def _best_time(fn, repeat=2):
    """The fastest of ``repeat`` runs of ``fn()`` (which builds its own state)."""
    best = float("inf")
    for _ in range(repeat):
        t = fn()
        best = min(best, t)
    return best


# --- 3: images past the address space; no memory per page an image does not hold --


def test_exec_of_elf_segment_past_the_address_space_raises_at_once(Machine, tmp_path):
    pytest.importorskip("elftools")
    path = _elf(tmp_path / "huge", 0x400000, b"\x90" * 16, 0xFFFFFFFFFFFF)
    img = pymmu.Image.from_elf(path)
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    before = p.maps()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="address space"):
            p.exec(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0
    assert peak < 1 << 20
    # nothing changed
    assert p.maps() == before and p.state == "running"
    p.write(a, b"ok")
    m.check()


@pytest.mark.parametrize("va_bits", [32, 39])
def test_exec_of_segment_past_va_bits_raises_value_error(Machine, va_bits):
    m = Machine(4, va_bits=va_bits)
    p = m.spawn()
    top = 1 << va_bits
    for seg in (pymmu.Segment(top - PS, "r", b"x", memsz=2 * PS),
                pymmu.Segment(top, "r", b"x"),
                pymmu.Segment(0x10000, "rw", memsz=top)):
        with pytest.raises(ValueError, match="address space"):
            p.exec(pymmu.Image([seg], stack_size=0))
    assert p.maps() == [] and m.stats["execs"] == 0
    m.check()


def test_image_layout_costs_memory_per_file_page_not_per_bss_page():
    data = bytes(range(256)) * 40                        # 10 KiB: 3 file pages
    img = pymmu.Image([pymmu.Segment(0x400123, "rw", data, memsz=1 << 32)])
    tracemalloc.start()
    try:
        layout = img.layout(PS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10
    assert layout.runs == [(0x400, 0x400 + (1 << 20) + 1, 3)]
    assert layout.file_vpns.tolist() == [0x400, 0x401, 0x402]
    assert bytes(layout.page(0x400)[0x123:0x133]) == data[:16]
    assert layout.page(0x403) is None


def test_image_layout_runs_merge_pages_shared_by_segments():
    """Pages shared by byte-disjoint segments get the union of their protections,
    computed from the segments' ranges (not page by page)."""
    segs = [pymmu.Segment(0x1000, "r", b"a" * 0x10, memsz=0x1800),     # pages 1-2
            pymmu.Segment(0x2800, "rw", b"b", memsz=0x10),              # page 2
            pymmu.Segment(0x2900, "", memsz=0x10),                      # page 2
            pymmu.Segment(0x5000, "", memsz=0x3000),                    # pages 5-7
            pymmu.Segment(0x8000, "rx", memsz=1 << 24)]
    layout = pymmu.Image(segs).layout(PS)
    assert layout.runs == [(1, 2, 1), (2, 3, 3), (5, 8, 0),
                           (8, 8 + (1 << 12), 5)]
    assert layout.file_vpns.tolist() == [1, 2]


def test_exec_of_a_huge_bss_is_cheap(Machine):
    m = Machine(4)
    p = m.spawn()
    img = pymmu.Image([pymmu.Segment(0x400000, "rw", b"hi", memsz=1 << 34)])
    t0 = time.perf_counter()
    p.exec(img)
    assert time.perf_counter() - t0 < 1.0
    assert p.read(0x400000, 3) == b"hi\x00"
    assert p.read(0x400000 + (1 << 33), 2) == b"\x00\x00"
    m.check()


def test_segment_beyond_2_to_the_64_raises_value_error(Machine):
    with pytest.raises(ValueError, match="2\\*\\*64"):
        pymmu.Segment(1 << 80, "r", b"x")
    with pytest.raises(ValueError, match="2\\*\\*64"):
        pymmu.Segment((1 << 64) - PS, "r", b"x", memsz=2 * PS)


# --- 4: processes of another machine ---------------------------------------------


def test_wait_for_a_process_of_another_machine_raises_and_reaps_nothing(Machine):
    m1, m2 = Machine(4), Machine(4)
    p1 = m1.spawn()
    c1 = p1.fork()                    # pid 2 in m1
    c1.exit(7)
    p2 = m2.spawn()
    c2 = p2.fork()                    # pid 2 in m2 too
    c2.exit(9)
    assert c1.pid == c2.pid
    with pytest.raises(ProcessStateError, match="another Machine"):
        p1.wait(c2)
    assert c1.state == "zombie" and c2.state == "zombie"
    with pytest.raises(ValueError, match="this machine"):
        m1.replay(Trace([0x10000]), process=p2)
    assert p1.wait(c1) == 7 and p2.wait(c2) == 9


# --- 5: long-lived machines keep no garbage ----------------------------------------


def _growth_per_cycle(cycle, n=300, warm=30):
    """Traced bytes still allocated per call of ``cycle()``, after a warm-up."""
    for i in range(warm):
        cycle(i)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            cycle(i)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return grown / n


def test_reaped_and_exited_processes_are_let_go(Machine):
    m = Machine(8)
    p = m.spawn()
    refs = []
    for _ in range(20):
        c = p.fork()
        c.exit(1)
        p.wait(c)
        q = m.spawn()
        q.exit()
        v = p.vfork()
        v.exit()
        p.wait()
        refs += [weakref.ref(x) for x in (c, q, v)]
    del c, q, v
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert [x.pid for x in m.processes()] == [p.pid]


def test_a_reaped_process_held_by_the_caller_stays_findable(Machine):
    m = Machine(4)
    p = m.spawn()
    c = p.fork()
    c.exit()
    p.wait()
    assert m.process(c.pid) is c and c.state == "exited"
    pid = c.pid
    del c
    gc.collect()
    with pytest.raises(KeyError):
        m.process(pid)
    with pytest.raises(KeyError):
        m.process(pid + 100)


def test_exec_images_are_let_go(Machine):
    m = Machine(8)
    p = m.spawn()
    refs = []

    def image(i):
        img = pymmu.Image([pymmu.Segment(0x400000, "r-x", bytes([i % 256]) * 3 * PS)],
                          stack_size=PS)
        refs.append(weakref.ref(img))
        return img

    for i in range(10):
        c = p.fork()
        c.exec(image(i))                       # exec, exit, reaped
        assert c.read(0x400000, 1) == bytes([i])
        c.exec(image(i + 1))                   # exec again: the first is let go
        c.exit()
        p.wait(c)
        p.exec(image(i + 2))                   # the parent execs over and over
    assert p.read(0x400000, 1) == bytes([11])
    gc.collect()
    assert [r for r in refs[:-1] if r() is not None] == []     # all but p's current one
    m.check()


def test_exec_exit_cycles_do_not_grow_memory():
    m = pymmu.Machine(8)
    p = m.spawn()

    def cycle(i):
        c = p.fork()
        c.exec(pymmu.Image([pymmu.Segment(0x400000, "r-x", b"\xcc" * 16 * PS)]))
        c.read(0x400000, 1)
        c.exit()
        p.wait(c)
    assert _growth_per_cycle(cycle) < 400


def test_replay_without_a_process_leaves_nothing_behind(Machine):
    m = Machine(8)
    t = Trace([0x10000, 0x20000], kind=[LOAD, STORE])
    refs = []
    real_spawn = m.spawn

    def spawn():
        q = real_spawn()
        refs.append(weakref.ref(q))
        return q
    m.spawn = spawn
    for _ in range(5):
        m.replay(t)
    del m.spawn
    gc.collect()
    assert len(refs) == 5 and all(r() is None for r in refs)
    assert m.processes() == []


def test_replay_without_a_process_does_not_grow_memory():
    m = pymmu.Machine(8)
    t = Trace([0x10000, 0x20000], kind=[LOAD, STORE])
    assert _growth_per_cycle(lambda i: m.replay(t)) < 200


def test_spawn_exit_cycles_do_not_grow_memory():
    m = pymmu.Machine(8)
    p = m.spawn()

    def cycle(i):
        c = p.fork()
        c.exit()
        p.wait(c)
        m.spawn().exit()
    assert _growth_per_cycle(cycle) < 200


# --- 6: costs proportional to the work ------------------------------------------


def _reap_time(Machine, n, how):
    m = Machine(4)
    p = m.spawn()
    kids = []
    for _ in range(n):
        c = p.fork()
        c.exit(c.pid % 256)
        kids.append(c)
    t0 = time.perf_counter()
    if how == "any":
        for c in kids:
            assert p.wait() == c.pid % 256
    else:                              # by pid, newest first: the other end of any list
        for c in reversed(kids):
            assert p.wait(c.pid) == c.pid % 256
    return time.perf_counter() - t0


@pytest.mark.parametrize("how", ["any", "pid"])
def test_wait_does_not_scan_every_child(Machine, how):
    small = _best_time(lambda: _reap_time(Machine, 1000, how))
    large = _best_time(lambda: _reap_time(Machine, 4000, how))
    assert large < 8 * small + 0.02, (small, large)


def test_wait_by_pid_leaves_no_stale_zombie_bookkeeping():
    m = pymmu.Machine(4)
    p = m.spawn()

    def cycle(i):
        c = p.fork()
        c.exit()
        p.wait(c)                       # never wait(): nothing pops the zombie heap
    assert _growth_per_cycle(cycle, n=500) < 200


def _shared_exit_time(n):
    m = pymmu.Machine(4)
    p = m.spawn()
    a = p.mmap(PS, shared=True)
    p.write(a, b"x")
    kids = [p.fork() for _ in range(n)]
    t0 = time.perf_counter()
    for c in reversed(kids):
        c.exit()
    return time.perf_counter() - t0


def test_exits_with_shared_mappings_do_not_rescan_every_space():
    small = _best_time(lambda: _shared_exit_time(500))
    large = _best_time(lambda: _shared_exit_time(2000))
    assert large < 8 * small + 0.02, (small, large)


def test_shared_mmap_munmap_keep_working_after_forks_and_splits(Machine):
    """The per-space bookkeeping of shared objects: an object is freed when the
    last space that maps any part of it lets go, not before."""
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS, shared=True)
    p.write(a, b"A" * 4 * PS)
    c = p.fork()
    p.munmap(a + PS, PS)                       # a split: two pieces of one object
    p.munmap(a, PS)
    assert c.read(a + 3 * PS, 1) == b"A"
    p.munmap(a + 2 * PS, 2 * PS)               # p holds no piece any more
    assert c.read(a, 1) == b"A"
    assert m.frames_free == 4
    c.exit()
    p.wait(c)
    assert m.frames_free == 8
    m.check()


def test_huge_shared_mapping_costs_memory_only_for_the_pages_it_holds(Machine):
    # A shared object keeps its pages in a sparse tree (include/objmap.h): 2**46
    # bytes (2**34 pages: 128 GiB at 8 bytes a page) map at once, and cost only
    # what is touched. Past the address space it is a ValueError as ever.
    m = Machine(4, swap_slots=8)
    p = m.spawn()
    a = p.mmap(1 << 46, shared=True)
    c = p.fork()
    for off in (0, (1 << 45) + 5 * PS, (1 << 46) - PS):
        p.write(a + off, b"far")
        assert c.read(a + off, 3) == b"far"
    for i in range(6):                         # push them through swap and back
        p.write(a + i * PS, bytes([i]))
    assert c.read(a + (1 << 46) - PS, 3) == b"far"
    m.check()
    c.exit()
    p.wait(c)
    p.munmap(a, 1 << 46)
    assert m.frames_free == m.frames and m.swap_free == m.swap_slots
    with pytest.raises(ValueError):
        p.mmap(1 << 48, shared=True)
    m.check()


# --- 7: exception types for absurd numbers ----------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    (dict(tlb_entries=2 ** 63), "tlb_entries"),
    (dict(tlb_entries=2 ** 62), "tlb_entries"),
    (dict(zero_pool=2 ** 63), "zero_pool"),
    (dict(zero_pool=2 ** 80), "zero_pool"),
])
def test_absurd_machine_numbers_raise_value_error(Machine, kwargs, name):
    with pytest.raises(ValueError, match=name):
        Machine(1, **kwargs)


def test_idle_with_an_absurd_count_raises_value_error(Machine):
    m = Machine(4)
    with pytest.raises(ValueError, match="n must"):
        m.idle(2 ** 63)
    assert m.idle(2 ** 62) == 0


@pytest.mark.parametrize("data", [
    np.empty(0, np.uint8), np.empty(0), np.empty((0, 4)), np.empty((4, 0)),
    np.zeros((3, 3))[:, :0], np.empty(0, np.uint8).reshape(0, 1, 1),
    memoryview(b""), bytearray(),
], ids=lambda d: f"{type(d).__name__}{getattr(d, 'shape', '')}")
def test_writing_empty_data_does_nothing(Machine, data):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, data)
    assert m.stats["writes"] == 0 and p.translate(a) is None


def test_writing_an_object_array_is_a_type_error(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    with pytest.raises(TypeError, match="object"):
        p.write(a, np.array([object()], dtype=object))
    assert p.translate(a) is None


def test_cli_simulate_with_absurd_frames_is_one_line(tmp_path):
    trace = tmp_path / "t.trace"
    trace.write_text("R 0x1000\nW 0x2000\n")
    r = subprocess.run([sys.executable, "-m", "pymmu", "simulate", str(trace),
                        "--frames", "1000000000"], capture_output=True, text=True,
                       cwd="/")    # (not the source tree: CI installs pymmu)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# --- 8: a vfork child's replay writes into its parent -----------------------------


def _vfork_setup(Machine, **kw):
    m = Machine(8, **kw)
    p = m.spawn()
    a = p.mmap(4 * PS)
    v = p.vfork()
    return m, p, v, a


def test_vfork_child_replay_counts_its_stores(Machine):
    m, p, v, a = _vfork_setup(Machine)
    t = Trace([a, a + 8, a + PS, a + 2 * PS, a + 3 * PS], kind=[LOAD, STORE, MODIFY,
                                                               LOAD, STORE])
    out = m.replay(t, process=v)
    assert out["vfork_child_writes"] == 3 and out["writes"] == 3
    assert m.stats["vfork_child_writes"] == 3 == v.stats["vfork_child_writes"]
    # streamed in chunks: the same rule
    out = m.replay([t[:2], t[2:4], t[4:]], process=v)
    assert out["vfork_child_writes"] == 3
    v.exit()
    assert p.state == "running" and p.pte(a + 3 * PS) != 0       # landed in the parent
    # the parent's own replay counts nothing
    assert m.replay(t, process=p)["vfork_child_writes"] == 0


def test_vfork_child_replay_counts_only_completed_stores(Machine):
    m, p, v, a = _vfork_setup(Machine)
    t = Trace([a, a + PS, 0x10, a + 2 * PS], kind=[STORE, MODIFY, STORE, STORE])
    with pytest.raises(SegmentationFault) as e:
        m.replay(t, process=v)
    assert e.value.index == 2
    assert m.stats["vfork_child_writes"] == 2 and m.stats["writes"] == 2
    with pytest.raises(SegmentationFault) as e:
        m.replay([t[:1], t[1:3], t[3:]], process=v)
    assert e.value.index == 2
    assert m.stats["vfork_child_writes"] == 4


@pytest.mark.parametrize("chunks", [None, 1, 2])
def test_strict_vfork_child_replay_stops_at_the_first_store(Machine, chunks):
    m, p, v, a = _vfork_setup(Machine, strict_vfork=True)
    t = Trace([a, a + PS, a + 2 * PS, a + 3 * PS], kind=[LOAD, LOAD, MODIFY, LOAD])
    trace = t if chunks is None else [t[i:i + chunks] for i in range(0, len(t), chunks)]
    with pytest.raises(ProcessStateError, match="strict_vfork") as e:
        m.replay(trace, process=v)
    assert e.value.index == 2
    assert m.stats["reads"] == 2 and m.stats["writes"] == 0
    assert m.stats["vfork_child_writes"] == 0
    assert p.pte(a + 2 * PS) == 0 and p.pte(a + 3 * PS) == 0       # nothing of it
    assert m.replay(t[:2], process=v)["reads"] == 2                 # reads stay allowed
    v.exit()
    m.check()


def test_strict_vfork_replay_reports_a_bad_record_before_the_store(Machine):
    m, p, v, a = _vfork_setup(Machine, strict_vfork=True)
    t = Trace([a, 0x10, a + PS], kind=[LOAD, LOAD, STORE])
    with pytest.raises(SegmentationFault) as e:
        m.replay(t, process=v)
    assert e.value.index == 1 and m.stats["reads"] == 1


def test_shared_mmap_munmap_cycles_do_not_grow_memory():
    m = pymmu.Machine(8)
    p = m.spawn()

    def cycle(i):
        a = p.mmap(PS, shared=True)
        p.write(a, b"x")
        p.munmap(a, PS)
    assert _growth_per_cycle(cycle) < 48


def test_snapshots_keep_exited_processes_held_and_images_in_use(Machine):
    import copy
    import pickle

    m = Machine(8)
    p = m.spawn()
    img = pymmu.Image([pymmu.Segment(0x400000, "r-x", b"\xc3" * 10)], stack_size=PS)
    p.exec(img)
    c = p.fork()
    c.exit(5)
    p.wait(c)
    for m2, c2 in (pickle.loads(pickle.dumps((m, c))), copy.deepcopy((m, c))):
        assert m2.process(c.pid) is c2 and c2.state == "exited"
        m2.check()
        p2 = m2.process(p.pid)
        assert p2.fetch(0x400000, 1) == b"\xc3"
        q = p2.fork()
        q.exec(img)                       # the original image, in the copy
        p2.exec(pymmu.Image([pymmu.Segment(0x400000, "r", b"x")], stack_size=PS))
        q.exit()
        p2.wait()
        m2.check()
    m.check()


def test_exec_of_an_image_without_segments_registers_nothing(Machine):
    m = Machine(4)
    p = m.spawn()
    p.exec(pymmu.Image([], stack_size=PS))
    m.check()
    p.exec(pymmu.Image([pymmu.Segment(0x10000, "r", b"x")], stack_size=0))
    p.exec(pymmu.Image([], stack_size=0))
    assert p.maps() == []
    m.check()
