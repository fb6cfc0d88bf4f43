"""Program images for ``Process.exec``: segments, an entry point, a stack size.

An image is machine-independent. ``Image.layout(page_size)`` turns it into what an
address space needs: runs of pages with one protection, and the content of every
page that holds file bytes (pages past the file bytes, the bss, are demand-zero).
Nothing is read into frames at exec time; the fault handler copies a page from the
layout on first touch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from pymmu._args import as_buffer, nonneg_int, parse_prot
from pymmu.tables import PROT_EXEC, PROT_READ, PROT_WRITE

__all__ = ["Segment", "Image", "Layout", "DEFAULT_STACK_SIZE", "PIE_BASE"]

DEFAULT_STACK_SIZE = 8 << 20
PIE_BASE = 0x555555554000   # where Linux loads a PIE without randomisation


class Segment:
    """One loadable segment: ``memsz`` bytes at ``vaddr``, the first ``len(data)``
    of them from the image (the rest zero, like an ELF bss).

    Parameters
    ----------
    vaddr : int
        Virtual address of the first byte; need not be page-aligned.
    prot : str or int
        Protection, as for ``Process.mmap`` (``"r-x"``, ``"rw"``, PROT_ flags).
    data : bytes-like, optional
        The file bytes of the segment.
    memsz : int, optional
        Size in memory, at least ``len(data)``; defaults to ``len(data)``.
    """

    __slots__ = ("vaddr", "prot", "data", "memsz")

    def __init__(self, vaddr, prot, data=b"", memsz=None):
        self.vaddr = nonneg_int(vaddr, "Segment vaddr")
        self.prot = parse_prot(prot)
        self.data = bytes(as_buffer(data))
        self.memsz = len(self.data) if memsz is None else nonneg_int(memsz, "Segment memsz")
        if self.memsz < len(self.data):
            raise ValueError(f"Segment memsz ({self.memsz}) is smaller than its data "
                             f"({len(self.data)} bytes)")
        if self.memsz == 0:
            raise ValueError(f"Segment at {self.vaddr:#x} is empty (no data, memsz 0)")
        if self.vaddr + self.memsz > 1 << 64:
            # no address space is larger (and page numbers are 64-bit in a Layout)
            raise ValueError(f"Segment at {self.vaddr:#x} of {self.memsz:#x} bytes ends "
                             "beyond 2**64, past any address space")

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    def __repr__(self) -> str:
        from pymmu._args import prot_str
        return (f"Segment({self.vaddr:#x}, {prot_str(self.prot)!r}, "
                f"data=<{len(self.data)} bytes>, memsz={self.memsz:#x})")


@dataclass
class Layout:
    """An image laid out in pages of one size (see ``Image.layout``).

    Attributes
    ----------
    runs : list of (start_vpn, end_vpn, prot)
        Maximal runs of consecutive segment pages with one protection.
    file_vpns : numpy.ndarray of uint64
        Sorted page numbers that hold file bytes.
    file_pages : numpy.ndarray of uint8, shape (len(file_vpns), page_size)
        Their content (file bytes, zero elsewhere). Read-only.
    """

    runs: list
    file_vpns: np.ndarray
    file_pages: np.ndarray

    def page(self, vpn: int):
        """The content of page ``vpn`` if it holds file bytes, else None."""
        i = int(np.searchsorted(self.file_vpns, vpn))
        if i < len(self.file_vpns) and self.file_vpns[i] == vpn:
            return self.file_pages[i]
        return None


@dataclass
class Image:
    """A program image: what ``exec`` maps.

    Parameters
    ----------
    segments : list of Segment
        Loadable segments; their byte ranges must not overlap.
    entry : int
        Entry point virtual address.
    stack_size : int
        Bytes of stack mapped rw just below the top of the address space
        (rounded up to pages; 0 for none). Default 8 MiB.
    name : str
        Shown in ``maps()``.
    """

    segments: list = field(default_factory=list)
    entry: int = 0
    stack_size: int = DEFAULT_STACK_SIZE
    name: str = ""

    def __post_init__(self):
        segs = list(self.segments)
        for s in segs:
            if not isinstance(s, Segment):
                raise TypeError(f"Image segments must be Segment objects, not {type(s).__name__}")
        segs.sort(key=lambda s: s.vaddr)
        for a, b in zip(segs, segs[1:]):
            if b.vaddr < a.end:
                raise ValueError(f"segments overlap: {a!r} and {b!r}")
        self.segments = segs
        self.entry = nonneg_int(self.entry, "entry")
        self.stack_size = nonneg_int(self.stack_size, "stack_size")
        if not isinstance(self.name, str):
            raise TypeError("Image name must be a str")
        self._layouts = {}

    def layout(self, page_size: int) -> Layout:
        """Lay the image out in pages of ``page_size`` bytes (cached per size).

        Costs time and memory per segment and per page of file bytes, never per
        page of bss: a segment of terabytes of zeros is one run.
        """
        cached = self._layouts.get(page_size)
        if cached is not None:
            return cached
        shift = page_size.bit_length() - 1
        # Segments do not overlap in bytes but may share pages, which then get
        # the union of their protections. Sweep the segments' page ranges:
        # between two consecutive boundaries, the pages are covered by the same
        # segments, so they form (part of) one run.
        edges: dict[int, list] = {}
        for s in self.segments:
            lo, hi = s.vaddr >> shift, ((s.end - 1) >> shift) + 1
            edges.setdefault(lo, []).append((1, s.prot))
            edges.setdefault(hi, []).append((-1, s.prot))
        covering = 0
        bits = {PROT_READ: 0, PROT_WRITE: 0, PROT_EXEC: 0}   # segments granting each
        runs: list[list] = []
        bounds = sorted(edges)
        for vpn, nxt in zip(bounds, bounds[1:] + [None]):
            for step, prot in edges[vpn]:
                covering += step
                for bit in bits:
                    if prot & bit:
                        bits[bit] += step
            if not covering or nxt is None:
                continue
            prot = sum(bit for bit, n in bits.items() if n)
            if runs and runs[-1][1] == vpn and runs[-1][2] == prot:
                runs[-1][1] = nxt
            else:
                runs.append([vpn, nxt, prot])
        contents: dict[int, np.ndarray] = {}
        for s in self.segments:
            if s.data:
                lo, hi = s.vaddr, s.vaddr + len(s.data)
                for vpn in range(lo >> shift, ((hi - 1) >> shift) + 1):
                    page = contents.get(vpn)
                    if page is None:
                        page = contents[vpn] = np.zeros(page_size, np.uint8)
                    a, b = max(lo, vpn << shift), min(hi, (vpn + 1) << shift)
                    page[a - (vpn << shift):b - (vpn << shift)] = np.frombuffer(
                        s.data, np.uint8, b - a, a - lo)
        vpns = np.array(sorted(contents), dtype=np.uint64)
        pages = np.zeros((len(vpns), page_size), np.uint8)
        for i, vpn in enumerate(vpns.tolist()):
            pages[i] = contents[vpn]
        pages.flags.writeable = False
        out = Layout([tuple(r) for r in runs], vpns, pages)
        self._layouts[page_size] = out
        return out

    @classmethod
    def from_elf(cls, path, base=None, *, stack_size=DEFAULT_STACK_SIZE) -> "Image":
        """Load an ELF executable's PT_LOAD segments (needs pyelftools).

        Parameters
        ----------
        path : str or os.PathLike
            The ELF file.
        base : int, optional
            Load address of a position-independent (ET_DYN) file; default
            0x555555554000, where Linux puts it without randomisation. Ignored
            for ET_EXEC, which loads at its own addresses.
        """
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        path = os.fspath(path)
        with open(path, "rb") as f:
            blob = f.read()
        import io
        try:
            elf = ELFFile(io.BytesIO(blob))
            etype = elf.header["e_type"]
            if etype not in ("ET_EXEC", "ET_DYN"):
                raise ValueError(f"{path}: not an executable ELF file ({etype})")
            bias = 0
            if etype == "ET_DYN":
                bias = PIE_BASE if base is None else nonneg_int(base, "base")
            segs = []
            for ph in elf.iter_segments():
                if ph["p_type"] != "PT_LOAD" or ph["p_memsz"] == 0:
                    continue
                flags = ph["p_flags"]       # (ELF's own bits: PF_R 4, PF_W 2, PF_X 1)
                prot = ((PROT_READ if flags & 4 else 0) | (PROT_WRITE if flags & 2 else 0)
                        | (PROT_EXEC if flags & 1 else 0))
                off, filesz = ph["p_offset"], ph["p_filesz"]
                segs.append(Segment(ph["p_vaddr"] + bias, prot, blob[off:off + filesz],
                                    ph["p_memsz"]))
            entry = elf.header["e_entry"] + bias
        except ELFError as e:
            raise ValueError(f"{path}: not a valid ELF file ({e})") from None
        if not segs:
            raise ValueError(f"{path}: no PT_LOAD segment")
        return cls(segs, entry=entry, stack_size=stack_size, name=os.path.basename(path))
