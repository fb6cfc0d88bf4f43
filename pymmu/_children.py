"""The children of one process, shared by ``pymmu.Machine`` and the reference model.

``wait()`` takes the exited child with the lowest pid and ``wait(pid)`` a given
one; with thousands of children neither may scan them all (issue 11: 20,000
zombies reaped one by one took 20 s). Children are kept by pid in a dict, and
the pids of those that exited in a heap, so each call costs O(log n).
"""
from __future__ import annotations

import heapq

__all__ = ["Children"]


class Children:
    """The children of a process by pid, and which of them exited.

    A child is added when it is made (``add``), noted when it exits
    (``exited``) and removed when it is reaped (``reap``). The heap of exited
    pids is cleaned lazily: ``reap(pid)`` leaves the pid in the heap, where
    ``lowest_exited`` skips it (a pid exits once, so a heap entry whose pid is
    no longer a child is stale), and the heap is rebuilt when stale entries
    outnumber live ones, so that a caller who only ever waits by pid does not
    make it grow.

    Examples
    --------
    >>> from types import SimpleNamespace as P
    >>> kids = Children()
    >>> for pid in (5, 3, 9):
    ...     kids.add(P(pid=pid))
    >>> kids.exited(9); kids.exited(5)
    >>> kids.lowest_exited()
    5
    >>> kids.reap(5).pid, kids.lowest_exited(), len(kids)
    (5, 9, 2)
    """

    __slots__ = ("_by_pid", "_heap", "_exited")

    def __init__(self):
        self._by_pid: dict = {}
        self._heap: list[int] = []
        self._exited = 0          # children that exited and are not yet reaped

    def __len__(self) -> int:
        return len(self._by_pid)

    def __iter__(self):
        return iter(list(self._by_pid.values()))

    def add(self, child) -> None:
        """A new child."""
        self._by_pid[child.pid] = child

    def get(self, pid: int):
        """The child with this pid, or None."""
        return self._by_pid.get(pid)

    def exited(self, pid: int) -> None:
        """Child ``pid`` exited: ``lowest_exited`` may now return it."""
        heapq.heappush(self._heap, pid)
        self._exited += 1

    def lowest_exited(self) -> int | None:
        """The pid of the exited child with the lowest pid, or None."""
        heap = self._heap
        while heap and heap[0] not in self._by_pid:
            heapq.heappop(heap)               # reaped by pid earlier: stale
        return heap[0] if heap else None

    def reap(self, pid: int):
        """Remove exited child ``pid`` (it must be one) and return it."""
        child = self._by_pid.pop(pid)
        self._exited -= 1
        if len(self._heap) > 2 * self._exited + 32:
            self._heap = [p for p in self._heap if p in self._by_pid]
            heapq.heapify(self._heap)
        return child

    def clear(self) -> None:
        """Forget every child (the parent exited: they are orphans now)."""
        self._by_pid.clear()
        self._heap.clear()
        self._exited = 0
