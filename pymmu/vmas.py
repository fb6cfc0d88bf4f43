"""Virtual memory areas: the sorted, non-overlapping mappings of one address space.

Both the Cython-backed ``Machine`` and the pure-Python ``reference.Machine`` keep
their mappings in an ``AddressMap``; what differs between them is the page table
and the frames underneath. All positions here are virtual page numbers (vpn).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from pymmu._args import prot_str
from pymmu.tables import PROT_READ, PROT_WRITE, VMA_KINDS

__all__ = ["Vma", "Mapping", "AddressMap", "KINDS"]

# Kind codes, shared with the core: private anonymous, shared anonymous, exec image
# (file-backed), and the stack (private anonymous, named).
KINDS = {name: code for code, name in enumerate(VMA_KINDS)}


@dataclass(frozen=True)
class Vma:
    """One mapping, in pages: ``[start, end)``.

    ``obj`` is the backing: a shared memory object id for kind "shared", an
    image handle for kind "file", None otherwise. ``pgoff`` is the page offset of
    ``start`` inside a shared object.
    """

    start: int
    end: int
    prot: int
    kind: str
    obj: object = None
    pgoff: int = 0

    def cut(self, start: int, end: int) -> "Vma":
        """The part of this mapping inside ``[start, end)``."""
        start, end = max(start, self.start), min(end, self.end)
        return replace(self, start=start, end=end, pgoff=self.pgoff + start - self.start)

    @property
    def shared(self) -> bool:
        return self.kind == "shared"


@dataclass(frozen=True)
class Mapping:
    """One line of ``Process.maps()``, in bytes, like ``/proc/PID/maps``.

    >>> str(Mapping(0x10000, 0x12000, 3, False, "anon", 0, ""))
    '000000010000-000000012000 rw-p 00000000 00:00 0 '
    """

    start: int
    end: int
    prot: int
    shared: bool
    kind: str
    offset: int
    name: str

    @property
    def perms(self) -> str:
        """``"rw-p"``-style permissions (p private, s shared)."""
        return prot_str(self.prot) + ("s" if self.shared else "p")

    @property
    def size(self) -> int:
        return self.end - self.start

    def __str__(self) -> str:
        return (f"{self.start:012x}-{self.end:012x} {self.perms} {self.offset:08x} "
                f"00:00 0 {self.name}")


class AddressMap:
    """The mappings of one address space, sorted by start page."""

    def __init__(self, vmas=()):
        self._vmas: list[Vma] = sorted(vmas, key=lambda v: v.start)
        self._starts = [v.start for v in self._vmas]

    def __iter__(self):
        return iter(self._vmas)

    def __len__(self):
        return len(self._vmas)

    def copy(self) -> "AddressMap":
        """An independent copy (Vma objects are immutable, so they are shared)."""
        new = AddressMap.__new__(AddressMap)
        new._vmas = list(self._vmas)
        new._starts = list(self._starts)
        return new

    def find(self, vpn: int) -> Vma | None:
        """The mapping that contains page ``vpn``, or None."""
        i = bisect.bisect_right(self._starts, vpn) - 1
        if i >= 0 and self._vmas[i].end > vpn:
            return self._vmas[i]
        return None

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """Mappings that intersect ``[start, end)``, in order."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        for v in self._vmas[i:]:
            if v.start >= end:
                break
            if v.end > start:
                out.append(v)
        return out

    def is_free(self, start: int, end: int) -> bool:
        return not self.overlapping(start, end)

    def covers(self, start: int, end: int) -> bool:
        """True if every page of ``[start, end)`` is mapped."""
        pos = start
        for v in self.overlapping(start, end):
            if v.start > pos:
                return False
            pos = v.end
        return pos >= end

    def find_free(self, npages: int, lo: int, hi: int) -> int | None:
        """Lowest start >= ``lo`` of ``npages`` free pages ending at or below ``hi``."""
        pos = lo
        for v in self._vmas:
            if v.end <= pos:
                continue
            if v.start - pos >= npages:
                break
            pos = max(pos, v.end)
        return pos if pos + npages <= hi else None

    def insert(self, vma: Vma) -> None:
        """Add a mapping; the range must be free."""
        assert self.is_free(vma.start, vma.end), "insert over a mapped range"
        i = bisect.bisect_left(self._starts, vma.start)
        self._vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def remove(self, start: int, end: int) -> list[Vma]:
        """Unmap ``[start, end)``, splitting mappings; returns the removed pieces."""
        hit = self.overlapping(start, end)
        removed = []
        for v in hit:
            self._drop(v)
            if v.start < start:
                self._put(v.cut(v.start, start))
            if v.end > end:
                self._put(v.cut(end, v.end))
            removed.append(v.cut(start, end))
        return removed

    def protect(self, start: int, end: int, prot: int) -> list[Vma]:
        """Set ``prot`` on ``[start, end)`` (which must be mapped); returns the new pieces."""
        pieces = self.remove(start, end)
        new = [replace(p, prot=prot) for p in pieces]
        for p in new:
            self._put(p)
        return new

    def _drop(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        del self._vmas[i]
        del self._starts[i]

    def _put(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def check(self, max_vpn: int) -> str | None:
        """Name the first broken rule (sorted, disjoint, non-empty, in range), or None."""
        prev_end = 0
        for v in self._vmas:
            if v.start >= v.end:
                return f"empty mapping at page {v.start:#x}"
            if v.start < prev_end:
                return f"mappings overlap at page {v.start:#x}"
            if v.end > max_vpn:
                return f"mapping beyond the address space at page {v.start:#x}"
            if v.prot & PROT_WRITE and not v.prot & PROT_READ:
                return f"writable mapping without read at page {v.start:#x}"
            prev_end = v.end
        if self._starts != [v.start for v in self._vmas]:
            return "mapping index out of sync"
        return None


def mapping_of(vma: Vma, page_shift: int, name: str = "") -> Mapping:
    """The byte-level ``Mapping`` for a ``Vma``."""
    return Mapping(
        start=vma.start << page_shift,
        end=vma.end << page_shift,
        prot=vma.prot,
        shared=vma.shared,
        kind=vma.kind,
        offset=vma.pgoff << page_shift if vma.kind == "shared" else 0,
        name=name,
    )


