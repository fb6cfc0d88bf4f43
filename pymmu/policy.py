"""Replacement policies written in Python: ``Machine(frames, policy=MyPolicy())``.

Like libCacheSim's plug-in caches, but over real frames: the core calls a
:class:`Policy`'s hooks (with the GIL) where a built-in policy would do its
bookkeeping, and asks it for a victim when a frame must be reclaimed.

Order (DESIGN.md section 11): ``victim(view)`` is called only when no frame is
free, before anything changes; then the victim is evicted, ``on_free(victim)``
is called, the frame is allocated and ``on_map(pfn)`` is called once per
allocation of a frame to a page, then ``on_access(pfn)`` (only with
``wants_access = True``: one Python call per page reference, slow). ``on_free``
is also called when munmap or exit frees a frame.

``victim`` returning None raises ``OutOfMemory``; a pfn out of range or not
evictable raises ``ValueError``; an exception from ``victim`` propagates; all
three leave the machine unchanged. The answer is read as ``operator.index``
reads it (an int, a numpy integer, any ``__index__``; not a bool; a float or a
str is no pfn: ``ValueError``), and what its ``__index__`` raises propagates
like an exception from ``victim``, leaving the machine unchanged. An exception from a later hook propagates
once the operation completes, with the machine consistent. A hook that calls
any method of the machine gets ``RuntimeError``.

Three policies written this way ship as examples (read their source): :class:`Clock`
(second chance), :class:`Fifo` and :class:`Lru`. Each gives exactly the faults of
the built-in policy of the same rule:

>>> import pymmu
>>> trace = pymmu.traces.read_lackey(pymmu.traces.sample("ls"))[:50_000]
>>> faults = []
>>> for policy in (Clock(), "clock", Fifo(), "fifo"):
...     m = pymmu.Machine(16, swap_slots=300, zero_page=False, policy=policy)
...     r = m.replay(trace)
...     faults.append(r["minor_faults"] + r["major_faults"])
>>> faults[0] == faults[1], faults[2] == faults[3]
(True, True)
"""
from __future__ import annotations

import collections

__all__ = ["Policy", "Clock", "Fifo", "Lru"]


class Policy:
    """Base class of replacement policies written in Python.

    Subclass it and define :meth:`victim`; the other hooks are optional. One
    instance serves one machine.

    Attributes
    ----------
    wants_access : bool
        Call :meth:`on_access` on every page reference (False by default: it
        costs a Python call per reference).
    """

    wants_access = False

    def victim(self, view) -> int | None:
        """The frame to reclaim, called when no frame is free (required).

        Parameters
        ----------
        view : PolicyView
            ``view.frames`` (the number of user frames), ``view.evictable(pfn)``,
            ``view.accessed(pfn)``, ``view.clear_accessed(pfn)`` (test and
            clear the accessed bits of every PTE mapping ``pfn``, through the
            reverse map) and ``view.dirty(pfn)``.

        Returns
        -------
        int or None
            An evictable pfn (an int, a numpy integer or any object with
            ``__index__``, not a bool), or None when none should be
            (``OutOfMemory``).
        """
        raise NotImplementedError(f"{type(self).__name__} must define victim(view)")

    def on_map(self, pfn: int) -> None:
        """Frame ``pfn`` was just allocated to a page (its first mapping)."""

    def on_free(self, pfn: int) -> None:
        """Frame ``pfn`` was freed: evicted, or released by munmap or exit."""

    def on_access(self, pfn: int) -> None:
        """Page reference to frame ``pfn`` (only when ``wants_access`` is True)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Clock(Policy):
    """Second chance over frames in ascending pfn order, circular: the built-in
    "clock" (DESIGN.md section 6) in a dozen lines."""

    def __init__(self):
        self.hand = 0

    def victim(self, view):
        for _ in range(2 * view.frames):
            pfn, self.hand = self.hand, (self.hand + 1) % view.frames
            if view.evictable(pfn) and not view.clear_accessed(pfn):
                return pfn
        return None


class Fifo(Policy):
    """The frames in the order their pages were loaded; the oldest evictable one
    goes: the built-in "fifo"."""

    def __init__(self):
        self.order = collections.OrderedDict()     # pfn -> None, oldest first

    def on_map(self, pfn):
        self.order[pfn] = None

    def on_free(self, pfn):
        self.order.pop(pfn, None)

    def victim(self, view):
        return next((pfn for pfn in self.order if view.evictable(pfn)), None)


class Lru(Fifo):
    """Exact LRU: every reference moves its frame to the back (``wants_access``:
    a Python call per reference, slow); the built-in "lru"."""

    wants_access = True

    def on_access(self, pfn):
        self.order.move_to_end(pfn)
