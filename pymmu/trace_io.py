"""Trace files: reading text traces at scale, the binary trace format, samples.

This module owns the way from a file to :class:`pymmu.traces.Trace` columns:

* the decompressed bytes of a file, block by block (:class:`_Source`): plain,
  xz, gzip or bz2, told apart by their first bytes, never by the name, with the
  decompressor's output bounded so that a decompression bomb costs no memory;
* the compiled line parsers (``pymmu._tracefile``) that turn those blocks into
  columns with no Python object per line, for Valgrind lackey and simple
  ``R``/``W`` traces;
* :func:`stream` (a trace in chunks, in constant memory), :func:`read_lackey`
  and :func:`read_simple` (a whole trace, at most 13 bytes per record);
* the binary format (:func:`save`, :func:`load`, :func:`convert`): a fixed
  header and three little-endian columns that ``load`` memory-maps, O(1);
* the sample traces shipped in the package (:func:`sample`).

Errors: a bad line raises :class:`pymmu.errors.TraceError` naming the file and
line; a truncated or corrupt compressed file, a file that is not a trace, or a
bad binary file raise ``TraceError`` naming the file; a missing file or a
directory raise the ``OSError`` ``open`` raises.

The binary format (version 1), all little-endian::

    offset  size  field
    0       8     magic b"PYMMUTRC"
    8       4     version (uint32) = 1
    12      4     reserved, 0
    16      8     record count n (uint64)
    24      40    reserved, 0
    64      8n    addr column (uint64)
    64+8n   n     kind column (uint8), then zero padding to a multiple of 8
    K       4n    size column (uint32), K = 64 + 8n + n rounded up to 8,
                  then zero padding: the file is K + 4n rounded up to 8 bytes
"""
from __future__ import annotations

import bz2
import lzma
import os
import pathlib
import struct
import zlib

import numpy as np

from pymmu import _tracefile
from pymmu.errors import TraceError
from pymmu.traces import Trace

__all__ = [
    "TraceError", "stream", "read_lackey", "read_simple", "read", "load", "save",
    "convert", "detect_format", "detect_compression", "sample", "samples", "TraceWriter",
    "MAGIC", "VERSION", "DEFAULT_CHUNK",
]

#: Records per chunk of :func:`stream`.
DEFAULT_CHUNK = 1 << 20
#: Bytes of decompressed text parsed at a time.
BLOCK = 1 << 20
#: The first bytes of a binary trace file, and its format version.
MAGIC = b"PYMMUTRC"
VERSION = 1
_HEADER = struct.Struct("<8sII Q 40x")
FORMATS = ("lackey", "simple", "binary")

_COMPRESSION_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
)


# --------------------------------------------------------------------------
# Decompressed bytes, block by block
# --------------------------------------------------------------------------

def _open_raw(path):
    """``open(path, "rb")``, with the one-line messages a user wants to see."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory, not a trace file", path)
    return open(path, "rb")


def detect_compression(path) -> str | None:
    """``"xz"``, ``"gzip"``, ``"bz2"`` or None (plain), from the file's first bytes.

    The file name plays no part: ``trace.txt`` holding gzip data is gzip.

    Parameters
    ----------
    path : str or os.PathLike
    """
    with _open_raw(path) as f:
        head = f.read(6)
    return _compression_of(head)


def _compression_of(head: bytes) -> str | None:
    for magic, name in _COMPRESSION_MAGIC:
        if head.startswith(magic):
            return name
    return None


def open_binary(path):
    """Open ``path`` for reading bytes, decompressing xz, gzip or bz2 by content.

    Returns a binary file object (use it as a context manager).
    """
    import gzip

    fmt = detect_compression(path)
    opener = {None: open, "xz": lzma.open, "gzip": gzip.open, "bz2": bz2.open}[fmt]
    return opener(os.fspath(path), "rb")


def open_text(path, encoding: str = "utf-8", errors: str = "strict"):
    """Open ``path`` as text, decompressing xz, gzip or bz2 by content.

    Returns
    -------
    io.TextIOWrapper
    """
    import io

    return io.TextIOWrapper(open_binary(path), encoding=encoding, errors=errors)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """An xz multibyte integer at ``buf[pos:]``: (value, position after it)."""
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("xz integer too long")


def _xz_size(f, size: int) -> int | None:
    """The decompressed size an xz file's indexes state (every stream's, walking
    back from the end), or None when they cannot be read. A hint, not a promise:
    a crafted file may say anything."""
    end = size
    total = 0
    try:
        while end > 0:
            f.seek(end - 4)
            if f.read(4) == b"\0\0\0\0":          # stream padding
                end -= 4
                continue
            f.seek(end - 12)
            footer = f.read(12)
            if footer[10:] != b"YZ":
                return None
            index_size = (struct.unpack_from("<I", footer, 4)[0] + 1) * 4
            index_start = end - 12 - index_size
            f.seek(index_start)
            index = f.read(index_size)
            if len(index) != index_size or index[0] != 0:
                return None
            records, pos = _varint(index, 1)
            blocks = 0
            for _ in range(records):
                unpadded, pos = _varint(index, pos)
                uncompressed, pos = _varint(index, pos)
                blocks += (unpadded + 3) & ~3
                total += uncompressed
            end = index_start - blocks - 12      # the stream header
        return total if end == 0 else None
    except (OSError, ValueError, IndexError, struct.error):
        return None
    finally:
        f.seek(0)


def _decompressor(codec: str):
    if codec == "xz":
        return lzma.LZMADecompressor()
    if codec == "gzip":
        return zlib.decompressobj(wbits=31)
    return bz2.BZ2Decompressor()


class _Source:
    """The decompressed bytes of a file, read into a caller's buffer.

    Compressed input is decompressed with the codec's ``max_length`` bound, so
    at most a few blocks of output exist at a time, however well it
    compresses. The decompression runs in a thread a few blocks ahead of the
    parser (both release the GIL), so reading costs about what decompressing
    alone costs. Concatenated streams (``cat a.gz b.gz``) are read one after
    another.

    Parameters
    ----------
    path : str or os.PathLike
    """

    RAW_BLOCK = 1 << 18
    OUT_BLOCK = 1 << 19          # decompressed bytes per block
    AHEAD = 4                    # blocks the thread may decompress ahead

    def __init__(self, path):
        self.path = os.fspath(path)
        self.f = _open_raw(self.path)
        try:
            self.size = os.fstat(self.f.fileno()).st_size
            head = self.f.read(6)
            self.f.seek(0)
        except BaseException:
            self.f.close()
            raise
        self.codec = _compression_of(head)
        self.head = head
        self.d = _decompressor(self.codec) if self.codec else None
        self.pending = b""        # compressed input the decompressor has not taken
        self.done = False
        self.left = b""           # decompressed bytes not yet handed out
        #: The decompressed length, when the file says it (xz's index, gzip's
        #: trailer; exact for plain files): only a hint for sizing columns.
        self.size_hint = self.size
        if self.codec == "xz":
            self.size_hint = _xz_size(self.f, self.size)
        elif self.codec == "gzip" and self.size >= 18:
            self.f.seek(self.size - 4)
            self.size_hint = struct.unpack("<I", self.f.read(4))[0]   # size mod 2**32
            self.f.seek(0)
        elif self.codec:
            self.size_hint = None
        self.blocks = _Ahead(self._decompressed(), self.AHEAD) if self.codec else None

    def close(self) -> None:
        if self.blocks is not None:
            self.blocks.close()
        self.f.close()

    @property
    def raw_pos(self) -> int:
        """How many bytes of the file have been read (for a progress bar)."""
        return self.f.tell()

    def _corrupt(self, what: str, e=None) -> TraceError:
        detail = f" ({e})" if e is not None else ""
        return TraceError(f"{what} {self.codec} data{detail}", path=self.path)

    def readinto(self, view) -> int:
        """Fill ``view`` (a writable uint8 buffer) with the next bytes: how many (0 at the end)."""
        if self.blocks is None:
            return self.f.readinto(view)
        if not self.left:
            self.left = next(self.blocks, b"")
        n = min(len(view), len(self.left))
        view[:n] = self.left[:n]
        self.left = self.left[n:]
        return n

    def _decompressed(self):
        """The decompressed bytes, in blocks of at most OUT_BLOCK (a generator)."""
        want = self.OUT_BLOCK
        while not self.done:
            d = self.d
            if self.codec == "gzip":
                data = self.pending or self.f.read(self.RAW_BLOCK)
                try:
                    out = d.decompress(data, want)
                except zlib.error as e:
                    raise self._corrupt("corrupt", e) from None
                self.pending = d.unconsumed_tail
                eof = d.eof
                rest = d.unused_data
            else:
                data = b"" if d.needs_input is False else (
                    self.pending or self.f.read(self.RAW_BLOCK))
                try:
                    out = d.decompress(data, want)
                except (lzma.LZMAError, OSError, EOFError, ValueError) as e:
                    raise self._corrupt("corrupt", e) from None
                self.pending = b""
                eof = d.eof
                rest = d.unused_data if eof else b""
            if eof:
                self._next_stream(rest)
            elif not out and not data:
                raise self._corrupt("truncated")     # the file ended mid-stream
            if out:
                yield memoryview(out)

    def _next_stream(self, rest: bytes) -> None:
        """After one compressed stream ends: start the next, or finish."""
        rest = rest + self.f.read(6 - len(rest)) if len(rest) < 6 else rest
        if not rest.strip(b"\0"):
            # nothing, or the zero padding some tools add: make sure the file ends
            if not self.f.read(self.RAW_BLOCK).strip(b"\0"):
                self.done = True
                return
            raise self._corrupt("trailing garbage after the")
        if _compression_of(rest) != self.codec:
            raise self._corrupt("trailing garbage after the")
        self.d = _decompressor(self.codec)
        self.pending = rest


class _Ahead:
    """Run a generator in a thread, at most ``depth`` items ahead of its reader.

    Iterating gives its items in order; an exception it raises is raised to
    the reader in its place. ``close`` stops the thread (also midway).
    """

    def __init__(self, gen, depth: int):
        import queue
        import threading

        self.q = queue.Queue(depth)
        self.stop = threading.Event()
        self.finished = False
        self.thread = threading.Thread(target=self._run, args=(gen,), daemon=True,
                                       name="pymmu-trace-reader")
        self.thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self, gen) -> None:
        try:
            for item in gen:
                if not self._put((True, item)):
                    return
            self._put((False, None))
        except BaseException as e:          # handed to the reader, raised there
            self._put((False, e))

    def __iter__(self):
        return self

    def __next__(self):
        if self.finished:
            raise StopIteration
        ok, item = self.q.get()
        if ok:
            return item
        self.finished = True
        if item is not None:
            raise item
        raise StopIteration

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


# --------------------------------------------------------------------------
# Text parsing
# --------------------------------------------------------------------------

_WHAT = {
    "lackey": "a lackey record 'I  ADDR,SIZE' or ' L|S|M ADDR,SIZE' (hex address, "
              "decimal size)",
    "simple": "'R ADDR [SIZE]' or 'W ADDR [SIZE]'",
}


def _line_error(path, fmt: str, lineno: int, status: int, line: bytes,
                index: int) -> TraceError:
    """The TraceError for a bad line, saying what was wrong."""
    text = line.split(b"\n", 1)[0].rstrip(b"\r")
    shown = text[:60].decode("latin-1") + ("..." if len(text) > 60 else "")
    if status == _tracefile.STATUS_LONG:
        msg = (f"no line end within {_tracefile.MAX_LINE_BYTES} bytes: not a "
               f"{fmt} text trace")
    elif status == _tracefile.STATUS_SIZE:
        msg = f"size out of range [1, 4294967295] in {shown!r}"
    elif status == _tracefile.STATUS_WRAP:
        msg = f"address (+ size) does not fit in 64 bits in {shown!r}"
    else:
        msg = f"expected {_WHAT[fmt]}, got {shown!r}"
    return TraceError(msg, path=os.fspath(path), line=lineno, index=index)


def _parse_blocks(src: _Source, fmt: str, columns, progress=None):
    """Parse ``src`` into columns; a generator of ``(addr, kind, size, n)``.

    ``columns(n_done, text_bytes)`` returns fresh (addr, kind, size) arrays to
    fill, given the records so far and the bytes of text they took: each
    is yielded once full (``n`` == its length) and once, partly filled, at the
    end. At a bad line, the records before it are yielded first, then
    TraceError is raised with ``.index`` = how many records came before it.
    """
    parser = _tracefile.LineParser(_tracefile.FORMATS[fmt])
    buf = np.empty(BLOCK + _tracefile.MAX_LINE_BYTES, dtype=np.uint8)
    view = memoryview(buf)
    start = stop = 0                 # buf[start:stop] holds bytes not yet parsed
    total = 0                        # records yielded before the current columns
    read = 0                         # bytes of text read: read - (stop - start) parsed
    addr, kind, size = columns(total, 0)
    n = 0
    final = False
    while True:
        if not final and stop - start < BLOCK // 2:
            # move the unparsed tail (at most one partial line) to the front,
            # then fill the buffer behind it
            if start:
                buf[:stop - start] = buf[start:stop]
                stop -= start
                start = 0
            got = src.readinto(view[stop:])
            if got == 0:
                final = True
            stop += got
            read += got
            if progress is not None:
                progress(src.raw_pos / src.size if src.size else 1.0)
        start, n, status = parser.parse(buf, start, stop, final, addr, kind, size, n)
        if status != _tracefile.STATUS_MORE:
            error = _line_error(src.path, fmt, parser.lines + 1, status,
                                bytes(buf[start:start + 200]), total + n)
            if n:
                yield addr, kind, size, n      # the records before the bad line
            raise error
        if n == addr.shape[0]:
            yield addr, kind, size, n
            total += n
            addr, kind, size = columns(total, read - (stop - start))
            n = 0
        elif final and start == stop:
            yield addr, kind, size, n
            return


def _noise(line: bytes) -> bool:
    s = line.strip()
    return not s or s[:2] in (b"==", b"--", b"**") or s.startswith(b"#")


def _sniff(head: bytes) -> str | None:
    """The text format of the first line of ``head`` that is a record of one."""
    for line in head.split(b"\n")[:-1] or [head]:
        line = line.rstrip(b"\r")
        for fmt in ("lackey", "simple"):
            p = _tracefile.LineParser(_tracefile.FORMATS[fmt])
            a = np.empty(1, np.uint64)
            _, n, status = p.parse(line + b"\n", 0, len(line) + 1, True, a,
                                   np.empty(1, np.uint8), np.empty(1, np.uint32), 0)
            if n == 1:
                return fmt
        if not _noise(line):
            return None
    return None


def detect_format(path, probe_bytes: int = 1 << 16) -> str:
    """``"binary"``, ``"lackey"`` or ``"simple"``, from the file's content.

    A binary trace is told by its magic number; a text trace by the first line
    of its (decompressed) start that is a record of either format, after
    Valgrind's ``==PID==`` lines, blank lines and ``#`` comments. An empty
    file is ``"lackey"`` (it holds no record of any format).

    Raises
    ------
    TraceError
        If no line near the start is a record of either format.
    """
    src = _Source(path)
    try:
        if src.head.startswith(MAGIC[:6]):
            return "binary"
        buf = bytearray(probe_bytes)
        n = 0
        while n < probe_bytes:
            got = src.readinto(memoryview(buf)[n:])
            if not got:
                break
            n += got
    finally:
        src.close()
    head = bytes(buf[:n])
    if not head.strip():
        return "lackey"
    fmt = _sniff(head)
    if fmt is None:
        if b"\n" not in head[:_tracefile.MAX_LINE_BYTES]:
            why = "its start holds no line end: binary data?"
        else:
            why = "no line near the start is a lackey or a simple record"
        raise TraceError(f"not a trace: {why} (give the format if it is one)",
                         path=os.fspath(path))
    return fmt


def _check_format(format) -> None:
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} or None, "
                         f"not {format!r}")


def _chunk_arg(chunk) -> int:
    import operator

    if isinstance(chunk, bool):
        raise TypeError("chunk must be an int, not bool")
    chunk = operator.index(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 record, got {chunk}")
    return chunk


def stream(path, *, format=None, chunk=DEFAULT_CHUNK, _progress=None):
    """Read a trace file as an iterator of :class:`Trace` chunks, in order.

    At most one chunk is held at a time (plus one block of text and the
    decompressor's buffers), whatever the file's length, so any trace can be
    replayed in constant memory: ``m.replay(pymmu.traces.stream(path))``.

    Parameters
    ----------
    path : str or os.PathLike
        A lackey or simple text trace (plain, xz, gzip or bz2, by content), or
        a binary trace written by :meth:`Trace.save`.
    format : {"lackey", "simple", "binary"}, optional
        Default: detected from the content (:func:`detect_format`).
    chunk : int
        Records per chunk (the last may be shorter). Chunks of a binary trace
        are read-only views of its memory map.

    Yields
    ------
    Trace
        Each an independent Trace (none is reused or modified later).

    Raises
    ------
    TraceError
        A bad line (with the file, the 1-based line number and ``.index``, the
        position the record would have had in the whole trace), a truncated
        or corrupt compressed file, a file that is not a trace.
    OSError
        A missing file, a directory, a file that cannot be read.

    Examples
    --------
    >>> import pymmu
    >>> chunks = pymmu.traces.stream(pymmu.traces.sample("ls"), chunk=500_000)
    >>> [len(c) for c in chunks]
    [500000, 373174]
    """
    # (a function, not a generator: bad arguments and unreadable files raise here)
    _check_format(format)
    chunk = _chunk_arg(chunk)
    path = os.fspath(path)
    if format is None:
        format = detect_format(path)
    if format == "binary":
        return _stream_binary(path, chunk, _progress)
    return _stream_text(path, format, chunk, _progress)


def _stream_text(path, format, chunk, progress):
    def columns(done, nbytes):
        return (np.empty(chunk, np.uint64), np.empty(chunk, np.uint8),
                np.empty(chunk, np.uint32))

    src = _Source(path)
    try:
        for addr, kind, size, n in _parse_blocks(src, format, columns, progress):
            if n:
                yield _frozen_trace(addr[:n], kind[:n], size[:n])
    finally:
        src.close()


def _stream_binary(path, chunk, progress):
    # each chunk maps just its own bytes: once it is dropped, they are unmapped,
    # so a stream holds one chunk of the file however long it is
    with _open_raw(path) as f:
        n = _read_header(f, path)
        for i in range(0, n, chunk):
            yield _map_columns(f, n, i, min(n, i + chunk))
            if progress is not None:
                progress(min(n, i + chunk) / n)


def _frozen_trace(addr, kind, size) -> Trace:
    for a in (addr, kind, size):
        a.flags.writeable = False
    return Trace._from_columns(addr, kind, size)


# The most a compressed file's stated length may exceed its own before it is
# not believed for sizing (lackey text compresses about 30 to 60 times by xz).
_MAX_RATIO = 1000


def _read_text(path, format: str) -> Trace:
    """A whole text trace in one Trace: 13 bytes per record at the end.

    The first 64 Ki records go into a small part. Their text gives the bytes
    per record, and the file's length (plain) or the decompressed length it
    states (xz's index, gzip's trailer) then sizes the columns for the rest,
    with an eighth to spare: the first part is copied to their front and the
    parser fills them in place; at the end they shrink in place to what they
    hold. So the trace is read with no second copy, and a bomb or a file that
    is not a trace fails before anything is sized from what it states. Without
    a usable length (bz2), or past it, records go into parts of growing
    capacity, joined at the end one column at a time, each part's column let
    go once copied: the peak stays near 21 bytes per record.
    """
    src = _Source(path)
    first = 1 << 16
    parts = []          # filled columns, in order (each [addr, kind, size])
    sized = []          # the columns sized from the stated length (then None)

    def columns(done, nbytes):
        hint = src.size_hint
        if done == first and not sized and hint and hint <= _MAX_RATIO * src.size:
            more = max(hint - nbytes, 0) * done // max(nbytes, 1)
            try:
                sized[:] = [np.empty(done + more + more // 8 + 1024, dt) for dt in _DTYPES]
            except MemoryError:
                sized[:] = [None]
            else:
                # the first part moves to the front; the parser fills the rest
                for c, col in enumerate(sized):
                    col[:done] = parts[0][c]
                parts.clear()
                return [col[done:] for col in sized]
        cap = min(max(done, first), DEFAULT_CHUNK)
        return [np.empty(cap, dt) for dt in _DTYPES]

    try:
        for addr, kind, size, n in _parse_blocks(src, format, columns):
            if sized and sized[0] is not None and addr.base is sized[0]:
                held = sized[0].shape[0] - addr.shape[0] + n
                cols, sized[:] = sized[:], [None]     # later columns are parts
            else:
                held, cols = n, [addr, kind, size]
            for c in cols:
                c.resize(held, refcheck=False)       # shrinks in place: no copy
            parts.append(cols)
    finally:
        src.close()
    return _frozen_trace(*parts[0]) if len(parts) == 1 else _join(parts)


_DTYPES = (np.uint64, np.uint8, np.uint32)


def _join(parts) -> Trace:
    """One Trace of the parts' columns, joined a column at a time."""
    total = sum(p[0].shape[0] for p in parts)
    cols = []
    for c, dtype in enumerate(_DTYPES):
        out = np.empty(total, dtype)
        at = 0
        for p in parts:
            out[at:at + p[c].shape[0]] = p[c]
            at += p[c].shape[0]
            p[c] = None
        cols.append(out)
    return _frozen_trace(*cols)


def read_lackey(path) -> Trace:
    """Read a whole Valgrind lackey ``--trace-mem=yes`` trace.

    Record lines are ``I  ADDR,SIZE`` (instruction fetch, two spaces) and
    `` L ADDR,SIZE``, `` S ADDR,SIZE``, `` M ADDR,SIZE`` (load, store, modify,
    one leading space), with ADDR in hex (up to 16 digits) and SIZE in decimal
    (1 .. 2**32 - 1), exactly as lackey prints them. Valgrind's own lines
    (``==PID==``, ``--PID--``, ``**PID**``) and blank lines are skipped;
    ``\\r\\n`` line ends are accepted. Any other line raises ``TraceError``.

    The parsing runs in compiled code; the result holds 13 bytes per record
    (use :func:`stream` to hold one chunk at a time instead).

    Parameters
    ----------
    path : str or os.PathLike
        A plain file, or one compressed with xz, gzip or bz2 (detected from
        its content, whatever its name).

    Returns
    -------
    Trace
        Kinds ``FETCH``, ``LOAD``, ``STORE``, ``MODIFY`` for I, L, S, M.

    Raises
    ------
    TraceError
        A bad line (file and line number), corrupt or truncated compressed data.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "t.lackey")
    ...     with open(p, "w") as f:
    ...         _ = f.write("==1== Lackey\\nI  04016e0,3\\n L 1ffefffd38,8\\n M 0403e28,4\\n")
    ...     t = read_lackey(p)
    >>> [hex(a) for a in t.addr.tolist()], t.kind.tolist(), t.size.tolist()
    (['0x4016e0', '0x1ffefffd38', '0x403e28'], [0, 1, 3], [3, 8, 4])
    """
    return _read_text(path, "lackey")


def read_simple(path) -> Trace:
    """Read a whole simple text trace: one ``R ADDR [SIZE]`` or ``W ADDR [SIZE]`` per line.

    ``R``/``r`` is a ``LOAD``, ``W``/``w`` a ``STORE``. ADDR is hex with a
    ``0x`` prefix (``0x1f00``) or decimal without one (``7936``); the optional
    SIZE is decimal and defaults to 1. Blank lines and lines whose first
    non-blank character is ``#`` are skipped. Anything else raises
    ``TraceError`` naming the file and the (1-based) line number.

    Parameters
    ----------
    path : str or os.PathLike
        A plain file, or one compressed with xz, gzip or bz2 (by content).

    Returns
    -------
    Trace

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "t.txt")
    ...     with open(p, "w") as f:
    ...         _ = f.write("# a comment\\nR 0x1f00\\n\\nw 7936 8\\n")
    ...     t = read_simple(p)
    >>> t.addr.tolist(), t.kind.tolist(), t.size.tolist()
    ([7936, 7936], [1, 2], [1, 8])
    """
    return _read_text(path, "simple")


def read(path, format=None) -> Trace:
    """A whole trace of any format (``format=None``: detected): one Trace.

    A binary trace is memory-mapped (:func:`load`); text is parsed
    (:func:`read_lackey`, :func:`read_simple`).
    """
    _check_format(format)
    if format is None:
        format = detect_format(path)
    if format == "binary":
        return load(path)
    return _read_text(path, format)


# --------------------------------------------------------------------------
# The binary format
# --------------------------------------------------------------------------

def _align8(n: int) -> int:
    return (n + 7) & ~7


def _layout(n: int) -> tuple[int, int, int, int]:
    """Offsets of the addr, kind and size columns, and the file's length."""
    addr_off = _HEADER.size
    kind_off = addr_off + 8 * n
    size_off = _align8(kind_off + n)
    return addr_off, kind_off, size_off, _align8(size_off + 4 * n)


class TraceWriter:
    """Write a binary trace chunk by chunk, not knowing its length up front.

    ``write(trace)`` appends a Trace; ``close()`` finishes the file;
    ``abort()`` removes everything written.

    The addr column goes straight to its place in the file; kind and size go
    to temporary files beside it and are appended at the end, when the
    record count (and so their offsets) is known. The file appears complete
    or not at all: it is written under a temporary name and renamed.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.tmp = f"{self.path}.part{os.getpid()}"
        self.n = 0
        self.f = open(self.tmp, "wb")
        self.side = []
        try:
            self.f.write(_HEADER.pack(MAGIC, VERSION, 0, 0))
            self.side = [open(f"{self.tmp}.{c}", "w+b") for c in ("kind", "size")]
        except BaseException:
            self.abort()
            raise

    def write(self, t: Trace) -> None:
        self.f.write(memoryview(np.ascontiguousarray(t.addr, dtype="<u8")).cast("B"))
        self.side[0].write(memoryview(np.ascontiguousarray(t.kind, dtype="u1")).cast("B"))
        self.side[1].write(memoryview(np.ascontiguousarray(t.size, dtype="<u4")).cast("B"))
        self.n += len(t)

    def close(self) -> None:
        _, kind_off, size_off, end = _layout(self.n)
        try:
            for side, off in ((self.side[0], size_off), (self.side[1], end)):
                side.seek(0)
                while block := side.read(1 << 22):
                    self.f.write(block)
                self.f.write(b"\0" * (off - self.f.tell()))
            self.f.seek(0)
            self.f.write(_HEADER.pack(MAGIC, VERSION, 0, self.n))
            self.f.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        finally:
            self._drop_side()

    def _drop_side(self) -> None:
        for side in self.side:
            side.close()
            os.unlink(side.name)
        self.side = []

    def abort(self) -> None:
        self.f.close()
        self._drop_side()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def save(trace: Trace, path) -> None:
    """Write ``trace`` to ``path`` in the binary format (see the module notes)."""
    if not isinstance(trace, Trace):
        raise TypeError(f"save needs a Trace, not {type(trace).__name__}")
    w = TraceWriter(path)
    try:
        w.write(trace)
    except BaseException:
        w.abort()
        raise
    w.close()


def _read_header(f, path) -> int:
    """Check a binary trace's header against the file: its record count."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size or not head.startswith(MAGIC):
        raise TraceError("not a pymmu binary trace (bad magic number)", path=path)
    _, version, _, n = _HEADER.unpack(head)
    if version != VERSION:
        raise TraceError(f"binary trace version {version}; this pymmu reads "
                         f"version {VERSION}", path=path)
    length = os.fstat(f.fileno()).st_size
    end = _layout(n)[3]
    if length != end:
        raise TraceError(f"the header says {n:,} records, which take {end:,} "
                         f"bytes, but the file has {length:,}: truncated or "
                         "corrupt", path=path)
    return n


def _map_columns(f, n: int, first: int, last: int) -> Trace:
    """Records ``[first, last)`` of an open binary trace of ``n`` records, as
    read-only views of maps of just their bytes."""
    import mmap

    cols = []
    for off, (width, dtype, native) in zip(_layout(n)[:3], _COLUMNS):
        pos = off + width * first
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        count = last - first
        if count == 0:
            cols.append(np.empty(0, native))
            continue
        mm = mmap.mmap(f.fileno(), pos + width * count - base, offset=base,
                       access=mmap.ACCESS_READ)
        a = np.frombuffer(mm, dtype=dtype, count=count, offset=pos - base)
        cols.append(a.astype(native, copy=False))
    return Trace._from_columns(*cols)


# Each column's width, its dtype in the file, and the dtype of a Trace column.
_COLUMNS = ((8, "<u8", np.uint64), (1, "u1", np.uint8), (4, "<u4", np.uint32))


def load(path) -> Trace:
    """Open a binary trace written by :meth:`Trace.save`: memory-mapped, O(1).

    The columns are read-only views of the file's memory map; nothing is read
    until used. Only the header is checked here (magic, version, and the
    record count against the file's length); replay checks every record.
    The file must keep its length while the Trace lives: if another program
    truncates it, touching the lost pages kills the process with SIGBUS,
    which Python cannot catch (docs/traces.md, "A loaded trace and its
    file"); ``Trace(t.addr, t.kind, t.size)`` is a copy in memory.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Trace

    Raises
    ------
    TraceError
        Not a binary trace, another version, or a length that does not match
        the header.

    Examples
    --------
    >>> import os, tempfile
    >>> from pymmu.traces import Trace
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "t.pmt")
    ...     Trace([0x1000, 0x2008], kind="LS", size=8).save(p)
    ...     t = load(p)
    ...     print(t.addr.tolist(), t.kind.tolist(), t.size.tolist())
    [4096, 8200] [1, 2] [8, 8]
    """
    path = os.fspath(path)
    with _open_raw(path) as f:
        n = _read_header(f, path)
        return _map_columns(f, n, 0, n)


def convert(src, dst, *, format=None, chunk=DEFAULT_CHUNK, _progress=None) -> int:
    """Convert a trace file to the binary format, streaming: returns the record count.

    Memory stays at one chunk whatever the trace's length. ``dst`` appears
    only once complete.
    """
    w = TraceWriter(dst)
    try:
        for t in stream(src, format=format, chunk=chunk, _progress=_progress):
            w.write(t)
    except BaseException:
        w.abort()
        raise
    w.close()
    return w.n


# --------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------

_SAMPLES = pathlib.Path(__file__).resolve().parent / "samples"


def samples() -> list[str]:
    """The names of the sample traces shipped with pymmu (``sample(name)``)."""
    return sorted(p.name.split(".")[0] for p in _SAMPLES.glob("*.lackey.xz"))


def sample(name: str) -> str:
    """The path of a sample trace shipped with pymmu.

    Real programs' Valgrind lackey traces, xz-compressed (``pymmu/samples/``,
    whose README says how each was recorded).

    Parameters
    ----------
    name : str
        One of :func:`samples`, e.g. ``"ls"``.

    Examples
    --------
    >>> import pymmu
    >>> len(pymmu.traces.read_lackey(pymmu.traces.sample("ls")))
    873174
    """
    if not isinstance(name, str):
        raise TypeError(f"sample name must be a str, not {type(name).__name__}")
    path = _SAMPLES / f"{name}.lackey.xz"
    if not path.is_file():
        raise ValueError(f"no sample trace {name!r}; the samples are: "
                         f"{', '.join(samples())}")
    return str(path)
