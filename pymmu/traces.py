"""Memory traces: the ``Trace`` container and the trace-file readers.

This module owns everything a replay needs to know about a trace before it
reaches the core:

* the kind codes ``FETCH``, ``LOAD``, ``STORE``, ``MODIFY`` (Valgrind lackey's
  ``I``, ``L``, ``S``, ``M``) and ``KIND_LETTERS``;
* :class:`Trace`, three read-only, C-contiguous numpy columns (``addr`` uint64,
  ``kind`` uint8, ``size`` uint32) that ``Machine.replay`` can walk without
  re-checking, plus the page-level views a replay or a policy needs
  (:meth:`Trace.pages`, :meth:`Trace.next_use`, :meth:`Trace.distinct_pages`);
* the names of :mod:`pymmu.trace_io`, which owns trace files: :func:`stream`
  (chunks in constant memory), :func:`read_lackey` (``valgrind --tool=lackey
  --trace-mem=yes`` output), :func:`read_simple` (``R 0x1f00`` / ``W 0x1f08``
  lines), the binary format (:meth:`Trace.save`, :func:`load`,
  :func:`convert`), the sample traces (:func:`sample`) and
  :class:`TraceError`.

>>> t = Trace([0x1000, 0x1ffc, 0x5000], kind="LSI", size=[8, 8, 4])
>>> t
Trace(3 records: I=1 L=1 S=1 M=0, addr 0x1000..0x5000)
>>> t.pages(4096)              # the second record crosses into page 2
array([1, 1, 2, 5], dtype=uint64)
>>> t.next_use(4096)
array([1, 4, 4, 4])
>>> t.distinct_pages(4096)
3
"""
from __future__ import annotations

import collections
import operator
import os

import numpy as np

__all__ = [
    "FETCH", "LOAD", "STORE", "MODIFY", "KIND_LETTERS",
    "Trace", "Record", "TraceError",
    "stream", "read", "read_lackey", "read_simple", "load", "save", "convert",
    "detect_format", "detect_compression", "open_binary", "open_text",
    "sample", "samples",
]

FETCH = 0
LOAD = 1
STORE = 2
MODIFY = 3
KIND_LETTERS = "ILSM"

_KIND_OF_LETTER = {letter: code for code, letter in enumerate(KIND_LETTERS)}
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1

Record = collections.namedtuple("Record", ["addr", "kind", "size"])
Record.__doc__ = """One trace record, as ``trace[i]`` returns it (three Python ints)."""


# --------------------------------------------------------------------------
# Column checking
# --------------------------------------------------------------------------

def _int_column(value, name: str, lo: int, hi: int) -> np.ndarray:
    """``value`` as a 0-d or 1-d integer array with every element in [lo, hi].

    The result may share memory with ``value``; the caller copies it into the
    Trace's own storage. Bools, floats and other non-integers are a TypeError.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be integers, not bool")
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be integers, not {type(value).__name__}")
    try:
        a = np.asarray(value)
    except (OverflowError, ValueError) as e:  # ragged input and the like
        raise ValueError(f"{name}: cannot make an array of it ({e})") from None
    if a.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(a.shape, dtype=np.uint64)  # np.asarray([]) is float64
    kind = a.dtype.kind
    if kind == "f" and not isinstance(value, (np.ndarray, np.generic, float)):
        # numpy turns a list mixing int64 and uint64-only values (such as
        # [0, 2**63]) into float64: check such lists element by element
        a = np.array(value, dtype=object)
        kind = "O"
    if kind == "b":
        raise TypeError(f"{name} must be integers, not bool")
    if kind == "O":
        items = []
        for i, x in enumerate(a.ravel().tolist()):
            if isinstance(x, bool):
                raise TypeError(f"{name}[{i}] must be an int, not bool")
            try:
                items.append(operator.index(x))
            except TypeError:
                raise TypeError(
                    f"{name}[{i}] must be an int, not {type(x).__name__}") from None
        bad = [(i, x) for i, x in enumerate(items) if not lo <= x <= hi]
        if bad:
            i, x = bad[0]
            where = f"{name}[{i}]" if a.ndim else name
            raise ValueError(f"{where} = {x} is out of range [{lo}, {hi}]")
        a = np.array(items, dtype=np.uint64).reshape(a.shape)
        return a
    if kind not in "iu":
        raise TypeError(f"{name} must be integers, not {a.dtype}")
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax > hi:
        bad = (a < lo) if amin < lo else (a > hi)
        if a.ndim:
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}[{i}] = {int(a[i])} is out of range [{lo}, {hi}]")
        raise ValueError(f"{name} = {int(a)} is out of range [{lo}, {hi}]")
    return a


def _kind_column(kind) -> np.ndarray:
    """The ``kind`` argument as a 0-d or 1-d array of codes 0..3."""
    if isinstance(kind, str):
        if len(kind) == 1:
            if kind not in _KIND_OF_LETTER:
                raise ValueError(
                    f"kind letter {kind!r} is not one of {', '.join(KIND_LETTERS)}")
            return np.asarray(_KIND_OF_LETTER[kind], dtype=np.uint8)
        kind = list(kind)  # a str of letters: one per record
    elif isinstance(kind, np.ndarray) and kind.dtype.kind in "US":
        kind = kind.tolist()
    elif isinstance(kind, (bytes, bytearray)):
        raise TypeError("kind must be a code 0..3, a letter str such as 'L' or "
                        "'LLS', or a sequence of them, not bytes")
    if isinstance(kind, (list, tuple)) and any(isinstance(k, (str, bytes)) for k in kind):
        codes = []
        for i, k in enumerate(kind):
            if isinstance(k, bytes):
                k = k.decode("ascii", "replace")
            if isinstance(k, str):
                if k not in _KIND_OF_LETTER:
                    raise ValueError(f"kind[{i}] = {k!r} is not one of "
                                     f"{', '.join(KIND_LETTERS)} (or a code 0..3)")
                codes.append(_KIND_OF_LETTER[k])
            else:
                codes.append(k)
        kind = codes
    return _int_column(kind, "kind", 0, 3)


def _page_shift(page_size) -> int:
    if isinstance(page_size, (bool, np.bool_)):
        raise TypeError("page_size must be an int, not bool")
    try:
        page_size = operator.index(page_size)
    except TypeError:
        raise TypeError(
            f"page_size must be an int, not {type(page_size).__name__}") from None
    if page_size < 1 or page_size & (page_size - 1):
        raise ValueError(f"page_size must be a positive power of two, got {page_size}")
    return page_size.bit_length() - 1


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------
# Trace
# --------------------------------------------------------------------------

class Trace:
    """A memory trace: one record per access, stored as three numpy columns.

    Parameters
    ----------
    addr : int or 1-D array_like of int
        Virtual address of each access, 0 <= addr < 2**64.
    kind : int, str, or 1-D sequence, default LOAD
        Access kind per record: an int code ``FETCH``/``LOAD``/``STORE``/
        ``MODIFY`` (0..3) or the matching lackey letter ``"I"``, ``"L"``,
        ``"S"``, ``"M"`` (upper case). A one-letter str is a scalar; a longer
        str such as ``"LLS"`` gives one letter per record, as does a list of
        letters and/or codes.
    size : int or 1-D array_like of int, default 1
        Bytes accessed per record, 1 <= size < 2**32 (lackey sizes are >= 1).
        A record covers bytes ``[addr, addr + size)``, which must lie below
        2**64.

    Notes
    -----
    Scalars (0-d values, including a one-letter ``kind``) broadcast to the
    length of the 1-D arguments; all 1-D arguments must have the same length
    (a length-1 list does not broadcast). If every argument is a scalar the
    trace has one record. Bad input raises ``TypeError`` (wrong type: floats,
    bools, strings for ``addr``) or ``ValueError`` (out of range, mismatched
    lengths, not 1-D).

    The columns are copied into arrays the Trace owns, C-contiguous and
    read-only (``flags.writeable`` is False), so a replay can trust them
    without re-checking. ``trace[i]`` is a :class:`Record` of Python ints;
    ``trace[a:b]``, ``trace[mask]`` and ``trace[indices]`` are Traces.

    Examples
    --------
    >>> t = Trace([0x1000, 0x2000, 0x2008], kind=[FETCH, "S", "M"], size=8)
    >>> len(t), t.addr.dtype, t.kind.tolist(), t.size.tolist()
    (3, dtype('uint64'), [0, 2, 3], [8, 8, 8])
    >>> t[1]
    Record(addr=8192, kind=2, size=8)
    >>> t[1:]
    Trace(2 records: I=0 L=0 S=1 M=1, addr 0x2000..0x2008)
    >>> t.addr.flags.writeable
    False
    >>> Trace(-1)
    Traceback (most recent call last):
    ...
    ValueError: addr = -1 is out of range [0, 18446744073709551615]
    """

    __slots__ = ("_addr", "_kind", "_size")

    def __init__(self, addr, kind=LOAD, size=1):
        a = _int_column(addr, "addr", 0, _U64_MAX)
        k = _kind_column(kind)
        s = _int_column(size, "size", 1, _U32_MAX)
        lengths = [(name, c.shape[0]) for name, c in
                   (("addr", a), ("kind", k), ("size", s)) if c.ndim == 1]
        n = lengths[0][1] if lengths else 1
        for name, m in lengths:
            if m != n:
                first = lengths[0][0]
                raise ValueError(
                    f"{first} has {n} records but {name} has {m}: "
                    "1-D arguments must have the same length (scalars broadcast)")
        addr_col = np.empty(n, dtype=np.uint64)
        kind_col = np.empty(n, dtype=np.uint8)
        size_col = np.empty(n, dtype=np.uint32)
        addr_col[...] = a
        kind_col[...] = k
        size_col[...] = s
        # the last byte, addr + size - 1, must not wrap around 2**64
        over = addr_col > (np.uint64(_U64_MAX) - (size_col.astype(np.uint64) - np.uint64(1)))
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"record {i}: addr {int(addr_col[i]):#x} + size {int(size_col[i])} "
                "runs past 2**64")
        self._addr = _frozen(addr_col)
        self._kind = _frozen(kind_col)
        self._size = _frozen(size_col)

    @classmethod
    def _from_columns(cls, addr, kind, size) -> "Trace":
        """Build from columns already checked (internal: no validation).

        Each column is copied unless it is already a C-contiguous, read-only
        array of the right dtype that no one else can write (one taken from
        another Trace, or made by a reader and handed over).
        """
        t = cls.__new__(cls)
        t._addr = _owned(addr, np.uint64)
        t._kind = _owned(kind, np.uint8)
        t._size = _owned(size, np.uint32)
        return t

    # -- columns ---------------------------------------------------------
    @property
    def addr(self) -> np.ndarray:
        """uint64 virtual address of each record (read-only)."""
        return self._addr

    @property
    def kind(self) -> np.ndarray:
        """uint8 kind code of each record, 0..3 (read-only)."""
        return self._kind

    @property
    def size(self) -> np.ndarray:
        """uint32 size in bytes of each record, >= 1 (read-only)."""
        return self._size

    # -- container protocol ---------------------------------------------
    def __len__(self) -> int:
        return self._addr.shape[0]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Trace._from_columns(self._addr[index], self._kind[index],
                                       self._size[index])
        if isinstance(index, (bool, np.bool_)):
            raise TypeError("a Trace index must be an int, a slice or an array")
        try:
            i = operator.index(index)
        except TypeError:
            pass
        else:
            n = len(self)
            if not -n <= i < n:
                raise IndexError(f"trace index {i} out of range for {n} records")
            return Record(int(self._addr[i]), int(self._kind[i]), int(self._size[i]))
        if isinstance(index, tuple):
            raise TypeError("a Trace is 1-D: index it with one int, slice or array")
        idx = np.asarray(index)
        if idx.ndim != 1 or (idx.dtype.kind not in "iub" and idx.size):
            raise TypeError("a Trace index must be an int, a slice, a boolean mask "
                            "or a 1-D array of ints")
        if idx.size == 0:
            idx = idx.astype(np.intp)
        return Trace._from_columns(self._addr[idx], self._kind[idx], self._size[idx])

    def __repr__(self) -> str:
        n = len(self)
        if n == 0:
            return "Trace(0 records)"
        counts = np.bincount(self._kind, minlength=4)
        kinds = " ".join(f"{c}={int(k)}" for c, k in zip(KIND_LETTERS, counts))
        word = "record" if n == 1 else "records"
        return (f"Trace({n} {word}: {kinds}, "
                f"addr {int(self._addr.min()):#x}..{int(self._addr.max()):#x})")

    def __getstate__(self):
        return (self._addr, self._kind, self._size)

    def __setstate__(self, state):
        # a pickle can hold anything: check it as the constructor checks its arguments
        if not isinstance(state, tuple) or len(state) != 3:
            raise TypeError("Trace state must be a tuple (addr, kind, size)")
        addr, kind, size = state
        for name, col in (("addr", addr), ("kind", kind), ("size", size)):
            if not isinstance(col, np.ndarray) or col.ndim != 1:
                raise TypeError(f"Trace state: {name} must be a 1-D numpy array")
        t = Trace(addr, kind, size)
        self._addr, self._kind, self._size = t._addr, t._kind, t._size

    def save(self, path) -> None:
        """Write the trace to ``path`` in pymmu's binary format.

        :func:`load` opens it again in O(1), memory-mapped; the format is
        described in :mod:`pymmu.trace_io` and docs/traces.md.

        Parameters
        ----------
        path : str or os.PathLike
        """
        save(self, path)

    @classmethod
    def concat(cls, traces) -> "Trace":
        """One trace made of ``traces`` one after another.

        Parameters
        ----------
        traces : iterable of Trace

        Returns
        -------
        Trace

        Examples
        --------
        >>> Trace.concat([Trace(0x10), Trace([0x20, 0x30], "S")]).addr.tolist()
        [16, 32, 48]
        >>> len(Trace.concat([]))
        0
        """
        traces = list(traces)
        for i, t in enumerate(traces):
            if not isinstance(t, Trace):
                raise TypeError(f"Trace.concat: item {i} is a {type(t).__name__}, "
                                "not a Trace")
        if not traces:
            return cls._from_columns(np.empty(0, np.uint64), np.empty(0, np.uint8),
                                     np.empty(0, np.uint32))
        return cls._from_columns(np.concatenate([t._addr for t in traces]),
                                 np.concatenate([t._kind for t in traces]),
                                 np.concatenate([t._size for t in traces]))

    # -- page views ------------------------------------------------------
    def pages(self, page_size: int) -> np.ndarray:
        """The page numbers a replay touches, in order.

        A record whose bytes ``[addr, addr + size)`` cross page boundaries
        contributes every page it covers, lowest first, so the result can be
        longer than the trace.

        Parameters
        ----------
        page_size : int
            A power of two.

        Returns
        -------
        numpy.ndarray of uint64
            A new (writable) array.

        Examples
        --------
        >>> Trace([0x0fff, 0x3000], size=[2, 8193]).pages(4096)
        array([0, 1, 3, 4, 5], dtype=uint64)
        """
        shift = np.uint64(_page_shift(page_size))
        first = self._addr >> shift
        # (a record of a loaded file or a subclass may have size 0, or run past
        # 2**64: replay refuses or faults it before it touches a page; here it
        # covers its first page, or the pages up to the last one)
        span = np.maximum(self._size, np.uint32(1)).astype(np.uint64) - np.uint64(1)
        end = self._addr + span
        wrapped = end < self._addr
        if wrapped.any():
            end[wrapped] = np.uint64(_U64_MAX)
        last = end >> shift
        count = last - first
        if not count.any():
            return first
        count += np.uint64(1)
        count = count.astype(np.intp)
        total = int(count.sum())
        # position j of record r's run: first[r] + (j - start of r's run)
        starts = np.cumsum(count) - count
        step = np.arange(total, dtype=np.uint64) - np.repeat(starts, count).astype(np.uint64)
        return np.repeat(first, count) + step

    def next_use(self, page_size: int) -> np.ndarray:
        """For each position of :meth:`pages`, the next position of the same page.

        Positions with no later use hold the sentinel ``len(self.pages(page_size))``.
        This is the look-ahead Belady's OPT needs.

        Parameters
        ----------
        page_size : int
            A power of two.

        Returns
        -------
        numpy.ndarray of int64

        Examples
        --------
        >>> Trace([0, 4096, 0, 8192, 4096]).next_use(4096)
        array([2, 4, 5, 5, 5])
        """
        from pymmu._tracefile import next_use   # one linear pass in C

        return next_use(np.ascontiguousarray(self.pages(page_size), dtype=np.uint64))

    def distinct_pages(self, page_size: int) -> int:
        """How many different pages the trace touches (crossings included).

        Examples
        --------
        >>> Trace([0x0, 0x10, 0x1ffe], size=[1, 1, 4]).distinct_pages(4096)
        3
        """
        from pymmu._tracefile import PageSet   # an exact set, never the page list

        pages = PageSet(_page_shift(page_size))
        pages.add(self._addr, self._size)
        return pages.count


def replay_parts(trace, *, single: bool = False):
    """The Traces a ``Machine.replay`` runs, in order.

    Parameters
    ----------
    trace : Trace or iterable of Trace
        One trace, or chunks (such as :func:`stream` yields) replayed as their
        concatenation.
    single : bool
        The policy needs the whole future (opt): only a single Trace will do.

    Returns
    -------
    iterator of Trace
        Items that are not Traces raise ``TypeError`` when reached.
    """
    if isinstance(trace, Trace):
        return iter((replay_columns(trace),))
    if isinstance(trace, (str, bytes, os.PathLike)):
        raise TypeError("replay needs a Trace or an iterable of Traces, not a path: "
                        "use pymmu.traces.stream(path) or pymmu.traces.read(path)")
    try:
        items = iter(trace)
    except TypeError:
        raise TypeError("replay needs a pymmu.traces.Trace or an iterable of Traces, "
                        f"not {type(trace).__name__}") from None
    if single:
        raise ValueError(
            "the opt policy needs the whole future of the trace: replay a single "
            "Trace, not an iterable (pymmu.traces.load(path) memory-maps a binary "
            "trace; pymmu.traces.read(path) reads a whole text trace)")

    def checked():
        for i, t in enumerate(items):
            if not isinstance(t, Trace):
                raise TypeError(f"replay: item {i} of the iterable is a "
                                f"{type(t).__name__}, not a Trace")
            yield replay_columns(t)
    return checked()


_COLUMN_DTYPES = (("addr", np.dtype(np.uint64)), ("kind", np.dtype(np.uint8)),
                  ("size", np.dtype(np.uint32)))


def replay_columns(trace: Trace) -> Trace:
    """The Trace a replay hands the core, whose loop walks the columns without
    the GIL and without re-checking their types or lengths.

    ``trace`` itself when it is a plain Trace holding what a Trace holds: 1-D,
    C-contiguous, read-only numpy arrays of uint64, uint8 and uint32 of one
    length (O(1)). Otherwise (a subclass, whose properties and methods may return
    anything, or a Trace whose storage was tampered with) a plain Trace of the
    columns, read once and checked (``TypeError``: not such an array;
    ``ValueError``: lengths differ), copied unless read-only: a replay, opt's
    look-ahead and the errors then all see the same records. Kind codes and sizes
    stay the core's to check per record (``TraceError`` with the record's index).
    """
    plain = type(trace) is Trace
    cols = []
    for name, dtype in _COLUMN_DTYPES:
        col = getattr(trace, "_" + name, None) if plain else getattr(trace, name)
        if not isinstance(col, np.ndarray):
            what = "missing (an uninitialised Trace)" if col is None else (
                f"a {type(col).__name__}, not a numpy array")
            raise TypeError(f"trace column {name} is {what}")
        if col.ndim != 1 or col.dtype != dtype:
            raise TypeError(f"trace column {name} must be a 1-D {dtype} array, "
                            f"not {col.ndim}-D {col.dtype}")
        cols.append(col)
    n = {len(c) for c in cols}
    if len(n) != 1:
        raise ValueError("trace columns of different lengths: " + ", ".join(
            f"{name} {len(c)}" for (name, _), c in zip(_COLUMN_DTYPES, cols)))
    if plain and all(c.flags.c_contiguous and not c.flags.writeable for c in cols):
        return trace
    return Trace._from_columns(*cols)


def bad_record_error(trace: Trace, index: int, offset: int = 0) -> "TraceError":
    """The ``TraceError`` for record ``index`` of ``trace``, which replay refused
    (``.index`` = ``offset + index``, its position in the whole replay)."""
    code = int(trace.kind[index])
    why = (f"kind code {code} is not one of 0..3" if code > 3 else
           "size 0: a record covers at least one byte")
    return TraceError(why, index=offset + index)


def first_bad_record(trace: Trace) -> int | None:
    """The position of the first record whose kind code is over 3 or whose size
    is 0 (a Trace made by ``load`` or a subclass may hold them), or None."""
    bad = (np.asarray(trace.kind) > 3) | (np.asarray(trace.size) == 0)
    return int(np.argmax(bad)) if bad.any() else None


def _owned(a, dtype) -> np.ndarray:
    a = np.asarray(a)
    if (a.dtype == dtype and a.flags.c_contiguous and not a.flags.writeable
            and a.ndim == 1):
        return a
    out = np.array(a, dtype=dtype, order="C", copy=True)
    return _frozen(out)


# --------------------------------------------------------------------------
# Files: pymmu.trace_io owns them; its public names are this module's too
# --------------------------------------------------------------------------

from pymmu.errors import TraceError  # noqa: E402
from pymmu.trace_io import (  # noqa: E402
    convert,
    detect_compression,
    detect_format,
    load,
    open_binary,
    open_text,
    read,
    read_lackey,
    read_simple,
    sample,
    samples,
    save,
    stream,
)
