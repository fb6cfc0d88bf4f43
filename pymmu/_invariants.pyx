"""The core's invariants: ``check`` walks every structure of a ``Core`` and names
the first broken invariant. Cold code, in a unit of its own: it reads the core's
C state through the contract in ``_core.pxd`` (``Machine.check`` calls it)."""
from libc.stdint cimport int64_t, uint64_t

cimport numpy as cnp
import numpy as np

from pymmu._introspect import refcounts, slot_counts

from pymmu._core cimport *
from pymmu._pte cimport *


cdef str _check_free_heap(Core self, freeheap_t *heap, bint pool, dict members):
    """Walk a free heap: heap order, flags, no cycles, its count. Records each
    member in ``members`` (pfn -> "pool" or "dirty")."""
    cdef int64_t pfn, child
    name = "pool" if pool else "dirty"
    todo = [] if heap.root < 0 else [heap.root]
    if heap.root >= 0 and self.fm[heap.root].heap.sibling != -1:
        return "its root has a sibling"
    while todo:
        pfn = todo.pop()
        if not 0 <= pfn < self.frames:
            return f"a link to frame {pfn}, beyond the machine"
        if pfn in members:
            return f"frame {pfn} is reached twice (also in {members[pfn]})"
        members[pfn] = name
        if self.fm[pfn].state != F_FREE or self.fm[pfn].pool != pool:
            return f"frame {pfn} is in it but not a free {name} frame"
        child = self.fm[pfn].heap.child
        while child >= 0:
            if child <= pfn:
                return f"frame {child} is below its parent {pfn}: heap order broken"
            todo.append(child)
            child = self.fm[child].heap.sibling if child < self.frames else -1
    if sum(1 for v in members.values() if v == name) != heap.count:
        return f"its count {heap.count} disagrees with its members"
    return None



cdef bint _same_page(Core self, int64_t pfn, int64_t slot):
    """Whether frame ``pfn`` holds what swap slot ``slot`` holds."""
    frame = np.asarray(self.mem[pfn])
    if self.sl[slot].zero:
        return not frame.any()
    return bool(np.array_equal(frame, np.asarray(self.swapmem[slot])))


def check(Core self, list mms):
    """Return the first broken invariant as a string, or None.

    ``mms`` lists the live address spaces.
    """
    cdef int64_t i, pfn, mm, slot
    cdef int64_t frames = self.frames
    self._enter()
    expect = np.zeros(frames + 1, np.int64)
    sexpect = np.zeros(self.swap_slots, np.int64)
    mem = self.mem_array
    for mm in mms:
        ptes = self.ptes(mm)[1]
        present = (ptes & np.uint64(PTE_PRESENT)) != 0
        pfns = (ptes >> np.uint64(PTE_PFN_SHIFT)).astype(np.int64)
        if np.any(pfns[present] > frames):
            return f"mm {mm}: a PTE maps a frame beyond the machine"
        np.add.at(expect, pfns[present], 1)
        swp = ~present
        if np.any((ptes[swp] & np.uint64(PTE_SWAP)) == 0):
            return f"mm {mm}: a non-present PTE that is not a swap entry"
        if np.any(pfns[swp] >= self.swap_slots):
            return f"mm {mm}: a swap entry beyond the swap device"
        np.add.at(sexpect, pfns[swp], 1)
        zero = present & (pfns == frames)
        if np.any((ptes[zero] & np.uint64(PTE_ZERO | PTE_WRITABLE)) != np.uint64(PTE_ZERO)):
            return f"mm {mm}: a zero-page mapping is writable or lacks the ZERO bit"
        for pfn in pfns[present & ~zero].tolist():
            if self.fm[pfn].state == F_FREE:
                return f"mm {mm}: a PTE maps free frame {pfn}"
    for obj in self.obj_ids():
        for v in self.obj_items(obj)[1].tolist():
            if v <= -2:
                sexpect[-v - 2] += 1
            elif v >= 0 and (self.fm[v].state != F_SHMEM or self.fm[v].link != obj):
                return f"shared object {obj}: page frame {v} not owned by it"
    refs, counts = refcounts(self), slot_counts(self)
    if not np.array_equal(expect, refs):
        bad = int(np.nonzero(expect != refs)[0][0])
        return f"refcount of frame {bad} is {refs[bad]} but {expect[bad]} PTEs map it"
    if not np.array_equal(sexpect, counts):
        bad = int(np.nonzero(sexpect != counts)[0][0])
        return f"swap slot {bad} count is {counts[bad]} but {sexpect[bad]} refer to it"
    members = {}
    broken = _check_free_heap(self, &self.pool, True, members)
    if broken:
        return f"the pool free set: {broken}"
    broken = _check_free_heap(self, &self.dirty, False, members)
    if broken:
        return f"the dirty free set: {broken}"
    for pfn in range(frames):
        in_pool = members.get(pfn) == "pool"
        in_dirty = members.get(pfn) == "dirty"
        if in_pool and mem[pfn].any():
            return f"zero-pool frame {pfn} holds nonzero bytes"
        is_free = self.fm[pfn].state == F_FREE
        if is_free != (in_pool or in_dirty):
            return f"frame {pfn}: state {'free' if is_free else 'used'} disagrees with the free sets"
        if not is_free and self.fm[pfn].state != F_SHMEM and self.fm[pfn].refcnt == 0:
            return f"frame {pfn} is in use but nothing maps it"
        if self.fm[pfn].pinned:
            return f"frame {pfn} still pinned after an access"
        if self.fm[pfn].czero and mem[pfn].any():
            return f"frame {pfn} is flagged all-zero but holds nonzero bytes"
        slot = self.fm[pfn].link if self.fm[pfn].state == F_ANON else -1
        if slot >= 0 and self.sl[slot].cache != pfn:
            return f"frame {pfn}: swap cache link to slot {slot} is broken"
        if slot >= 0 and not self._rmap_bits(pfn, PTE_DIRTY) and not _same_page(self, pfn, slot):
            # eviction would drop it unwritten (rule 6): its slot must hold it
            return f"frame {pfn}: clean in the swap cache but differs from slot {slot}"
    if mem[frames].any():
        return "the zero page holds nonzero bytes"
    counted = 0
    for slot in range(self.swap_slots):
        counted += lowset_has(&self.free_slots, slot)
        if (self.sl[slot].count == 0 and self.sl[slot].cache < 0) \
                != lowset_has(&self.free_slots, slot):
            return (f"swap slot {slot}: count {self.sl[slot].count} and cache "
                    f"{self.sl[slot].cache} disagree with the free list")
        pfn = self.sl[slot].cache
        if pfn >= 0 and (self.fm[pfn].state != F_ANON or self.fm[pfn].link != slot):
            return f"swap slot {slot}: cache link broken"
    if counted != self.free_slots.count:
        return "the free-slot count disagrees with its members"
    for i in range(self.tlb.n):
        mm = self.tlb.mm[i]
        if mm == 0:
            continue
        if mm not in mms:
            return f"TLB entry {i} belongs to a dead address space"
        if pt_walk(&self.pt, mm, self.tlb.vpn[i], False) != self.tlb.pte[i] or not (
                self.tlb.pte[i][0] & PTE_PRESENT):
            return f"TLB entry {i} (vpn {self.tlb.vpn[i]:#x}) disagrees with the page table"
    # reverse map: each used anon/file frame is found through its family
    for pfn in range(frames):
        if self.fm[pfn].state != F_FREE and self.fm[pfn].refcnt:
            if self._rmap(pfn, RMAP_COUNT, 0) != self.fm[pfn].refcnt:
                return (f"frame {pfn}: the reverse map finds "
                        f"{self._rmap(pfn, RMAP_COUNT, 0)} of its {self.fm[pfn].refcnt} PTEs")
    return None
