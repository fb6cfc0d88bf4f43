"""Trace files at scale (DESIGN.md section 10): streaming, the binary format,
replay of chunks, and bad input of every kind.

Replays run on both implementations where the rule is the Machine's
(``Machine`` fixture); reading files is one implementation (``pymmu.trace_io``).
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import pymmu
from pymmu import traces
from pymmu.traces import LOAD, STORE, Trace, TraceError

LS = traces.sample("ls")

COMPRESS = {
    "plain": lambda b: b,
    "xz": lzma.compress,
    "gzip": gzip.compress,
    "bz2": bz2.compress,
}


def columns(t):
    return t.addr.tolist(), t.kind.tolist(), t.size.tolist()


def lackey_text(n, seed=0):
    """``n`` random lackey records (with Valgrind noise lines) as bytes."""
    rng = np.random.default_rng(seed)
    addr = rng.integers(0, 1 << 20, n) * 8 + 0x400000
    kind = rng.integers(0, 4, n)
    size = rng.integers(1, 9, n)
    prefix = ["I  ", " L ", " S ", " M "]
    lines = ["==1== Lackey"] + [f"{prefix[k]}{a:08x},{s}" for a, k, s in zip(addr, kind, size)]
    return ("\n".join(lines) + "\n==1== done\n").encode(), (addr, kind, size)


@pytest.fixture(scope="module")
def ls_trace():
    return traces.read_lackey(LS)


# --------------------------------------------------------------------------
# stream
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", list(COMPRESS))
@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_stream_chunks_concatenate_to_the_whole(tmp_path, how, chunk):
    data, (addr, kind, size) = lackey_text(2500)
    p = tmp_path / f"t.{how}"
    p.write_bytes(COMPRESS[how](data))
    chunks = list(traces.stream(p, chunk=chunk))
    assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
    whole = Trace.concat(chunks)
    assert whole.addr.tolist() == addr.tolist()
    assert whole.kind.tolist() == kind.tolist()
    assert whole.size.tolist() == size.tolist()
    assert columns(traces.read_lackey(p)) == columns(whole)


def test_stream_chunks_are_independent(tmp_path):
    data, _ = lackey_text(100)
    p = tmp_path / "t"
    p.write_bytes(data)
    chunks = list(traces.stream(p, chunk=10))
    assert len(chunks) == 10
    # no chunk shares memory with another: a later chunk never overwrites one
    for a in chunks:
        assert not a.addr.flags.writeable
        for b in chunks:
            if a is not b:
                assert not np.shares_memory(a.addr, b.addr)


def test_stream_of_a_real_trace_matches_the_whole(ls_trace):
    chunks = list(traces.stream(LS, chunk=100_000))
    assert [len(c) for c in chunks] == [100_000] * 8 + [73_174]
    assert np.array_equal(Trace.concat(chunks).addr, ls_trace.addr)


def test_stream_crosses_block_boundaries(tmp_path, monkeypatch):
    # tiny blocks: lines are cut everywhere and carried over to the next block
    from pymmu import trace_io

    data, (addr, _, _) = lackey_text(3000, seed=3)
    p = tmp_path / "t"
    p.write_bytes(data)
    monkeypatch.setattr(trace_io, "BLOCK", 64)
    assert Trace.concat(list(traces.stream(p, chunk=333))).addr.tolist() == addr.tolist()


def test_stream_detects_formats(tmp_path):
    lk = tmp_path / "a"
    lk.write_text("==1== x\nI  1000,4\n")
    sp = tmp_path / "b"
    sp.write_text("# c\nW 0x2000 8\n")
    assert columns(Trace.concat(list(traces.stream(lk)))) == ([0x1000], [0], [4])
    assert columns(Trace.concat(list(traces.stream(sp)))) == ([0x2000], [STORE], [8])
    with pytest.raises(TraceError, match="line 1: expected 'R ADDR"):
        list(traces.stream(lk, format="simple"))


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_stream_chunk_argument(bad):
    with pytest.raises((ValueError, TypeError)):
        next(traces.stream(LS, chunk=bad))


def test_stream_format_argument():
    with pytest.raises(ValueError, match="format"):
        next(traces.stream(LS, format="csv"))


def test_empty_files(tmp_path):
    p = tmp_path / "e"
    p.write_bytes(b"")
    assert list(traces.stream(p)) == []
    assert len(traces.read_lackey(p)) == 0 and len(traces.read(p)) == 0
    q = tmp_path / "e.xz"
    q.write_bytes(lzma.compress(b"==1== nothing\n\n"))
    assert list(traces.stream(q, format="lackey")) == []


def test_stream_holds_one_chunk(tmp_path):
    # the peak while streaming does not grow with the file's length
    data, _ = lackey_text(200_000)
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(data)
    big.write_bytes(data * 5)
    peaks = []
    for p in (small, big):
        tracemalloc.start()
        n = sum(len(c) for c in traces.stream(p, chunk=1 << 14))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert n in (200_000, 1_000_000)
    assert peaks[1] < 1.3 * peaks[0] + (1 << 20)
    assert peaks[1] < 8 << 20       # a block of text plus one chunk


def test_read_lackey_memory_per_record(tmp_path):
    # 13 bytes per record held; the peak (numpy reports to tracemalloc) at most
    # twice that, whether the length is known (plain, xz, gzip) or not (bz2)
    data, _ = lackey_text(1_000_000)
    for how in ("plain", "xz", "gzip", "bz2"):
        path = tmp_path / f"t.{how}"
        path.write_bytes(COMPRESS[how](data) if how != "xz" else lzma.compress(data, preset=0))
        tracemalloc.start()
        t = traces.read_lackey(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(t) == 1_000_000
        assert (t.addr.nbytes + t.kind.nbytes + t.size.nbytes) / len(t) == 13
        assert peak / len(t) <= 32, how


def test_a_lying_length_is_only_a_hint(tmp_path):
    # gzip's trailer states the length (mod 2**32): a wrong one sizes the
    # columns badly, then fails zlib's own check at the end, cleanly
    data, _ = lackey_text(200_000)
    raw = bytearray(gzip.compress(data))
    for stated in (1, 2**32 - 1):
        raw[-4:] = struct.pack("<I", stated)
        p = tmp_path / "t.gz"
        p.write_bytes(bytes(raw))
        with pytest.raises(TraceError, match="corrupt gzip"):
            traces.read_lackey(p)


# --------------------------------------------------------------------------
# replay of an iterable
# --------------------------------------------------------------------------

def test_replay_of_chunks_equals_the_whole(Machine, tmp_path):
    rng = np.random.default_rng(5)
    addr = rng.integers(0, 40, 600).astype(np.uint64) * 4096 + rng.integers(0, 4096, 600).astype(np.uint64)
    t = Trace(addr, rng.integers(0, 4, 600), rng.integers(1, 9, 600))
    for policy in ("clock", "fifo", "lru", "random"):
        m1 = Machine(8, swap_slots=64, policy=policy, zero_page=False)
        m2 = Machine(8, swap_slots=64, policy=policy, zero_page=False)
        whole = m1.replay(t)
        parts = m2.replay(t[i:i + 77] for i in range(0, len(t), 77))
        assert whole == parts
        assert m1.stats == m2.stats


def test_replay_of_a_stream_equals_the_whole(ls_trace):
    m1 = pymmu.Machine(32, swap_slots=400, zero_page=False)
    m2 = pymmu.Machine(32, swap_slots=400, zero_page=False)
    assert m1.replay(ls_trace) == m2.replay(traces.stream(LS, chunk=50_000))


def test_replay_of_chunks_in_a_process_keeps_bytes_and_index(Machine):
    m = Machine(4, swap_slots=16)
    p = m.spawn()
    a = p.mmap(8 * 4096)
    p.write(a, b"kept")
    t = Trace([a + 4096 * i for i in range(8)] + [0x10], kind=STORE)
    with pytest.raises(pymmu.SegmentationFault) as e:
        m.replay([t[:3], Trace.concat([]), t[3:]], process=p)
    assert e.value.index == 8              # a position in the concatenation
    assert m.stats["writes"] == 1 + 8      # p.write, then the records before it
    assert p.read(a, 4) == b"kept"


def test_replay_stops_where_the_iterable_raises(Machine, tmp_path):
    p = tmp_path / "t"
    good = "".join(f" S {0x1000 * i:x},8\n" for i in range(1, 6))
    p.write_text(good + " S oops\n S 9000,8\n")
    for chunk in (2, 3, 100):
        m = Machine(8)
        proc = m.spawn()
        proc.mmap(1 << 20, addr=0)
        with pytest.raises(TraceError, match="line 6") as e:
            m.replay(traces.stream(p, chunk=chunk), process=proc)
        assert e.value.index == 5
        assert m.stats["writes"] == 5      # every record before the bad line


def test_replay_rejects_what_is_not_traces(Machine):
    m = Machine(4)
    with pytest.raises(TypeError, match="path"):
        m.replay(LS)
    with pytest.raises(TypeError, match="item 1"):
        m.replay([Trace(0), [1, 2]])
    with pytest.raises(TypeError):
        m.replay(42)
    assert m.frames_free == 4 and m.processes() == [] if hasattr(m, "processes") else True


def test_opt_refuses_an_iterable(Machine, ls_trace):
    m = Machine(8, policy="opt", swap_slots=300, zero_page=False)
    with pytest.raises(ValueError, match="opt.*single Trace"):
        m.replay(iter([Trace(0)]))
    with pytest.raises(ValueError, match="opt"):
        m.replay([Trace(0)])
    m.check()


def test_opt_takes_a_loaded_binary_trace(tmp_path, ls_trace):
    p = tmp_path / "ls.pmt"
    ls_trace.save(p)
    loaded = traces.load(p)
    r1 = pymmu.Machine(16, policy="opt", swap_slots=300, zero_page=False).replay(loaded)
    r2 = pymmu.Machine(16, policy="opt", swap_slots=300, zero_page=False).replay(ls_trace)
    assert r1 == r2


# --------------------------------------------------------------------------
# records replay never trusts
# --------------------------------------------------------------------------

def crafted(addr, kind, size):
    t = Trace.__new__(Trace)
    t._addr = np.asarray(addr, np.uint64)
    t._kind = np.asarray(kind, np.uint8)
    t._size = np.asarray(size, np.uint32)
    return t


@pytest.mark.parametrize("policy", ["clock", "lru", "opt"])
@pytest.mark.parametrize("kind, size, what", [
    (255, 1, "kind code 255"), (4, 1, "kind code 4"), (1, 0, "size 0")])
def test_replay_refuses_bad_records(Machine, policy, kind, size, what):
    m = Machine(4, swap_slots=8, policy=policy)
    t = crafted([0x1000, 0x2000, 0x3000, 0x4000], [2, 2, kind, 2], [1, 1, size, 1])
    with pytest.raises(TraceError, match=what) as e:
        m.replay(t)
    assert e.value.index == 2
    assert m.stats["writes"] == 2          # the records before it ran
    assert m.frames_free == 4              # the fresh process exited
    m.check()
    if policy == "opt":
        return                             # opt takes no iterable
    p = m.spawn()
    p.mmap(1 << 16, addr=0)
    with pytest.raises(TraceError) as e:
        m.replay([Trace(0x10), t], process=p)
    assert e.value.index == 3
    m.check()


def test_replay_refuses_columns_of_different_lengths():
    m = pymmu.Machine(4)
    t = crafted([0x1000, 0x2000, 0x3000], [1], [1, 1, 1])
    with pytest.raises(ValueError, match="different lengths"):
        m.replay(t)
    m.check()


@pytest.mark.parametrize("state", [
    (np.arange(3, dtype=np.uint64), np.array([1, 9, 1], np.uint8), np.ones(3, np.uint32)),
    (np.arange(3, dtype=np.uint64), np.ones(3, np.uint8), np.zeros(3, np.uint32)),
    (np.arange(3, dtype=np.uint64), np.ones(2, np.uint8), np.ones(3, np.uint32)),
    (np.arange(3, dtype=np.uint64), np.ones(3, np.uint8)),
    ([1, 2], [1, 1], [1, 1]),
])
def test_unpickling_checks_the_columns(state):
    t = Trace.__new__(Trace)
    with pytest.raises((TypeError, ValueError)):
        t.__setstate__(state)


def test_pickle_round_trip():
    t = Trace([1, 2, 3], "LSM", [1, 2, 3])
    assert columns(pickle.loads(pickle.dumps(t))) == columns(t)
    e = pickle.loads(pickle.dumps(TraceError("bad", path="f", line=3, index=2)))
    assert (str(e), e.line, e.index) == ("f, line 3: bad", 3, 2)


# --------------------------------------------------------------------------
# binary format
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 8, 1001])
def test_save_load_round_trip(tmp_path, n):
    rng = np.random.default_rng(n)
    t = Trace(rng.integers(0, 2**63, n, dtype=np.uint64), rng.integers(0, 4, n),
              rng.integers(1, 2**31, n))
    p = tmp_path / "t.pmt"
    t.save(p)
    assert p.stat().st_size % 8 == 0
    u = traces.load(p)
    assert columns(u) == columns(t)
    assert traces.detect_format(p) == "binary"
    assert columns(traces.read(p)) == columns(t)
    # columns are read-only views of the map; slices with step 1 are views too
    assert not u.addr.flags.writeable and (n == 0 or not u.addr.flags.owndata)
    if n > 2:
        s = u[1:3]
        assert np.shares_memory(s.addr, u.addr) and np.shares_memory(s.size, u.size)
        assert columns(s) == columns(t[1:3])
    chunks = list(traces.stream(p, chunk=100))
    assert sum(len(c) for c in chunks) == n
    if n:
        assert not chunks[0].addr.flags.owndata and not chunks[0].kind.flags.writeable


def test_binary_layout_is_documented(tmp_path):
    # the module docstring's layout, byte for byte
    t = Trace([0x1000, 0x2008, 0x30], "LSI", [8, 4, 2])
    p = tmp_path / "t.pmt"
    t.save(p)
    raw = p.read_bytes()
    assert raw[:8] == b"PYMMUTRC"
    assert struct.unpack_from("<IIQ", raw, 8) == (1, 0, 3)
    assert raw[24:64] == bytes(40)
    assert struct.unpack_from("<3Q", raw, 64) == (0x1000, 0x2008, 0x30)
    assert raw[88:91] == bytes([1, 2, 0]) and raw[91:96] == bytes(5)
    assert struct.unpack_from("<3I", raw, 96) == (8, 4, 2)
    assert len(raw) == 112


def test_load_is_constant_time(tmp_path):
    # opening maps the file: nothing is read, so no memory grows with it
    t = Trace(np.arange(2_000_000, dtype=np.uint64))
    p = tmp_path / "big.pmt"
    t.save(p)
    tracemalloc.start()
    u = traces.load(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(u) == 2_000_000 and peak < 1 << 20


@pytest.mark.parametrize("damage, what", [
    (lambda raw: b"NOTATRCE" + raw[8:], "not a pymmu binary trace"),
    (lambda raw: raw[:8] + struct.pack("<I", 2) + raw[12:], "version 2"),
    (lambda raw: raw[:-8], "truncated"),
    (lambda raw: raw + bytes(8), "truncated or corrupt"),
    (lambda raw: raw[:16] + struct.pack("<Q", 2**60) + raw[24:], "header says"),
    (lambda raw: raw[:30], "not a pymmu binary trace"),
])
def test_load_refuses_damaged_files(tmp_path, damage, what):
    p = tmp_path / "t.pmt"
    Trace([1, 2, 3]).save(p)
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(TraceError, match=what):
        traces.load(p)


def test_loaded_bad_records_are_refused_at_replay(tmp_path):
    p = tmp_path / "t.pmt"
    Trace([0x1000, 0x2000], kind=LOAD).save(p)
    raw = bytearray(p.read_bytes())
    raw[64 + 16 + 1] = 7                    # the second record's kind code
    p.write_bytes(bytes(raw))
    t = traces.load(p)                      # O(1): not checked here
    with pytest.raises(TraceError, match="kind code 7") as e:
        pymmu.Machine(4).replay(t)
    assert e.value.index == 1


def test_convert_streams_to_binary(tmp_path, ls_trace):
    out = tmp_path / "ls.pmt"
    assert traces.convert(LS, out, chunk=100_000) == len(ls_trace)
    assert np.array_equal(traces.load(out).addr, ls_trace.addr)
    assert not list(tmp_path.glob("*.part*"))


def test_convert_of_a_bad_file_leaves_nothing(tmp_path):
    src = tmp_path / "bad"
    src.write_text("I  1000,4\nI  nonsense\n")
    out = tmp_path / "out.pmt"
    with pytest.raises(TraceError, match="line 2"):
        traces.convert(src, out)
    assert sorted(os.listdir(tmp_path)) == ["bad"]


# --------------------------------------------------------------------------
# bad files
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["xz", "gzip", "bz2"])
def test_truncated_compressed_files(tmp_path, how):
    data, _ = lackey_text(5000)
    p = tmp_path / "t"
    p.write_bytes(COMPRESS[how](data)[:-40])
    for read in (traces.read_lackey, lambda q: list(traces.stream(q))):
        with pytest.raises(TraceError, match=f"truncated {how}|corrupt {how}"):
            read(p)


@pytest.mark.parametrize("how", ["xz", "gzip", "bz2"])
def test_corruption_early_in_a_compressed_stream(tmp_path, how):
    data, _ = lackey_text(5000)
    raw = bytearray(COMPRESS[how](data))
    for i in range(12, 40):
        raw[i] ^= 0x5A
    p = tmp_path / "t"
    p.write_bytes(bytes(raw))
    with pytest.raises(TraceError, match=how):
        traces.read_lackey(p)


@pytest.mark.parametrize("how", ["gzip", "bz2", "xz"])
def test_concatenated_streams_and_trailing_garbage(tmp_path, how):
    a, _ = lackey_text(100, seed=1)
    b, _ = lackey_text(100, seed=2)
    p = tmp_path / "t"
    p.write_bytes(COMPRESS[how](a) + COMPRESS[how](b))
    assert len(traces.read_lackey(p)) == 200
    p.write_bytes(COMPRESS[how](a) + b"garbage!")
    with pytest.raises(TraceError, match="trailing garbage"):
        traces.read_lackey(p)


def test_binary_garbage_is_not_a_trace(tmp_path):
    p = tmp_path / "garbage"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    with pytest.raises(TraceError, match="not a trace"):
        traces.read(p)
    with pytest.raises(TraceError, match="not a trace"):
        list(traces.stream(p))
    with pytest.raises(TraceError, match="line 1"):
        traces.read_lackey(p)


def test_directory_and_missing_file(tmp_path):
    for read in (traces.read_lackey, traces.read_simple, traces.read, traces.load,
                 lambda q: next(traces.stream(q))):
        with pytest.raises(IsADirectoryError, match="directory"):
            read(tmp_path)
        with pytest.raises(FileNotFoundError):
            read(tmp_path / "nope")


def test_decompression_bomb_costs_no_memory(tmp_path):
    # 256 MiB of zeros in a 256 KiB gzip: refused after one line-length of text
    p = tmp_path / "bomb.gz"
    with gzip.open(p, "wb", compresslevel=9) as f:
        zeros = bytes(1 << 20)
        for _ in range(256):
            f.write(zeros)
    assert p.stat().st_size < 1 << 20
    for read in (traces.read, traces.read_lackey, lambda q: list(traces.stream(q))):
        tracemalloc.start()
        with pytest.raises(TraceError, match="line end|not a trace"):
            read(p)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 24 << 20     # one chunk of columns and one block of text


def test_a_bad_line_in_the_middle_of_a_long_trace(tmp_path):
    data, _ = lackey_text(50_000)
    lines = data.split(b"\n")
    lines[30_001] = b" L 12345,x"
    p = tmp_path / "t.xz"
    p.write_bytes(lzma.compress(b"\n".join(lines)))
    with pytest.raises(TraceError, match=r"t.xz, line 30,002: expected a lackey") as e:
        traces.read_lackey(p)
    assert e.value.index == 30_000


def test_huge_record_sizes_do_not_explode(tmp_path):
    # one record covering 2**32 - 1 bytes touches 2**20 pages: counting them
    # needs no array of them
    p = tmp_path / "t"
    p.write_text(" L 0,4294967295\n L 1000,8\n")
    t = traces.read_lackey(p)
    tracemalloc.start()
    assert t.distinct_pages(4096) == 1 << 20
    assert tracemalloc.get_traced_memory()[1] < 64 << 20
    tracemalloc.stop()


def test_sample_traces():
    names = traces.samples()
    assert "ls" in names and len(names) >= 2
    for name in names:
        t = traces.read_lackey(traces.sample(name))
        assert len(t) > 10_000
    with pytest.raises(ValueError, match="samples are"):
        traces.sample("no-such-program")
    with pytest.raises(TypeError):
        traces.sample(3)


def test_traces_after_a_bare_import():
    code = ("import pymmu; t = pymmu.traces.read_lackey(pymmu.traces.sample('ls')); "
            "print(len(t), pymmu.traces.TraceError is pymmu.TraceError)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert out.stdout.split() == ["873174", "True"]


@pytest.mark.parametrize("line, read", [("I  0,1", traces.read_lackey),
                                        ("R 1", traces.read_simple)])
def test_shortest_lines_fill_a_plain_file(tmp_path, line, read):
    # a plain file's columns are sized from its length: the densest file there
    # is (shortest records, the last without a newline) must still fit
    p = tmp_path / "t"
    p.write_text("\n".join([line] * 1000))
    t = read(p)
    assert len(t) == 1000 and t.size.tolist() == [1] * 1000


# --------------------------------------------------------------------------
# the compiled parsers against a regex model
# --------------------------------------------------------------------------

import re  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_BLANK = " \t\r\v\f"
_LACKEY = re.compile(rb"(I  | [LSM] )([0-9a-fA-F]+),([0-9]+)[ \t\r\v\f]*")
_SIMPLE = re.compile(rb"[ \t\r\v\f]*([RrWw])[ \t\r\v\f]+(?:0[xX]([0-9a-fA-F]+)|([0-9]+))"
                     rb"(?:[ \t\r\v\f]+([0-9]+))?[ \t\r\v\f]*")


def model(fmt: str, text: bytes):
    """What a parser of ``fmt`` makes of ``text``: (records, bad line or None)."""
    out = []
    for lineno, line in enumerate(text.split(b"\n"), 1):
        if lineno > text.count(b"\n") and not line:
            break                                   # after the final newline
        if fmt == "lackey":
            m = _LACKEY.fullmatch(line)
            if m is None:
                if line[:2] in (b"==", b"--", b"**") or not line.strip(_BLANK.encode()):
                    continue
                return out, lineno
            kind = " LSM".index(chr(m.group(1)[1])) if m.group(1)[0] == 32 else 0
            addr, size = int(m.group(2), 16), int(m.group(3))
        else:
            stripped = line.strip(_BLANK.encode())
            if not stripped or stripped.startswith(b"#"):
                continue
            m = _SIMPLE.fullmatch(line)
            if m is None:
                return out, lineno
            kind = 1 if m.group(1) in b"Rr" else 2
            addr = int(m.group(2), 16) if m.group(2) is not None else int(m.group(3))
            size = int(m.group(4)) if m.group(4) is not None else 1
        if not 1 <= size < 2**32 or addr + size - 1 >= 2**64:
            return out, lineno
        out.append((addr, kind, size))
    return out, None


def _line(fmt):
    hexd = st.text("0123456789abcdefABCDEF", min_size=0, max_size=18)
    dec = st.text("0123456789", min_size=0, max_size=12)
    blank = st.text(" \t\r", max_size=2)
    if fmt == "lackey":
        good = st.builds(lambda p, a, s, b: f"{p}{a},{s}{b}",
                         st.sampled_from(["I  ", " L ", " S ", " M "]), hexd, dec, blank)
        noise = st.sampled_from(["==1== Lackey", "--12-- warning", "**3** x", "", "  "])
    else:
        good = st.builds(lambda b0, op, sep, a, sz, b: f"{b0}{op}{sep}{a}{sz}{b}",
                         blank, st.sampled_from("RrWw"), st.sampled_from([" ", "\t", "  "]),
                         st.one_of(hexd.map(lambda h: "0x" + h), dec),
                         st.one_of(st.just(""), dec.map(lambda d: " " + d)), blank)
        noise = st.sampled_from(["# comment", "", "   ", "\t# x"])
    junk = st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=24)
    return st.one_of(good, good, good, noise, junk)


@pytest.mark.parametrize("fmt", ["lackey", "simple"])
@given(data=st.data())
def test_parsers_agree_with_the_regex_model(tmp_path_factory, fmt, data):
    lines = data.draw(st.lists(_line(fmt), max_size=12))
    end = data.draw(st.sampled_from(["\n", ""]))
    text = ("\n".join(lines) + end).encode()
    records, bad = model(fmt, text)
    p = tmp_path_factory.mktemp("parse") / "t"
    p.write_bytes(text)
    read = traces.read_lackey if fmt == "lackey" else traces.read_simple
    if bad is None:
        t = read(p)
        assert list(zip(t.addr.tolist(), t.kind.tolist(), t.size.tolist())) == records
    else:
        with pytest.raises(TraceError) as e:
            read(p)
        assert (e.value.line, e.value.index) == (bad, len(records))
