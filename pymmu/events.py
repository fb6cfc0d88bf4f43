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


class EventLog:
    """The events a machine records inside one ``with m.events() as log:`` block.

    Made by ``Machine.events(limit=None)``; a log belongs to its machine and
    records only inside its block. Nested or concurrent blocks on one machine
    raise ``RuntimeError``.

    Attributes
    ----------
    limit : int or None
        Keep only the latest ``limit`` events (None: all).
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
        self._recorder = recorder
        self._open = False
        self._done = None            # (array, counts, dropped) once the block ends

    def __enter__(self) -> "EventLog":
        if self._open or self._done is not None:
            raise RuntimeError("this event log has already recorded: make a new one "
                               "with m.events()")
        self._recorder.start(self.limit)
        self._open = True
        return self

    def __exit__(self, *exc) -> None:
        self._done = self._recorder.stop()
        self._open = False

    def _state(self):
        if self._done is not None:
            return self._done
        if self._open:
            return self._recorder.snapshot()
        return np.zeros(0, DTYPE), [0] * len(KINDS), 0

    @property
    def array(self) -> np.ndarray:
        """The kept events in order: a structured array of :data:`DTYPE` (a copy)."""
        return self._state()[0]

    @property
    def dropped(self) -> int:
        """How many events were recorded but not kept (beyond ``limit``)."""
        return self._state()[2]

    def counts(self) -> dict[str, int]:
        """``{kind: count}`` for every kind, zeros too, dropped events included."""
        return dict(zip(KINDS, (int(c) for c in self._state()[1])))

    def __len__(self) -> int:
        return len(self.array)

    def __repr__(self) -> str:
        state = "recording" if self._open else "done" if self._done else "not started"
        n = sum(self.counts().values())
        return f"EventLog({state}, {n:,} events, {self.dropped:,} dropped)"


class ListRecorder:
    """A recorder in plain Python: what ``pymmu.reference`` records events with.

    ``record(kind, seq, pid, vaddr, pfn=-1, slot=-1, t_ns=0)`` appends one event
    while a block is open (and does nothing otherwise).
    """

    def __init__(self):
        self.active = False
        self.rows = collections.deque()
        self.counts = [0] * len(KINDS)
        self.dropped = 0

    def start(self, limit) -> None:
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
        code = CODES[kind]
        self.counts[code] += 1
        if self.rows.maxlen is not None and len(self.rows) == self.rows.maxlen:
            self.dropped += 1
            if self.rows.maxlen == 0:
                return
        self.rows.append((seq, t_ns, pid, vaddr, code, pfn, slot))

    def snapshot(self):
        rows = np.zeros(len(self.rows), DTYPE)      # zeros: the padding too
        rows[:] = list(self.rows)
        return rows, list(self.counts), self.dropped

    def stop(self):
        out = self.snapshot()
        self.active = False
        self.rows = collections.deque()
        return out
