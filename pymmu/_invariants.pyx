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
        mm = self.tlb.e[i].mm
        if mm == 0:
            continue
        if mm not in mms:
            return f"TLB entry {i} belongs to a dead address space"
        if pt_walk(&self.pt, mm, self.tlb.e[i].vpn, False) != self.tlb.e[i].pte or not (
                self.tlb.e[i].pte[0] & PTE_PRESENT):
            return f"TLB entry {i} (vpn {self.tlb.e[i].vpn:#x}) disagrees with the page table"
    # reverse map: each used anon/file frame is found through its family
    for pfn in range(frames):
        if self.fm[pfn].state != F_FREE and self.fm[pfn].refcnt:
            if self._rmap(pfn, RMAP_COUNT, 0) != self.fm[pfn].refcnt:
                return (f"frame {pfn}: the reverse map finds "
                        f"{self._rmap(pfn, RMAP_COUNT, 0)} of its {self.fm[pfn].refcnt} PTEs")
    # the replacement policy's own state (its unit's invariants)
    return self.pol.check(self)


cdef str _check_free_ids(str what, list free, list unused):
    """The first problem of a free-id heap ``free`` that must hold each id of
    ``unused`` once and nothing else (a heap: the lowest is reused first)."""
    if len(set(free)) != len(free):
        twice = next(x for x in free if free.count(x) > 1)
        return f"{what} id {twice} is listed twice as free"
    if set(free) != set(unused):
        return f"the free {what} ids {sorted(free)} are not the unused ones {unused}"
    if any(free[i] < free[(i - 1) // 2] for i in range(1, len(free))):
        return f"the free {what} ids are not a heap"
    return None


def check_restored(Core self):
    """The first problem of a restored state (``Core._load``) as a string, or
    None: first whether every index it holds stays inside the machine and every
    linked structure closes, before anything follows them, then ``check``.

    ``check`` relies on what the first part establishes:
    frame links name slots or live objects, slots name frames, reverse-map words
    name address spaces, fork families, fifo/lru lists and free heaps are lists
    and trees (no cycle, no member twice), mapping tables name live objects and
    images within their bounds. A crafted snapshot fails here with its reason
    instead of reaching memory outside the machine or looping forever.
    """
    cdef int64_t pfn, mm, fam, steps, slot, i, n = self.mm_next, frames = self.frames
    cdef int64_t cur, nxt, before
    cdef frame_t *f
    cdef int64_t[:, ::1] rows
    # frames: a free one links only its heap (checked by check's heap walk, which
    # tests each link before following it); a used one names a slot or an object,
    # and its reverse-map word a family, an address space of this machine
    for pfn in range(frames):
        f = &self.fm[pfn]
        if f.state == F_FREE:
            if f.link != -1 or not (-1 <= f.heap.child < frames) \
                    or not (-1 <= f.heap.sibling < frames):
                return f"free frame {pfn} links outside the machine"
            continue
        if f.state == F_ANON and not -1 <= f.link < self.swap_slots:
            return f"frame {pfn} caches swap slot {f.link}, beyond the swap device"
        if f.state == F_FILE and f.link != -1:
            return f"file frame {pfn} has a link"
        if f.state == F_SHMEM and not (0 <= f.link < self.obj_next and self.obj_live[f.link]):
            return f"frame {pfn} belongs to no shared object"
        if not 0 <= rmap_family(&self.rm, f.rmap) < n:
            return f"frame {pfn}'s reverse map names no address space"
    f = &self.fm[frames]                       # the zero page's record: never used
    if f.state != F_FREE or f.link != -1 or f.rmap != <uint64_t>-1 or f.refcnt or f.pinned \
            or f.pool:
        return "the zero page's frame record is not its own"
    for slot in range(self.swap_slots):
        if self.sl[slot].count < 0 or not -1 <= self.sl[slot].cache < frames \
                or self.sl[slot].zero > 1:
            return f"swap slot {slot} is malformed"
    if not (-1 <= self.pool.root < frames and -1 <= self.dirty.root < frames
            and self.pool.count <= <uint64_t>frames and self.dirty.count <= <uint64_t>frames):
        return "a free set is out of range"
    if self.zero_refs < 0 or self.references < 0:
        return "a negative count"
    # fork families: each live space in exactly its family's list, no cycle, its
    # prev link the member before it (0 for the first)
    seen = np.zeros(n, np.int8)
    for mm in range(n):
        fam = self.rm.family[mm]
        if not (fam in (-1, -2) or 0 < fam < n) or not 0 <= self.rm.next[mm] < n \
                or not 0 <= self.rm.head[mm] < n:
            return f"address space {mm}'s family links are out of range"
    for fam in range(n):
        cur, steps, before = self.rm.head[fam], 0, 0
        while cur:
            if seen[cur] or self.rm.family[cur] != fam or steps >= n \
                    or self.rm.prev[cur] != before:
                return f"family {fam}'s list is broken at address space {cur}"
            seen[cur] = 1
            before = cur
            cur, steps = self.rm.next[cur], steps + 1
    for mm in range(n):
        if (self.rm.family[mm] >= 0) != bool(seen[mm]):
            return f"address space {mm} is missing from its family"
        # a destroyed id is offered for reuse (-2) exactly when no live family
        # is named after it: a new space under a live family's name would join
        # that family's list
        if mm and self.rm.family[mm] == -1 and self.rm.head[mm] == 0:
            return f"destroyed address space {mm} is neither free nor a family's name"
        if self.rm.family[mm] == -2 and self.rm.head[mm] != 0:
            return f"free address-space id {mm} names a live family"
        if self.rm.family[mm] < 0 and (self.rm.next[mm] or self.rm.prev[mm]):
            return f"destroyed address space {mm} is linked into a family"
        if self.rm.family[mm] < 0 and self.pt.root[mm] != NULL:
            return f"destroyed address space {mm} has a page table"
    # free ids, each once (mm_new or obj_new would hand a listed-twice id to two
    # owners) and exactly the ids not in use: address spaces, shared objects, images
    problem = _check_free_ids("address-space", self.mm_free,
                              [mm for mm in range(1, n) if self.rm.family[mm] == -2])
    if problem is None:
        problem = _check_free_ids("shared-object", self.obj_free,
                                  [i for i in range(self.obj_next) if not self.obj_live[i]])
    if problem is None:
        problem = _check_free_ids("image", self.img_free,
                                  [i for i, e in enumerate(self.images) if e is None])
    if problem is not None:
        return problem
    # the policy unit's own state
    problem = self.pol.check(self)
    if problem is not None:
        return problem
    # shared objects: vpns within the address space
    for i in range(self.obj_next):
        if self.obj_live[i] and not (
                0 <= self.obj_base[i]
                and self.obj_base[i] + self.omap[i].npages <= <int64_t>self.max_vpn):
            return f"shared object {i} lies outside the machine"
    # mapping tables: inside the address space, sorted, naming live objects and images
    for mm in range(n):
        if self.vma_count[mm] == 0:
            continue
        rows = self.vma_keep[mm]
        for i in range(rows.shape[0]):
            if not (0 <= rows[i, V_START] < rows[i, V_END] <= <int64_t>self.max_vpn) or (
                    i and rows[i, V_START] < rows[i - 1, V_END]) or not (
                    0 <= rows[i, V_PROT] <= PROT_READ | PROT_WRITE | PROT_EXEC):
                return f"address space {mm}: mapping {i} is malformed"
            if rows[i, V_KIND] == K_SHARED:
                if not (0 <= rows[i, V_OBJ] < self.obj_next and self.obj_live[rows[i, V_OBJ]]
                        and 0 <= rows[i, V_PGOFF] and rows[i, V_PGOFF] + rows[i, V_END]
                        - rows[i, V_START] <= self.omap[rows[i, V_OBJ]].npages):
                    return f"address space {mm}: mapping {i} names no shared object"
            elif rows[i, V_KIND] == K_FILE:
                if not (0 <= rows[i, V_OBJ] < len(self.images)
                        and self.images[rows[i, V_OBJ]] is not None):
                    return f"address space {mm}: mapping {i} names no image"
            elif rows[i, V_KIND] not in (K_ANON, K_STACK):
                return f"address space {mm}: mapping {i} has no kind"
    return check(self, [mm for mm in range(1, n) if self.rm.family[mm] >= 0])
