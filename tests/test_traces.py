"""Tests of ``pymmu.traces``: the Trace container, its page views and the readers."""
from __future__ import annotations

import bz2
import doctest
import gzip
import lzma
import pathlib
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pymmu.traces as traces
from pymmu.traces import (
    FETCH, KIND_LETTERS, LOAD, MODIFY, STORE, Trace, read_lackey, read_simple,
)

# The sample traces ship inside the package (pymmu/samples, see its README.md).
LS_TRACE = pathlib.Path(traces.__file__).resolve().parent / "samples" / "ls.lackey.xz"

LACKEY_TEXT = """\
==6850== Lackey, an example Valgrind tool
==6850== Command: /bin/ls /usr/lib
==6850== 
--6850-- some header, with a comma
I  0401ab70,3
 S 1fff000758,8
I  0401b770,1
 L 1ffefffd38,8
 M 0403e28,4

I  0401ab70,32
==6850== done
"""
LACKEY_EXPECTED = (
    [0x0401AB70, 0x1FFF000758, 0x0401B770, 0x1FFEFFFD38, 0x0403E28, 0x0401AB70],
    [FETCH, STORE, FETCH, LOAD, MODIFY, FETCH],
    [3, 8, 1, 8, 4, 32],
)

SIMPLE_TEXT = """\
# a comment
R 0x1f00
W 0x1F08

r 7936
w 7944 8
   # indented comment
R 0XfF 4
"""
SIMPLE_EXPECTED = (
    [0x1F00, 0x1F08, 7936, 7944, 0xFF],
    [LOAD, STORE, LOAD, STORE, LOAD],
    [1, 1, 1, 8, 4],
)

COMPRESSORS = {
    "plain": lambda b: b,
    "xz": lzma.compress,
    "gzip": gzip.compress,
    "bz2": bz2.compress,
}


def columns(t: Trace):
    return t.addr.tolist(), t.kind.tolist(), t.size.tolist()


def brute_pages(t: Trace, page_size: int) -> list[int]:
    out = []
    for a, s in zip(t.addr.tolist(), t.size.tolist()):
        out.extend(range(a // page_size, (a + s - 1) // page_size + 1))
    return out


def brute_next_use(pages: list[int]) -> list[int]:
    n = len(pages)
    out = []
    for i, p in enumerate(pages):
        nxt = n
        for j in range(i + 1, n):
            if pages[j] == p:
                nxt = j
                break
        out.append(nxt)
    return out


# --------------------------------------------------------------------------
# doctests of the module
# --------------------------------------------------------------------------

def test_module_doctests():
    result = doctest.testmod(traces, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0


def test_constants():
    assert (FETCH, LOAD, STORE, MODIFY) == (0, 1, 2, 3)
    assert KIND_LETTERS == "ILSM"
    for code, letter in enumerate(KIND_LETTERS):
        assert Trace(0, letter).kind[0] == code


# --------------------------------------------------------------------------
# Trace construction
# --------------------------------------------------------------------------

def test_dtypes_and_defaults():
    t = Trace([1, 2, 3])
    assert len(t) == 3
    assert t.addr.dtype == np.uint64 and t.kind.dtype == np.uint8 and t.size.dtype == np.uint32
    assert t.kind.tolist() == [LOAD] * 3
    assert t.size.tolist() == [1] * 3


def test_scalars_broadcast():
    t = Trace(np.arange(5) * 4096, kind="S", size=8)
    assert t.kind.tolist() == [STORE] * 5 and t.size.tolist() == [8] * 5
    t = Trace(0x1000, kind=[0, 1, 2], size=4)
    assert t.addr.tolist() == [0x1000] * 3 and t.kind.tolist() == [0, 1, 2]
    t = Trace(0x1000, size=[1, 2])
    assert t.addr.tolist() == [0x1000] * 2 and t.kind.tolist() == [LOAD] * 2
    one = Trace(7)
    assert len(one) == 1 and columns(one) == ([7], [LOAD], [1])
    assert len(Trace([])) == 0
    assert len(Trace(np.array([], dtype=np.uint64), kind="M")) == 0


@pytest.mark.parametrize("kind, expected", [
    ("LLS", [1, 1, 2]),
    (["I", "M", "S"], [0, 3, 2]),
    (("I", 3, "L"), [0, 3, 1]),
    (np.array(["S", "S", "I"]), [2, 2, 0]),
    (np.array([3, 2, 1], dtype=np.int8), [3, 2, 1]),
    ([MODIFY, FETCH, LOAD], [3, 0, 1]),
])
def test_kind_forms(kind, expected):
    assert Trace([1, 2, 3], kind).kind.tolist() == expected


def test_large_addresses():
    top = 2**64 - 1
    t = Trace([top, 0, 2**63])
    assert t.addr.tolist() == [top, 0, 2**63]
    assert Trace(np.array([top], dtype=np.uint64)).addr[0] == top
    assert Trace(top - 7, size=8).pages(4096).tolist() == [top >> 12]


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(addr=-1), ValueError, "addr"),
    (dict(addr=[0, -5]), ValueError, r"addr\[1\]"),
    (dict(addr=np.array([3, -1])), ValueError, r"addr\[1\]"),
    (dict(addr=2**64), ValueError, "addr"),
    (dict(addr=[1, 2**64]), ValueError, "addr"),
    (dict(addr=[1.5]), TypeError, "addr"),
    (dict(addr=1.0), TypeError, "addr"),
    (dict(addr=True), TypeError, "bool"),
    (dict(addr="0x10"), TypeError, "addr"),
    (dict(addr=[[1, 2]]), ValueError, "1-D"),
    (dict(addr=[1, None]), TypeError, "addr"),
    (dict(addr=1, kind=4), ValueError, "kind"),
    (dict(addr=1, kind=-1), ValueError, "kind"),
    (dict(addr=[1, 2], kind=[0, 9]), ValueError, r"kind\[1\]"),
    (dict(addr=1, kind="X"), ValueError, "kind"),
    (dict(addr=1, kind="l"), ValueError, "kind"),
    (dict(addr=[1, 2], kind="LX"), ValueError, r"kind\[1\]"),
    (dict(addr=1, kind=1.0), TypeError, "kind"),
    (dict(addr=1, size=0), ValueError, "size"),
    (dict(addr=1, size=-3), ValueError, "size"),
    (dict(addr=[1, 2], size=[1, 0]), ValueError, r"size\[1\]"),
    (dict(addr=1, size=2**32), ValueError, "size"),
    (dict(addr=1, size=2.0), TypeError, "size"),
    (dict(addr=[1, 2, 3], kind=[1, 2]), ValueError, "3 records but kind has 2"),
    (dict(addr=[1, 2, 3], kind="LS"), ValueError, "records"),
    (dict(addr=[1, 2], size=[1, 2, 3]), ValueError, "records"),
    (dict(addr=[1, 2], size=[1]), ValueError, "records"),
    (dict(addr=2**64 - 4, size=8), ValueError, "2\\*\\*64"),
])
def test_validation_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Trace(**kwargs)


def test_arrays_owned_contiguous_readonly():
    addr = np.arange(0, 40, 4, dtype=np.uint64)
    kind = np.ones(10, dtype=np.uint8)
    size = np.full(10, 4, dtype=np.uint32)
    t = Trace(addr, kind, size)
    addr[0] = 999  # the caller's arrays are not shared
    kind[0] = 3
    size[0] = 7
    assert t.addr[0] == 0 and t.kind[0] == 1 and t.size[0] == 4
    strided = np.arange(20, dtype=np.uint64)[::2]
    t2 = Trace(strided)
    for col in (t.addr, t.kind, t.size, t2.addr):
        assert col.flags.c_contiguous
        assert not col.flags.writeable
        with pytest.raises(ValueError):
            col[0] = 1
    with pytest.raises(AttributeError):
        t.addr = addr


# --------------------------------------------------------------------------
# indexing, repr, concat, pickle
# --------------------------------------------------------------------------

def test_getitem():
    t = Trace([10, 20, 30, 40], kind="ILSM", size=[1, 2, 3, 4])
    assert t[0] == (10, FETCH, 1)
    assert t[-1].addr == 40 and t[-1].kind == MODIFY and t[-1].size == 4
    assert isinstance(t[np.int64(2)].addr, int)
    with pytest.raises(IndexError):
        t[4]
    s = t[1:3]
    assert isinstance(s, Trace) and columns(s) == ([20, 30], [1, 2], [2, 3])
    r = t[::-2]
    assert columns(r) == ([40, 20], [3, 1], [4, 2])
    assert r.addr.flags.c_contiguous and not r.addr.flags.writeable
    assert len(t[5:]) == 0
    m = t[t.kind >= STORE]
    assert isinstance(m, Trace) and m.addr.tolist() == [30, 40]
    assert t[[3, 0]].addr.tolist() == [40, 10]
    assert len(t[[]]) == 0
    with pytest.raises(TypeError):
        t["a"]
    with pytest.raises(TypeError):
        t[0, 1]
    assert [rec.addr for rec in t] == [10, 20, 30, 40]


def test_repr():
    assert repr(Trace([])) == "Trace(0 records)"
    r = repr(Trace([0x10, 0x2000], "IS"))
    assert r == "Trace(2 records: I=1 L=0 S=1 M=0, addr 0x10..0x2000)"


def test_concat():
    a = Trace([1, 2], "IL", [3, 4])
    b = Trace(5, "M", 8)
    c = Trace.concat([a, Trace([]), b])
    assert columns(c) == ([1, 2, 5], [0, 1, 3], [3, 4, 8])
    assert not c.addr.flags.writeable
    assert len(Trace.concat([])) == 0
    assert len(Trace.concat(iter([a, a]))) == 4
    with pytest.raises(TypeError, match="item 1"):
        Trace.concat([a, [1, 2]])


def test_pickle_keeps_readonly():
    t = Trace([1, 2, 3], "LSM", 8)
    u = pickle.loads(pickle.dumps(t))
    assert columns(u) == columns(t)
    assert not u.addr.flags.writeable and not u.kind.flags.writeable


# --------------------------------------------------------------------------
# pages, next_use, distinct_pages
# --------------------------------------------------------------------------

def test_pages_crossing_records():
    t = Trace([0x0FFC, 0x2000, 0x2FFF, 0x5000, 0x7FF0],
              size=[8, 4096, 2, 3 * 4096 + 1, 16])
    assert t.pages(4096).tolist() == [0, 1, 2, 2, 3, 5, 6, 7, 8, 7]
    assert t.pages(4096).dtype == np.uint64
    assert t.pages(4096).tolist() == brute_pages(t, 4096)
    assert t.distinct_pages(4096) == 8
    assert t.pages(2**20).tolist() == [0] * 5
    # no crossing at all: one page per record
    assert Trace([0, 4095, 4096]).pages(4096).tolist() == [0, 0, 1]


def test_pages_bad_page_size():
    t = Trace([1])
    for bad in (0, -4096, 3000):
        with pytest.raises(ValueError, match="page_size"):
            t.pages(bad)
    for bad in (4096.0, "4096", True):
        with pytest.raises(TypeError, match="page_size"):
            t.pages(bad)


def test_empty_trace_views():
    t = Trace([])
    assert t.pages(4096).tolist() == []
    assert t.next_use(4096).dtype == np.int64 and len(t.next_use(4096)) == 0
    assert t.distinct_pages(4096) == 0


def test_next_use_small():
    t = Trace([0, 4096, 0, 8192, 4096, 0])
    assert t.next_use(4096).tolist() == [2, 4, 5, 6, 6, 6]
    # crossing records: positions are over the page sequence, not the records
    t = Trace([0x0FFF, 0x1000], size=[2, 1])  # pages 0, 1, 1
    assert t.next_use(4096).tolist() == [3, 2, 3]


@given(st.lists(st.sampled_from([0, 1, 7, 2**22, 2**40 + 3, 2**63, 2**64 - 1]),
                max_size=80))
def test_next_use_matches_brute_force_on_flat_and_hashed_tables(pages):
    """Pages spanning fewer than 2**22 numbers take a flat table, wider spans a hash
    table (which also grows): both give Belady's look-ahead."""
    from pymmu._tracefile import next_use

    got = next_use(np.array(pages, dtype=np.uint64)).tolist()
    assert got == brute_next_use(pages)
    assert next_use(np.arange(5000, dtype=np.uint64) * np.uint64(2**30)).tolist() == [5000] * 5000


records = st.lists(
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3), st.integers(1, 300)),
    max_size=60,
)


@given(records, st.sampled_from([16, 64, 256, 4096]), st.integers(0, 2**64 - 1))
def test_pages_and_next_use_match_brute_force(recs, page_size, base):
    # keep addresses in a small window so pages repeat (and stay below 2**64)
    base = min(base, 2**64 - 8192)
    addr = [base + (a % 4096) for a, _, _ in recs]
    t = Trace(addr, [k for _, k, _ in recs], [s for _, _, s in recs])
    pages = brute_pages(t, page_size)
    assert t.pages(page_size).tolist() == pages
    assert t.next_use(page_size).tolist() == brute_next_use(pages)
    assert t.distinct_pages(page_size) == len(set(pages))


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(1, 2**32 - 1)),
                max_size=20))
def test_trace_accepts_any_valid_record(recs):
    recs = [(a, s) for a, s in recs if a + s <= 2**64]
    t = Trace([a for a, _ in recs], LOAD, [s for _, s in recs])
    assert t.addr.tolist() == [a for a, _ in recs]
    assert t.size.tolist() == [s for _, s in recs]
    # the page sequence of huge records is long; only count it on small ones
    small = t[t.size <= 2**16]
    assert small.pages(4096).tolist() == brute_pages(small, 4096)


# --------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------

def write(tmp_path, name, text, how):
    p = tmp_path / name
    p.write_bytes(COMPRESSORS[how](text.encode()))
    return p


@pytest.mark.parametrize("how", list(COMPRESSORS))
def test_read_lackey_formats(tmp_path, how):
    p = write(tmp_path, f"t.lackey.{how}", LACKEY_TEXT, how)
    t = read_lackey(p)
    assert columns(t) == LACKEY_EXPECTED
    assert columns(read_lackey(str(p))) == LACKEY_EXPECTED
    assert t.addr.flags.c_contiguous and not t.addr.flags.writeable


@pytest.mark.parametrize("how", list(COMPRESSORS))
def test_read_simple_formats(tmp_path, how):
    p = write(tmp_path, f"t.simple.{how}", SIMPLE_TEXT, how)
    assert columns(read_simple(p)) == SIMPLE_EXPECTED
    assert columns(read_simple(str(p))) == SIMPLE_EXPECTED


@pytest.mark.parametrize("how, name", [
    ("gzip", "trace.txt"), ("xz", "trace.gz"), ("bz2", "trace.xz"),
    ("plain", "trace.bz2"), ("gzip", "trace"),
])
def test_compression_detected_by_content(tmp_path, how, name):
    p = write(tmp_path, name, LACKEY_TEXT, how)
    assert traces.detect_compression(p) == (None if how == "plain" else how)
    assert columns(read_lackey(p)) == LACKEY_EXPECTED
    with traces.open_text(p) as f:
        assert f.read() == LACKEY_TEXT
    q = write(tmp_path, "simple-" + name, SIMPLE_TEXT, how)
    assert columns(read_simple(q)) == SIMPLE_EXPECTED


def test_read_lackey_edge_cases(tmp_path):
    p = tmp_path / "t"
    # no final newline, CRLF line ends
    p.write_bytes(b"I  04016e0,3\r\n L 1ffefffd38,8\r\n S 10,2")
    assert columns(read_lackey(p)) == ([0x4016E0, 0x1FFEFFFD38, 0x10], [0, 1, 2], [3, 8, 2])
    p.write_bytes(b"")
    assert len(read_lackey(p)) == 0
    p.write_bytes(b"==1== nothing here\n")
    assert len(read_lackey(p)) == 0
    p.write_bytes(b" L ffffffffffffffff,1\n L FFFF,4294967295\n L 000000000000000000010,1\n")
    assert columns(read_lackey(p)) == ([2**64 - 1, 0xFFFF, 0x10], [1, 1, 1],
                                       [1, 2**32 - 1, 1])


@pytest.mark.parametrize("line, what", [
    ("program output line", "expected a lackey record"),
    ("I  am not a record,1", "expected a lackey record"),
    (" X 1234,8", "expected a lackey record"),
    (" L zz,8", "expected a lackey record"),
    (" L 10,", "expected a lackey record"),
    (" L ,8", "expected a lackey record"),
    (" L 10,x", "expected a lackey record"),
    (" L 10,8 junk", "expected a lackey record"),
    (" L 10,0", "size out of range"),
    (" L 1,4294967296", "size out of range"),
    (" L 10,12345678901", "size out of range"),
    (" L ffffffffffffffff,2", "does not fit in 64 bits"),
    (" L 10000000000000000,8", "does not fit in 64 bits"),
])
def test_read_lackey_malformed_line(tmp_path, line, what):
    # a bad line names the file and its line number; records before it count
    p = tmp_path / "bad.lackey"
    p.write_text(f"==1== Lackey\nI  0401ab70,3\n L 10,8\n{line}\n L 20,8\n")
    with pytest.raises(traces.TraceError, match=f"bad.lackey, line 4: .*{what}") as e:
        read_lackey(p)
    assert e.value.line == 4 and e.value.index == 2 and e.value.path == str(p)
    assert isinstance(e.value, ValueError)


def test_corrupt_compressed_file(tmp_path):
    p = tmp_path / "t.xz"
    p.write_bytes(lzma.compress(LACKEY_TEXT.encode())[:40])
    with pytest.raises(ValueError, match="xz"):
        read_lackey(p)
    p.write_bytes(gzip.compress(SIMPLE_TEXT.encode())[:-12])
    with pytest.raises(ValueError, match="gzip"):
        read_simple(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_lackey(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        read_simple(tmp_path / "nope")


@pytest.mark.parametrize("text, lineno", [
    ("R 0x10\nX 0x20\n", 2),
    ("R 0x10\n\n# c\nR\n", 4),
    ("R 0x10\nW 0xZZ\n", 2),
    ("R 1f00\n", 1),  # hex needs 0x
    ("R 0x10 0\n", 1),  # size 0
    ("R 0x10 4 5\n", 1),
    ("R -16\n", 1),
    ("R 0x10000000000000000\n", 1),
    ("W 0xffffffffffffffff 2\n", 1),
    ("R 0x10 99999999999\n", 1),
    ("L 0x10\n", 1),
])
def test_read_simple_malformed(tmp_path, text, lineno):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=f"line {lineno}\\b"):
        read_simple(p)


def test_read_simple_empty(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("# nothing\n\n")
    t = read_simple(p)
    assert len(t) == 0 and t.addr.dtype == np.uint64


# --------------------------------------------------------------------------
# a loaded trace whose file is cut short (issue 16, item 10: documented, inherent)
# --------------------------------------------------------------------------

_TRUNCATED = """
import os, sys
import numpy as np
import pymmu
from pymmu import traces

path, how = sys.argv[1], sys.argv[2]
n = 1 << 20
base = 0x100000
traces.Trace(base + np.arange(n, dtype=np.uint64) * np.uint64(64), kind="L",
             size=8).save(path)
t = traces.load(path)
if how == "copy":
    t = traces.Trace(t.addr, t.kind, t.size)
elif how == "replace":
    traces.Trace([0x40], kind="S").save(path)       # renamed over the path: a new file
if how != "replace":
    os.truncate(path, 4096)                          # another program cuts it short
m = pymmu.Machine(64)                                # loads: the zero page
p = m.spawn()
p.mmap(n * 64, addr=base)
print(m.replay(t, process=p)["reads"], flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGBUS"), reason="no SIGBUS on this platform")
@pytest.mark.parametrize("how", ["mapped", "copy", "replace"])
def test_a_loaded_trace_truncated_by_another_program(tmp_path, how):
    """docs/traces.md, "A loaded trace and its file": touching the pages a
    truncation took away kills the process with SIGBUS (mmap's rule, which no
    Python code can catch); a copy in memory, or a file replaced by renaming,
    is safe. In a child process, without the sanitizer's SIGBUS handler."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":handle_sigbus=0"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(pathlib.Path(traces.__file__).resolve().parent.parent)]
        + [x for x in [env.get("PYTHONPATH")] if x])
    # (cwd: not the source tree, which CI does not build: it installs pymmu)
    out = subprocess.run([sys.executable, "-c", _TRUNCATED, str(tmp_path / "t.pmt"), how],
                         env=env, cwd="/", capture_output=True, text=True, timeout=120)
    if how == "mapped":
        assert out.returncode == -signal.SIGBUS, (out.returncode, out.stderr[-2000:])
    else:
        assert out.returncode == 0, out.stderr[-2000:]
        assert int(out.stdout) == 1 << 20            # (replaced: the old file's records)


def test_the_docs_say_a_truncated_mapped_trace_raises_sigbus():
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "traces.md").read_text()
    section = text[text.index("### A loaded trace and its file"):text.index("## Errors")]
    for words in ("memory map", "truncates", "SIGBUS", "cannot catch",
                  "Trace(t.addr, t.kind, t.size)"):
        assert words in section, words


# --------------------------------------------------------------------------
# the real trace
# --------------------------------------------------------------------------

def test_ls_lackey_trace():
    t0 = time.perf_counter()
    t = read_lackey(LS_TRACE)
    elapsed = time.perf_counter() - t0
    print(f"\nread_lackey({LS_TRACE.name}): {len(t)} records in {elapsed:.3f} s")
    assert len(t) == 873_174
    counts = np.bincount(t.kind, minlength=4).tolist()
    assert counts == [641_468, 159_466, 69_739, 2_501]  # I, L, S, M lines in the file
    assert t.distinct_pages(4096) == 270
    assert t.size.min() >= 1
    # records that cross a 4 KiB boundary add pages to the sequence, not new pages
    pages = t.pages(4096)
    a, s = t.addr, t.size.astype(np.uint64)
    crossing = int(((a >> np.uint64(12)) != ((a + s - np.uint64(1)) >> np.uint64(12))).sum())
    assert len(pages) == len(t) + crossing
    nu = t.next_use(4096)
    assert nu.dtype == np.int64 and len(nu) == len(pages)
    # spot-check next_use against a direct search
    for i in (0, 1, 1000, len(pages) // 2, len(pages) - 1):
        later = np.flatnonzero(pages[i + 1:] == pages[i])
        assert nu[i] == (i + 1 + later[0] if len(later) else len(pages))
    # the first records of the file
    assert t[0] == (0x0401AB70, FETCH, 3)
    assert t[2] == (0x1FFF000758, STORE, 8)
