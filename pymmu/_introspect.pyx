"""Cold code of the core: introspection (what a page translates to, the PTE,
refcounts, the frame table's columns, clearing accessed bits) and the memory
budget, as functions of a ``Core`` read through ``pymmu/_core.pxd``, beside
``_invariants.check``. Nothing here is on an access's path."""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, uintptr_t

cimport numpy as cnp
import numpy as np

from pymmu._core cimport *
from pymmu._pte cimport *

cnp.import_array()


def translate(Core self, int64_t mm, uint64_t addr):
    cdef pte_t *p
    self._enter()
    if addr >> self.page_shift >= self.max_vpn or not self._live(mm):
        return None
    p = pt_walk(&self.pt, mm, addr >> self.page_shift, False)
    if p == NULL or not (p[0] & PTE_PRESENT):
        return None
    return (pte_pfn(p[0]) << self.page_shift) | (addr & <uint64_t>(self.page_size - 1))


def pte(Core self, int64_t mm, uint64_t addr):
    cdef pte_t *p
    self._enter()
    if addr >> self.page_shift >= self.max_vpn or not self._live(mm):
        return 0
    p = pt_walk(&self.pt, mm, addr >> self.page_shift, False)
    return 0 if p == NULL else p[0]


def refcounts(Core self):
    """The refcount of every frame and (last) the zero page, as a new int64 array."""
    cdef int64_t[::1] out = np.empty(self.frames + 1, np.int64)
    cdef int64_t pfn
    self._enter()
    for pfn in range(self.frames):
        out[pfn] = self.fm[pfn].refcnt
    out[self.frames] = self.zero_refs
    return np.asarray(out)


def slot_counts(Core self):
    """The reference count of every swap slot, as a new int64 array."""
    cdef int64_t[::1] out = np.empty(self.swap_slots, np.int64)
    cdef int64_t slot
    self._enter()
    for slot in range(self.swap_slots):
        out[slot] = self.sl[slot].count
    return np.asarray(out)


def frame_info(Core self):
    """Per user frame, as new int64 arrays ``(state, kind, swap_slot)``.

    ``state``: 0 free and pre-zeroed, 1 free and dirty, 2 used; ``kind``:
    the frame's F_* state (F_FREE, F_ANON, F_FILE, F_SHMEM); ``swap_slot``:
    the slot an anonymous frame caches, or -1. (Refcounts: ``refcounts``;
    mappers and A/D bits come from the page tables.)
    """
    cdef int64_t[::1] state = np.empty(self.frames, np.int64)
    cdef int64_t[::1] kind = np.empty(self.frames, np.int64)
    cdef int64_t[::1] slot = np.empty(self.frames, np.int64)
    cdef int64_t pfn
    cdef frame_t *f
    self._enter()
    for pfn in range(self.frames):
        f = &self.fm[pfn]
        kind[pfn] = f.state
        state[pfn] = 2 if f.state != F_FREE else (0 if f.pool else 1)
        slot[pfn] = f.link if f.state == F_ANON else -1
    return np.asarray(state), np.asarray(kind), np.asarray(slot)


def clear_accessed(Core self, int64_t mm):
    """Clear the accessed bit of every present PTE of ``mm`` and drop its
    TLB entries (a real kernel flushes them too); returns how many were set."""
    cdef int64_t n = 0
    self._enter()
    if not self._live(mm):
        raise ValueError(f"no live address space {mm}")
    if self.pt.root[mm] != NULL:
        n = clear_accessed_node(self, self.pt.root[mm], 0)
    tlb_flush(&self.tlb, mm)
    return n


cdef int64_t clear_accessed_node(Core self, uint64_t *node, int level) noexcept:
    cdef int64_t i, n = 0, count = (<int64_t>1) << self.bits
    for i in range(count):
        if not node[i]:
            continue
        if level < self.levels - 1:
            n += clear_accessed_node(self, <uint64_t *><uintptr_t>node[i], level + 1)
        elif node[i] & PTE_PRESENT and node[i] & PTE_ACCESSED:
            node[i] &= ~PTE_ACCESSED
            n += 1
    return n


def memory(Core self):
    """What the core keeps beside page data, in bytes (DESIGN.md section 9's
    budget), from the sizes of its structures.

    Returns a dict: ``frame`` per frame in all, and its parts ``frame_record``
    (pymmu/include/frame.h; the free sets live inside the free frames' records) and
    ``policy`` (fifo/lru list links); ``slot`` per swap slot; ``pte`` per
    mapped page; ``nodes``, every page-table node now allocated. opt keeps
    state only while a replay runs: ``replay_frame`` per frame (its key) and
    ``replay_reference`` per page reference of the trace (the frame whose next
    use it is, and a bit in the set of next uses).
    """
    cdef int64_t slot_set = 0, level
    policy, replay_frame, replay_reference = self.pol.nbytes(self)
    for level in range(self.free_slots.levels):
        slot_set += self.free_slots.nwords[level] * sizeof(uint64_t)
    return {"frame": sizeof(frame_t) + policy, "frame_record": sizeof(frame_t),
            "policy": policy,
            "slot": sizeof(slot_t) + <double>slot_set / max(self.swap_slots, 1),
            "pte": sizeof(pte_t), "nodes": self.pt.nodes * (sizeof(uint64_t) << self.bits),
            "replay_frame": replay_frame, "replay_reference": replay_reference}
