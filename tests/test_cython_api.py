"""The Cython API (DESIGN.md section 11): an extension built against pymmu/core.pxd
calls a process's memory without the GIL, with the Python API's results, counters
and exceptions. The extension (tests/data/cysim.pyx) is compiled once per session.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import pymmu

HERE = os.path.dirname(os.path.abspath(__file__))
PS = 4096

SETUP = """
import numpy, pymmu
from Cython.Build import cythonize
from setuptools import Extension, setup
setup(ext_modules=cythonize(
    [Extension("cysim", ["cysim.pyx"],
               include_dirs=[pymmu.get_include(), numpy.get_include()])],
    include_path=[pymmu.get_include()], language_level=3))
"""


@pytest.fixture(scope="module")
def cysim(tmp_path_factory):
    pytest.importorskip("Cython")
    d = tmp_path_factory.mktemp("cysim")
    shutil.copy(os.path.join(HERE, "data", "cysim.pyx"), d)
    (d / "setup.py").write_text(SETUP)
    out = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=d,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sys.path.insert(0, str(d))
    try:
        import cysim
    finally:
        sys.path.remove(str(d))
    return cysim


def test_get_include_holds_the_headers():
    inc = pymmu.get_include()
    for name in ("core.pxd", "_core.pxd", "_pte.pxd", "include/pte.h", "include/frame.h",
                 "include/lowset.h", "include/events.h"):
        assert os.path.isfile(os.path.join(inc, "pymmu", name)), name


def pair():
    """Two identical machines with one process each."""
    out = []
    for _ in range(2):
        m = pymmu.Machine(4, swap_slots=16, tlb_entries=4)
        p = m.spawn()
        a = p.mmap(8 * PS)
        out.append((m, p, a))
    return out


def test_results_and_counters_equal_the_python_calls(cysim):
    (m1, p1, a), (m2, p2, _) = pair()
    for i in range(8):                       # under pressure: faults, evictions, swap
        p1.write(a + i * PS + 5, bytes([i + 1]) * 9)
        cysim.write(p2, a + i * PS + 5, bytes([i + 1]) * 9)
    for i in (0, 7, 3, 3, 1):
        assert cysim.read(p2, a + i * PS, 20) == p1.read(a + i * PS, 20)
    assert cysim.read(p2, a + PS - 3, 6) == p1.read(a + PS - 3, 6)   # spans two pages
    assert m1.stats == m2.stats and p1.stats == p2.stats
    assert m1.frame_table().tolist() == m2.frame_table().tolist()
    for addr in (a, a + 3 * PS + 7, a + 100 * PS):
        assert cysim.translate(p2, addr) == p2.translate(addr)
    m2.check()


@pytest.mark.parametrize("call, error", [
    (lambda c, p, a: c.read(p, 0x10, 4), pymmu.SegmentationFault),
    (lambda c, p, a: c.read(p, 1 << 60, 4), pymmu.SegmentationFault),
    (lambda c, p, a: c.fetch(p, a, 4), pymmu.ProtectionFault),
    (lambda c, p, a: c.write(p, a + 8 * PS - 2, b"abcd"), pymmu.SegmentationFault),
])
def test_statuses_raise_the_python_exceptions(cysim, call, error):
    m = pymmu.Machine(4)
    p = m.spawn()
    a = p.mmap(8 * PS)
    before = m.stats
    with pytest.raises(error) as e:
        call(cysim, p, a)
    assert e.value.pid == p.pid
    assert m.stats == before                 # a refused access changes nothing
    m.check()


def test_out_of_memory_and_state(cysim):
    m = pymmu.Machine(1)
    p = m.spawn()
    a = p.mmap(2 * PS)
    cysim.write(p, a, b"x")
    with pytest.raises(pymmu.OutOfMemory):
        cysim.write(p, a + PS, b"y")
    c = p.vfork()                             # p is suspended now
    with pytest.raises(pymmu.ProcessStateError):
        cysim.read(p, a, 1)
    assert cysim.read(c, a, 1) == b"x"        # the child borrows the space
    m.check()


def test_a_loop_without_the_gil(cysim):
    m = pymmu.Machine(16, swap_slots=64)
    p = m.spawn()
    a = p.mmap(32 * PS)
    total = cysim.sweep(p, a, 32, PS, 5)
    assert total == sum((i + r) & 0xFF for r in range(5) for i in range(32))
    assert m.stats["writes"] == m.stats["reads"] == 160
    m.check()


def test_busy_while_a_replay_runs(cysim):
    m = pymmu.Machine(64, swap_slots=4096, zero_page=False)
    p = m.spawn()
    p.mmap(1 << 30, addr=0)
    t = pymmu.traces.Trace(np.random.default_rng(1).integers(0, 4000, 2_000_000)
                           .astype(np.uint64) * PS)
    worker = threading.Thread(target=m.replay, args=(t,), kwargs={"process": p})
    worker.start()
    refused = 0
    while worker.is_alive():
        try:
            cysim.read(p, 0, 1)
        except RuntimeError:
            refused += 1
    worker.join()
    m.check()
    assert cysim.read(p, 0, 1) == b"\0"


class _MapRaises(pymmu.Policy):
    def on_map(self, pfn):
        raise KeyError(f"on_map {pfn}")

    def victim(self, view):
        return None


def test_a_failed_access_drops_its_hooks_error(cysim):
    # page 1 maps (on_map raises), page 2 finds no frame: OutOfMemory is what the
    # access raises, and the hook's exception must not surface on a later call
    m = pymmu.Machine(1, policy=_MapRaises())
    p = m.spawn()
    a = p.mmap(2 * PS)
    with pytest.raises(pymmu.OutOfMemory):
        cysim.write(p, a + PS - 1, b"xy")
    assert p.read(a, 1) == b"\0" and cysim.read(p, a, 1) == b"\0"
    with pytest.raises(pymmu.OutOfMemory):
        p.write(a + PS - 1, b"xy")          # the Python path, the same rule
    assert p.read(a, 1) == b"\0"
    m.check()


class _IndexRaises:
    def __index__(self):
        raise KeyError("index")


class _BadVictim(pymmu.Policy):
    def victim(self, view):
        return _IndexRaises()


@pytest.mark.parametrize("swap", [0, 4])
def test_a_victim_whose_conversion_raises_is_pymmu_hook(cysim, swap):
    # issue 16, item 1: the answer's __index__ raising is the victim's error
    # (PYMMU_HOOK, raise_status raises it) and the write changes nothing
    m = pymmu.Machine(2, swap_slots=swap, zero_page=False, policy=_BadVictim())
    p = m.spawn()
    a = p.mmap(4 * PS)
    cysim.write(p, a, b"a" * 8)
    cysim.write(p, a + PS, b"b" * 8)
    free = m.frames_free, m.swap_free
    with pytest.raises(KeyError):
        cysim.write(p, a + 2 * PS - 4, b"x" * 8)
    assert (m.frames_free, m.swap_free) == free
    assert cysim.read(p, a, 8) == b"a" * 8 and cysim.read(p, a + PS, 8) == b"b" * 8
    assert p.translate(a + 2 * PS) is None
    m.check()
