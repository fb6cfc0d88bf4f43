"""The public API contract (DESIGN.md section 7, semantics.md sections 1, 3, 7).

Argument checking (TypeError / ValueError with a message), Machine attributes,
``m.process``, the error classes and their attributes, rss / pss / uss,
``page_table()`` and ``pymmu.pte``, and the exact set of counters.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pymmu
from pymmu import pte as P

PS = 4096

STAT_KEYS = [
    "reads", "writes", "fetches", "minor_faults", "major_faults", "zero_page_maps",
    "zero_fills", "zero_pool_hits", "cow_copies", "cow_reuses", "evictions",
    "swap_outs", "swap_ins", "swap_cache_hits", "file_reads", "tlb_hits",
    "tlb_misses", "forks", "vforks", "execs", "vfork_child_writes",
]


# --- Machine construction -------------------------------------------------------------


def test_machine_defaults(Machine):
    m = Machine(8)
    assert (m.frames, m.page_size, m.swap_slots, m.frames_free, m.swap_free) == (
        8, 4096, 0, 8, 0)
    m = Machine(frames=3, page_size=512, swap_slots=5)
    assert (m.frames, m.page_size, m.swap_slots, m.frames_free, m.swap_free) == (
        3, 512, 5, 3, 5)


@pytest.mark.parametrize("kwargs", [
    dict(frames=1), dict(frames=4, page_size=512), dict(frames=4, page_size=65536),
    dict(frames=4, swap_slots=0), dict(frames=4, va_bits=32), dict(frames=4, va_bits=39),
    dict(frames=4, zero_pool=0), dict(frames=4, zero_pool=None), dict(frames=4, tlb_entries=0),
    dict(frames=4, policy="fifo"), dict(frames=4, policy="lru"),
    dict(frames=4, policy="random", seed=-3), dict(frames=4, policy="opt"),
    dict(frames=4, zero_page=False, strict_vfork=True),
    dict(frames=np.int64(4), page_size=np.int32(8192), swap_slots=np.uint8(2)),
])
def test_machine_accepts_valid_arguments(Machine, kwargs):
    m = Machine(**kwargs)
    assert m.frames == int(kwargs["frames"])
    assert type(m.frames) is int and type(m.page_size) is int
    m.check()


@pytest.mark.parametrize("kwargs,word", [
    (dict(frames=0), "frames"),
    (dict(frames=-1), "frames"),
    (dict(frames=4, page_size=256), "page_size"),
    (dict(frames=4, page_size=131072), "page_size"),
    (dict(frames=4, page_size=4000), "page_size"),
    (dict(frames=4, page_size=0), "page_size"),
    (dict(frames=4, swap_slots=-1), "swap_slots"),
    (dict(frames=4, policy="lfu"), "policy"),
    (dict(frames=4, policy="CLOCK"), "policy"),
    (dict(frames=4, va_bits=40), "va_bits"),
    (dict(frames=4, va_bits=64), "va_bits"),
    (dict(frames=4, zero_pool=-1), "zero_pool"),
    (dict(frames=4, tlb_entries=-1), "tlb_entries"),
])
def test_machine_bad_value_raises_valueerror_naming_it(Machine, kwargs, word):
    with pytest.raises(ValueError, match=word):
        Machine(**kwargs)


@pytest.mark.parametrize("kwargs,word", [
    (dict(frames=4.0), "frames"),
    (dict(frames=True), "frames"),
    (dict(frames="4"), "frames"),
    (dict(frames=None), "frames"),
    (dict(frames=4, page_size=4096.0), "page_size"),
    (dict(frames=4, swap_slots=False), "swap_slots"),
    (dict(frames=4, policy=1), "policy"),
    (dict(frames=4, va_bits="48"), "va_bits"),
    (dict(frames=4, zero_pool=1.5), "zero_pool"),
    (dict(frames=4, tlb_entries=True), "tlb_entries"),
    (dict(frames=4, seed=0.5), "seed"),
])
def test_machine_bad_type_raises_typeerror_naming_it(Machine, kwargs, word):
    with pytest.raises(TypeError, match=word):
        Machine(**kwargs)


def test_machine_options_are_keyword_only(Machine):
    with pytest.raises(TypeError):
        Machine(4, 4096)


# --- m.process, errors -----------------------------------------------------------------------


def test_process_unknown_pid_raises_keyerror(Machine):
    m = Machine(4)
    with pytest.raises(KeyError):
        m.process(1)
    p = m.spawn()
    assert m.process(1).pid == p.pid == 1
    with pytest.raises(KeyError):
        m.process(2)
    with pytest.raises(KeyError):
        m.process(0)


def test_error_class_hierarchy():
    assert issubclass(pymmu.MemoryFault, pymmu.MMUError)
    assert issubclass(pymmu.SegmentationFault, pymmu.MemoryFault)
    assert issubclass(pymmu.ProtectionFault, pymmu.MemoryFault)
    for cls in (pymmu.OutOfMemory, pymmu.ProcessStateError, pymmu.InvariantError):
        assert issubclass(cls, pymmu.MMUError)
        assert not issubclass(cls, pymmu.MemoryFault)


@pytest.mark.parametrize("access,call", [
    ("read", lambda p, a: p.read(a, 2)),
    ("write", lambda p, a: p.write(a, b"xy")),
    ("execute", lambda p, a: p.fetch(a, 2)),
])
def test_memory_faults_carry_addr_access_pid(Machine, access, call):
    m = Machine(4)
    m.spawn()                                 # pid 1
    p = m.spawn()                             # pid 2
    g = p.mmap(PS, "")
    with pytest.raises(pymmu.SegmentationFault) as e:
        call(p, 0x5000)
    assert (e.value.addr, e.value.access, e.value.pid) == (0x5000, access, 2)
    with pytest.raises(pymmu.ProtectionFault) as e:
        call(p, g + 17)
    assert (e.value.addr, e.value.access, e.value.pid) == (g + 17, access, 2)
    assert "0x" in str(e.value)


def test_check_returns_none_on_a_healthy_machine(Machine):
    m = Machine(4)
    assert m.check() is None


# --- bad input to process calls -------------------------------------------------------------


def test_mmap_bad_length(Machine):
    m = Machine(4)
    p = m.spawn()
    for bad in (0, -1, -PS):
        with pytest.raises(ValueError):
            p.mmap(bad)
    for bad in (1.5, "4096", None):
        with pytest.raises(TypeError):
            p.mmap(bad)
    with pytest.raises(TypeError):
        p.mmap(PS, addr=65536.0)
    assert p.maps() == []
    assert p.mmap(np.int64(PS)) == 0x10000


def test_read_bad_arguments(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    with pytest.raises(ValueError):
        p.read(a, -1)
    with pytest.raises(ValueError):
        p.read(-1, 1)
    for addr, n in ((a, 1.0), (float(a), 1), ("a", 1), (a, None)):
        with pytest.raises(TypeError):
            p.read(addr, n)
    with pytest.raises(TypeError):
        p.fetch(a, "1")
    assert m.stats["reads"] == 0
    assert isinstance(p.read(np.uint64(a), np.int32(3)), bytes)


@pytest.mark.parametrize("bad", ["text", 5, None, [1, 2], 1.5])
def test_write_rejects_non_bytes_like(Machine, bad):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    with pytest.raises(TypeError):
        p.write(a, bad)
    assert m.stats["writes"] == 0
    assert p.pte(a) == 0


def test_write_accepts_any_bytes_like(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"by")
    p.write(a + 2, bytearray(b"ba"))
    p.write(a + 4, memoryview(b"mvXX")[:2])
    p.write(a + 6, np.frombuffer(b"np", np.uint8))
    words = np.array([0x01020304, 0x0A0B0C0D], dtype="<u4")
    p.write(a + 8, words)                     # any dtype: its raw bytes
    p.write(a + 16, np.arange(8, dtype=np.uint8)[::2])   # non-contiguous: its elements
    assert p.read(a, 20) == b"bybamvnp" + words.tobytes() + bytes([0, 2, 4, 6])
    assert m.stats["writes"] == 6


def test_read_and_fetch_return_bytes(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    out = p.read(a, 4)
    assert type(out) is bytes
    assert type(p.fetch(p.mmap(PS, "rx"), 1)) is bytes


def test_translate_and_pte_never_fault(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS, "")                        # a guard page: translate still answers
    assert p.translate(a) is None and p.pte(a) == 0
    assert p.translate(0) is None and p.pte(0) == 0
    assert p.translate(2 ** 48) is None and p.pte(2 ** 48) == 0
    b = p.mmap(PS)
    p.write(b + 5, b"x")
    assert p.translate(b + 5) == 5            # pfn 0, offset 5
    assert type(p.pte(b)) is int
    with pytest.raises(TypeError):
        p.translate("0x10000")


# --- rss, pss, uss -------------------------------------------------------------------------------


def test_rss_counts_resident_pages_but_not_zero_page(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, b"x" * (3 * PS))
    p.read(a + 3 * PS, 1)                     # zero page: not counted
    assert (p.rss, p.pss, p.uss) == (3 * PS, 3 * PS, 3 * PS)


def test_pss_and_uss_after_fork_and_cow(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"x" * (3 * PS))
    c = p.fork()
    for proc in (p, c):
        assert (proc.rss, proc.pss, proc.uss) == (3 * PS, 3 * PS // 2, 0)
    c.write(a + 2 * PS, b"c")                 # C is now unique in each
    for proc in (p, c):
        assert (proc.rss, proc.pss, proc.uss) == (3 * PS, PS + PS, PS)


def test_pss_rounds_down_at_the_end(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"s" * PS)
    p.fork(), p.fork()                        # two sharers of the first page
    assert p.pss == PS // 3 == 1365           # 4096 / 3 = 1365.33
    p.write(a + PS, b"s" * (2 * PS))          # two more pages, before further forks
    assert p.pss == PS // 3 + 2 * PS
    p2 = m.spawn()
    b = p2.mmap(3 * PS)
    p2.write(b, b"t" * (3 * PS))
    d1, d2 = p2.fork(), p2.fork()
    # 3 pages each shared by 3 processes: 3 * 4096 / 3 = 4096 exactly, not 3 * 1365
    assert p2.pss == d1.pss == d2.pss == PS


def test_shared_mapping_pages_count_in_rss_and_pss(Machine):
    m = Machine(8)
    p = m.spawn()
    s = p.mmap(2 * PS, shared=True)
    p.write(s, b"s" * (2 * PS))
    c = p.fork()
    c.read(s, 1)
    assert (p.rss, p.pss, p.uss) == (2 * PS, PS, 0)
    c.munmap(s, PS)
    assert (p.rss, p.pss, p.uss) == (2 * PS, PS + PS // 2, PS)
    assert (c.rss, c.pss, c.uss) == (PS, PS // 2, 0)


# --- page_table() and pymmu.pte ------------------------------------------------------------------


def test_page_table_dtype_and_rows(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(4 * PS, "rwx")
    p.write(a + 2 * PS, b"w")                 # pfn 0
    p.read(a, 1)                              # zero page
    c = p.fork()
    pt = p.page_table()
    assert isinstance(pt, np.ndarray)
    assert pt.dtype == P.PAGE_TABLE_DTYPE
    assert pt["vaddr"].tolist() == [a, a + 2 * PS]           # sorted, one row per PTE
    assert pt["pte"].tolist() == [p.pte(a), p.pte(a + 2 * PS)]
    assert pt["pfn"].tolist() == [m.frames, 0]
    assert pt["swap_slot"].tolist() == [-1, -1]
    assert pt["present"].tolist() == [True, True]
    assert pt["zero"].tolist() == [True, False]
    assert pt["cow"].tolist() == [False, True]
    assert pt["writable"].tolist() == [False, False]
    assert pt["executable"].tolist() == [True, True]
    assert pt["dirty"].tolist() == [False, True]
    assert pt["shared"].tolist() == [False, False]
    assert pt["refcount"].tolist() == [2, 2]
    assert len(c.page_table()) == 2


def test_pte_decode_matches_translate(Machine):
    m = Machine(8)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a + PS, b"x")
    p.write(a, b"y")
    for addr, pfn in ((a, 1), (a + PS, 0)):
        d = P.decode(p.pte(addr))
        assert d.raw == p.pte(addr)
        assert d.present and d.user and d.readable and d.writable and d.accessed and d.dirty
        assert not (d.executable or d.cow or d.zero or d.shared or d.swapped)
        assert d.pfn == pfn == p.translate(addr) // PS
        assert d.swap_slot is None
        assert p.pte(addr) == (P.PRESENT | P.WRITABLE | P.USER | P.READABLE | P.ACCESSED
                               | P.DIRTY | (pfn << P.PFN_SHIFT))
    assert P.describe(p.pte(a)).startswith("pfn 1 P RW U")


def test_pte_bit_layout_is_the_documented_one():
    assert (P.PRESENT, P.WRITABLE, P.USER, P.READABLE, P.EXECUTABLE, P.ACCESSED, P.DIRTY,
            P.SWAP, P.COW, P.ZERO, P.SHARED, P.PFN_SHIFT) == (
        1, 2, 4, 8, 16, 32, 64, 128, 512, 1024, 2048, 12)


def test_swap_pte_decodes_slot(Machine):
    m = Machine(1, swap_slots=2)
    p = m.spawn()
    a = p.mmap(2 * PS)
    p.write(a, b"a")
    p.write(a + PS, b"b")                     # the only frame: page a goes to slot 0
    d = P.decode(p.pte(a))
    assert d.swapped and not d.present and d.swap_slot == 0 and d.pfn is None
    pt = p.page_table()
    assert pt["vaddr"].tolist() == [a, a + PS]
    assert pt["swap_slot"].tolist() == [0, -1]
    assert pt["pfn"].tolist() == [-1, 0]
    assert pt["refcount"].tolist() == [0, 1]
    assert p.translate(a) is None
    assert (p.rss, m.swap_free) == (PS, 1)


# --- counters ---------------------------------------------------------------------------------------


def test_stats_keys_are_exactly_the_contract_list(Machine):
    m = Machine(4)
    p = m.spawn()
    assert sorted(m.stats) == sorted(STAT_KEYS)
    assert sorted(p.stats) == sorted(STAT_KEYS)
    assert all(type(v) is int and v == 0 for v in m.stats.values())
    assert all(type(v) is int and v == 0 for v in p.stats.values())


def test_stats_is_a_mapping_snapshot_or_view(Machine):
    m = Machine(4)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    s = m.stats
    assert s["writes"] == 1
    assert dict(s)["zero_fills"] == 1
    assert len(s) == len(STAT_KEYS)
    m.reset_stats()
    assert m.stats["writes"] == 0


# --- imports -------------------------------------------------------------------------------------------


def test_every_submodule_imports_without_optional_dependencies():
    code = (
        "import importlib, pkgutil, sys\n"
        "import pymmu\n"
        "names = [m.name for m in pkgutil.iter_modules(pymmu.__path__) if m.name != '__main__']\n"
        "for name in names:\n"
        "    importlib.import_module('pymmu.' + name)\n"
        "bad = [m for m in ('dask', 'distributed', 'matplotlib', 'tqdm') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(names))\n"
    )
    # Run outside the repository: from its root, the source tree (no compiled
    # core) would shadow the installed package.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 5


@pytest.mark.parametrize("page_size", [512, 4096, 65536])
@pytest.mark.parametrize("va_bits", [32, 39, 48])
def test_address_space_limit_is_documented_bound(page_size, va_bits):
    """The core's 16-byte frame record caps the address spaces a machine can create
    (docs/semantics.md section 10); the cap is at least 2**24 in every geometry."""
    from pymmu import Machine as CoreMachine

    m = CoreMachine(4, page_size=page_size, va_bits=va_bits)
    vpn_bits = va_bits - (page_size.bit_length() - 1)
    assert m._core.mm_limit == min(2**27 - 1, 2 ** (63 - vpn_bits))
    assert m._core.mm_limit >= 2**24


@pytest.mark.parametrize("policy, extra, replay", [("clock", 0, 0), ("random", 0, 0),
                                                   ("fifo", 8, 0), ("lru", 8, 0),
                                                   ("opt", 0, 8)])
def test_core_metadata_is_16_bytes_per_frame_plus_policy_state(policy, extra, replay):
    """DESIGN.md section 9's memory budget, from the sizes of the core's structures:
    the frame record is 16 bytes (free sets live inside free frames' records), fifo
    and lru add list links, opt keeps its keys only during a replay, a PTE is 8."""
    from pymmu import Machine as CoreMachine
    from pymmu._introspect import memory

    mem = memory(CoreMachine(1000, policy=policy, swap_slots=10)._core)
    assert mem["frame_record"] == 16
    assert mem["frame"] == 16 + extra
    assert mem["replay_frame"] == replay
    assert mem["pte"] == 8


def test_free_frames_come_back_lowest_first_whatever_the_free_order():
    """The free sets are heaps threaded through free frames: after frees in any
    order, faults take the lowest free pfns, and check() walks the heaps."""
    from pymmu import Machine as CoreMachine

    rng = np.random.default_rng(7)
    m = CoreMachine(64, zero_page=False)
    p = m.spawn()
    base = p.mmap(64 * 4096, "rw")
    for i in range(64):
        p.write(base + i * 4096, b"x")
    for _ in range(20):
        gone = rng.choice(64, size=int(rng.integers(1, 20)), replace=False)
        freed = sorted(p.translate(base + int(i) * 4096) // 4096 for i in gone)
        for i in gone:
            p.munmap(base + int(i) * 4096, 4096)
        assert m.check() is None
        for k, i in enumerate(sorted(int(i) for i in rng.permutation(gone))):
            p.mmap(4096, "rw", addr=base + i * 4096)
            p.write(base + i * 4096, b"y")
            assert p.translate(base + i * 4096) // 4096 == freed[k]
        assert m.check() is None
