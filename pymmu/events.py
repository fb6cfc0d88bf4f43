"""The event log: what the MMU did, one row per event, for courses and simulators.

``with m.events() as log:`` records, inside the block, one event per increment
of the counters named in :data:`KINDS` (and one per access refused with
``OutOfMemory``, ``SegmentationFault`` or ``ProtectionFault``), so that over the
block ``log.counts()[k]`` equals the counter's delta for every counter kind
``k``. Recording costs nothing when no block is open.

This module owns what both implementations share: the kind names and codes,
the row layout (:data:`DTYPE`) and :class:`EventLog`. Each ``Machine`` brings a
recorder (``start(limit)``, ``snapshot()``, ``stop()``) behind ``m.events()``;
:class:`ListRecorder` is the plain-Python one ``pymmu.reference`` uses.

>>> import pymmu
>>> m = pymmu.Machine(4)
>>> p = m.spawn()
>>> a = p.mmap(2 * m.page_size)
>>> with m.events() as log:
...     p.write(a, b"x")
...     _ = p.read(a + m.page_size, 1)
>>> [KINDS[k] for k in log.array["kind"]]
['zero_fills', 'zero_page_maps']
>>> log.counts()["zero_fills"], log.counts()["cow_copies"]
(1, 0)
"""
from __future__ import annotations

import collections
import threading

import numpy as np

from pymmu.tables import EVENT_KINDS

__all__ = ["KINDS", "CODES", "DTYPE", "EventLog", "ListRecorder"]

#: The event kinds, in code order: kind code ``i`` is ``KINDS[i]``. The first
#: nine are also counters of ``Machine.stats``.
KINDS = EVENT_KINDS
#: Kind name -> code.
CODES = {name: code for code, name in enumerate(KINDS)}

#: One event: ``seq`` (``m.references`` then, the causing reference included),
#: ``t_ns`` (simulated time inside ``m.run``, else 0), ``pid`` (the process
#: making the reference; for evictions and swap-outs, the lowest pid mapping the
#: victim, -1 when none), ``vaddr`` (the page's address), ``kind`` (a code of
#: :data:`KINDS`), ``pfn`` (the frame, -1 when none; a COW copy's new frame),
#: ``slot`` (the swap slot, -1 when none).
DTYPE = np.dtype({
    "names": ["seq", "t_ns", "pid", "vaddr", "kind", "pfn", "slot"],
    "formats": [np.int64, np.int64, np.int64, np.uint64, np.uint8, np.int64, np.int64],
    # the core's own record (pymmu/include/events.h), so that a log is copied out in bulk
    "offsets": [0, 8, 16, 24, 48, 32, 40],
    "itemsize": 56,
})


# No log can hold this many events (its counts are int64): a ``limit`` this
# large or larger keeps every event, like None.
_UNREACHABLE = 2 ** 63


class EventLog:
    """The events a machine records inside one ``with m.events() as log:`` block.

    Made by ``Machine.events(limit=None)``; a log belongs to its machine and
    records only inside its block, once. Nested or concurrent blocks on one
    machine raise ``RuntimeError``.

    ``__exit__`` acts only on the block this log opened: on a log never entered
    (or whose ``__enter__`` was refused) or already closed, it raises
    ``RuntimeError`` and leaves the machine's open block, if any, alone. Called
    while another thread's replay or run holds the machine, it waits for that
    operation to end, then closes (the core's replay writes the log without the
    GIL), so the log holds that operation's events too.

    Attributes
    ----------
    limit : int or None
        Keep only the latest ``limit`` events (None: all; a limit of
        ``2**63`` or more, which no count can reach, keeps all too).
    """

    def __init__(self, recorder, limit=None):
        if limit is not None:
            import operator

            if isinstance(limit, bool):
                raise TypeError("limit must be an int or None, not bool")
            limit = operator.index(limit)
            if limit < 0:
                raise ValueError(f"limit must be at least 0, got {limit}")
        self.limit = limit
        # what the recorder is asked to keep: the recorders take an int64 (the
        # core) or an ssize_t (a deque), and a limit no count reaches is no limit
        self._keep = None if limit is None or limit >= _UNREACHABLE else limit
        self._recorder = recorder
        self._open = False           # this log opened the machine's block, still open
        self._done = None            # (rows, counts, dropped) once the block ends

    def __enter__(self) -> "EventLog":
        if self._open or self._done is not None:
            raise RuntimeError("this event log has already recorded: make a new one "
                               "with m.events()")
        self._recorder.start(self._keep)
        self._open = True
        return self

    def __exit__(self, *exc) -> None:
        if not self._open:
            # the machine's open block, if any, is another log's: never close it
            state = "already closed" if self._done is not None else "never entered"
            raise RuntimeError(f"this event log is not recording ({state}): its "
                               "__exit__ closes only the block its __enter__ opened")
        rows, counts, dropped = self._recorder.stop()
        # kept read-only, handed out as copies: no caller can change the log
        rows.flags.writeable = False
        self._done = (rows, tuple(counts), dropped)
        self._open = False

    def _state(self):
        """``(rows, counts, dropped)``: the closed log's own rows (read-only), or
        a fresh snapshot while recording, or an empty log before."""
        if self._done is not None:
            return self._done
        if self._open:
            return self._recorder.snapshot()
        return np.zeros(0, DTYPE), [0] * len(KINDS), 0

    @property
    def array(self) -> np.ndarray:
        """The kept events in order: a structured array of :data:`DTYPE`, a new
        writeable copy at each call (empty before the block)."""
        rows = self._state()[0]
        if self._done is None:
            return rows                         # a snapshot: new already
        # byte for byte, padding too (ndarray.copy copies field by field and
        # leaves the padding uninitialised): logs compare as bytes
        out = np.empty(len(rows), DTYPE)
        out.view(np.uint8)[:] = rows.view(np.uint8)
        return out

    @property
    def dropped(self) -> int:
        """How many events were recorded but not kept (beyond ``limit``)."""
        return self._state()[2]

    def counts(self) -> dict[str, int]:
        """``{kind: count}`` for every kind, zeros too, dropped events included."""
        return dict(zip(KINDS, (int(c) for c in self._state()[1])))

    def __len__(self) -> int:
        return len(self._state()[0])

    def __repr__(self) -> str:
        state = "recording" if self._open else "done" if self._done else "not started"
        n = sum(self.counts().values())
        return f"EventLog({state}, {n:,} events, {self.dropped:,} dropped)"


class ListRecorder:
    """A recorder in plain Python: what ``pymmu.reference`` records events with.

    ``record(kind, seq, pid, vaddr, pfn=-1, slot=-1, t_ns=0)`` appends one event
    while a block is open (and does nothing otherwise). A lock makes each
    event, snapshot and stop whole, so that a block closed from one thread while
    another thread's replay records keeps counts and rows that agree, and no
    event lands in the log after its block closed.

    Parameters
    ----------
    guard : callable, optional
        Called before ``start``, ``snapshot`` and ``stop``; raises to refuse
        them (the reference refuses them inside a policy hook, as the core does).
    """

    def __init__(self, guard=None):
        self.active = False
        self.rows = collections.deque()
        self.counts = [0] * len(KINDS)
        self.dropped = 0
        self._guard = guard
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self._guard is not None:
            self._guard()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]           # (a lock does not pickle; a copy gets its own)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def start(self, limit) -> None:
        self._check()
        with self._lock:
            if self.active:
                raise RuntimeError("this machine is already recording events: "
                                   "events() blocks cannot nest")
            self.active = True
            self.rows = collections.deque(maxlen=limit)
            self.counts = [0] * len(KINDS)
            self.dropped = 0

    def record(self, kind: str, seq: int, pid: int, vaddr: int, pfn: int = -1,
               slot: int = -1, t_ns: int = 0) -> None:
        if not self.active:
            return
        with self._lock:
            if not self.active:      # (closed meanwhile by another thread)
                return
            code = CODES[kind]
            self.counts[code] += 1
            if self.rows.maxlen is not None and len(self.rows) == self.rows.maxlen:
                self.dropped += 1
                if self.rows.maxlen == 0:
                    return
            self.rows.append((seq, t_ns, pid, vaddr, code, pfn, slot))

    def _snapshot(self):
        rows = np.zeros(len(self.rows), DTYPE)      # zeros: the padding too
        rows[:] = list(self.rows)
        return rows, list(self.counts), self.dropped

    def snapshot(self):
        self._check()
        with self._lock:
            return self._snapshot()

    def stop(self):
        self._check()
        with self._lock:
            out = self._snapshot()
            self.active = False
            self.rows = collections.deque()
            return out
