"""The typed core of pymmu: frames, page tables, the TLB, swap, reclaim, faults.

One ``Core`` is one physical machine. It knows address spaces only by number
(``mm``) and mappings only as the tables ``machine.py`` pushes with
``set_vmas``; processes, pids and argument checking live in ``machine.py``.

Where to read what:

* ``_touch`` / ``_fault``: what one access to one page does (DESIGN.md section 4,
  docs/semantics.md section 5); ``_fault`` dispatches to one handler per fault
  kind, named as Linux's: ``_do_wp_page`` says what a write fault does.
* ``_alloc_frame`` / ``_reclaim`` / ``_evict``: free sets and memory pressure; the
  replacement policies behind one interface (``policy_ops_t``: one unit each in
  pymmu/policies/, the Core holding its operations ``pol`` and state ``pstate``).
* ``mm_fork`` / ``mm_destroy`` / ``unmap`` / ``protect``: address-space operations.
* The C units the core holds: the page tables and page-walk cache
  (include/pgtable.h), the reverse map (include/rmap.h), the TLB (include/tlb.h),
  the event log (include/events.h), free heaps and frame records
  (include/frame.h), lowsets, shared objects' page maps (include/objmap.h).
* ``check``: every invariant, for tests (pymmu/_invariants.pyx); snapshots
  (pickle, deepcopy) in pymmu/_snapshot.pyx.

docs/architecture.md maps every section. The fields and C methods are declared in
``_core.pxd``, which other Cython modules (``pymmu.core``, ``_invariants``) cimport.

Each frame has one 16-byte record (``frame_t``, pymmu/include/frame.h): refcount, state
and flags, a swap-cache or shared-object link, and the reverse map, or, while
the frame is free, its links in a free heap. Swap slots have ``slot_t`` records.
Page-table nodes live outside the user frames (include/pgtable.h).
Every routine returns a ``Status``; ``_raise_status`` is the one place that turns
a status into an exception.
"""
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

cimport cython
import heapq

import numpy as np
cimport numpy as cnp

from pymmu._pte cimport *
from pymmu.counting cimport *
from pymmu.errors import (
    OutOfMemory, ProcessStateError, ProtectionFault, SegmentationFault, TraceError,
)

cnp.import_array()

from pymmu.tables import ACCESSES as _ACCESS_NAMES

# Why a call is refused while another thread holds the machine (include/hold.h).
_BUSY = "this Machine is busy in another thread (a replay, a run or another operation)"

# Trace kind codes to access kinds, the prot bit an access needs and the counter it
# adds to: kind_access, access_need and access_stat in _core.pxd (shared with
# pymmu/_run.pyx).


cdef inline uint64_t splitmix64(uint64_t *state) noexcept nogil:
    """The next number of a splitmix64 generator (the random policy's)."""
    cdef uint64_t z
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline pte_t prot_bits(int64_t prot) noexcept nogil:
    """PTE permission bits a present page of a mapping with ``prot`` carries."""
    cdef pte_t b = PTE_PRESENT | PTE_USER
    if prot & PROT_READ:
        b |= PTE_READABLE
    if prot & PROT_EXEC:
        b |= PTE_EXECUTABLE
    return b


cdef inline int _alloc_status(int64_t failed) noexcept nogil:
    """The status of a failed victim choice or ``Core._alloc_frame`` (its
    VICTIM_* result)."""
    return ST_OOM if failed == VICTIM_NONE else ST_OPT if failed == VICTIM_BLIND else ST_HOOK


# Tests only (tests/test_hardening_core.py): when positive, the page-table node
# allocation this many from now fails, as if the C heap ran out (0: never).
def _fail_node_allocation(int64_t n):
    """Testing: make the ``n``-th page-table node allocation from now fail
    (0: none), to check that every path that allocates one rolls back."""
    global pt_fail_after
    if n < 0:
        raise ValueError("n must be at least 0")
    pt_fail_after = n


cdef void *realloc_or_raise(void *p, size_t size) except NULL:
    cdef void *q = realloc(p, size)
    if q == NULL:
        raise MemoryError()
    return q


# ---- the replacement-policy interface (policy_ops_t, _core.pxd) ----------------
# Helpers the units share: a state block, and the operations of a unit that
# keeps no state of a kind (snapshots, invariants, memory, a hand).

cdef void *unit_state(Core c, size_t size) except NULL:
    """Give ``c`` a zeroed state block of ``size`` bytes (a unit's init)."""
    c.pstate = calloc(1, size)
    if c.pstate == NULL:
        raise MemoryError()
    return c.pstate


cdef void unit_free(Core c) noexcept:
    free(c.pstate)
    c.pstate = NULL


cdef int unit_init_nothing(Core c) except -1:
    return 0


cdef object unit_stateless(Core c):
    return {}


cdef int unit_restore_nothing(Core c, dict state) except -1:
    return 0


cdef object unit_sound(Core c):
    return None


cdef object unit_nbytes_none(Core c):
    return (0, 0, 0)


cdef int64_t unit_no_hand(Core c) noexcept:
    return -1


# The units, one file each, and policy_unit(code) (generated from tables.py).
include "policies/_units.pxi"
include "swap.pxi"


@cython.final          # direct (inlinable) calls between cdef methods, no vtable
cdef class Core:
    """One machine's physical memory, page tables, TLB and swap device.

    Parameters
    ----------
    frames, page_size, swap_slots, policy, va_bits, zero_pool, zero_page,
    tlb_entries, seed
        As ``pymmu.Machine``; already validated. ``policy`` is an index into
        ``_args.POLICIES``; ``zero_pool`` is -1 for "no limit".
    """
    # (fields: declared in _core.pxd, with a comment each)

    def __cinit__(self):
        self.free_slots.levels = 0
        pt_init(&self.pt, 0, 0)
        rmap_init(&self.rm, 0)
        self.vma_rows = NULL
        self.vma_count = NULL
        self.tlb.n = 0
        self.tlb.e = NULL
        self.pins = NULL
        self.pol = NULL
        self.pstate = NULL
        self.fm = NULL
        self.sl = NULL
        self.ps = self.scratch
        self.mm_pid = NULL
        memset(&self.ev, 0, sizeof(self.ev))
        self.references = 0
        self.cur_pid = -1
        self.pypolicy = None
        self.hook_failed = False
        self.py_hooks = False
        self.py_access = False
        self.in_hook = 0

    def __init__(self, int64_t frames, int64_t page_size, int64_t swap_slots, int policy,
                 int64_t va_bits, int64_t zero_pool, bint zero_page, int64_t tlb_entries,
                 uint64_t seed):
        cdef int64_t i
        self.frames = frames
        self.page_size = page_size
        self.page_shift = page_size.bit_length() - 1
        self.swap_slots = swap_slots
        self.va_bits = va_bits
        self.bits = self.page_shift - (2 if va_bits == 32 else 3)
        self.levels = (va_bits - self.page_shift + self.bits - 1) // self.bits
        if self.levels > PT_MAX_LEVELS:     # (pages >= 512 B give <= 7)
            raise ValueError(f"va_bits {va_bits} with {page_size}-byte pages needs "
                             f"{self.levels} page-table levels, more than 16")
        self.max_vpn = (<uint64_t>1) << (va_bits - self.page_shift)
        self.policy = policy
        self.zero_pool_target = zero_pool
        self.zero_page_on = zero_page
        self.seed = seed
        pt_init(&self.pt, self.bits, self.levels)
        self.mem_array = np.zeros((frames + 1, page_size), np.uint8)
        self.mem = self.mem_array
        self.zero_pfn = frames
        self.fm = <frame_t *>calloc(frames + 1, sizeof(frame_t))
        self.sl = <slot_t *>calloc(max(swap_slots, 1), sizeof(slot_t))
        if self.fm == NULL or self.sl == NULL:
            raise MemoryError()
        for i in range(frames + 1):
            self.fm[i].czero = 1
            self.fm[i].pool = i < frames
            self.fm[i].link = -1
        self.fm[frames].rmap = <uint64_t>-1
        for i in range(swap_slots):
            self.sl[i].cache = -1
            self.sl[i].zero = 1
        self.zero_refs = 0
        # The reverse map packs a family id beside a vpn in 64 bits, and a frame's
        # refcount (at most one per address space) has FRAME_REF_BITS.
        rmap_init(&self.rm, <int>(va_bits - self.page_shift))
        self.mm_limit = min(<int64_t>FRAME_REF_MAX, (<int64_t>1) << (63 - self.rm.vpn_bits))
        # the policy's unit and its state (only its own: memory per frame is budgeted)
        self.pol = policy_unit(policy)
        if self.pol == NULL:
            raise ValueError(f"no replacement policy has code {policy}")
        self.pol.init(self)
        self.pins = <int64_t *>malloc(16 * sizeof(int64_t))
        self.pin_cap = 16
        if lowset_init(&self.free_slots, swap_slots) or self.pins == NULL:
            raise MemoryError()
        freeheap_init_range(&self.pool, self.fm, 0, <int32_t>frames)
        freeheap_init_range(&self.dirty, self.fm, 0, 0)
        self.swap_array = np.zeros((swap_slots, page_size), np.uint8)
        self.swapmem = self.swap_array
        for i in range(swap_slots):
            lowset_add(&self.free_slots, i)
        self.mm_cap = 0
        self.mm_next = 1
        self.mm_free = []
        self._grow_mm(16)
        self.vma_keep = [None] * 16
        self.images = []
        self.img_free = []
        self._grow_img(4)
        self.obj_free = []
        self._grow_obj(16)
        if tlb_init(&self.tlb, tlb_entries):
            raise MemoryError()
        self.stats_array = np.zeros(S_COUNT, np.int64)
        self.stats = self.stats_array

    def __dealloc__(self):
        cdef int64_t mm
        pt_free(&self.pt)
        lowset_free(&self.free_slots)
        rmap_free(&self.rm)
        free(self.vma_rows); free(self.vma_count)
        tlb_free(&self.tlb); free(self.pins)
        if self.pol != NULL:
            self.pol.free(self)
        if self.omap != NULL:
            for mm in range(self.obj_next):
                if self.obj_live[mm]:
                    objmap_clear(&self.omap[mm])
        free(self.omap); free(self.obj_base); free(self.obj_live)
        free(self.img_vpns); free(self.img_pages); free(self.img_n)
        free(self.fm); free(self.sl)
        free(self.mm_pid); free(self.ev.buf)

    cdef void _grow_img(self, int64_t cap) except *:
        """Room for ``cap`` image ids."""
        cdef int64_t i
        self.img_vpns = <uint64_t **>realloc_or_raise(self.img_vpns, cap * sizeof(uint64_t *))
        self.img_pages = <uint8_t **>realloc_or_raise(self.img_pages, cap * sizeof(uint8_t *))
        self.img_n = <int64_t *>realloc_or_raise(self.img_n, cap * sizeof(int64_t))
        for i in range(self.img_cap, cap):
            self.img_vpns[i] = NULL
            self.img_pages[i] = NULL
            self.img_n[i] = 0
        self.img_cap = cap

    cdef void _grow_obj(self, int64_t cap) except *:
        """Room for ``cap`` shared-object ids."""
        cdef int64_t i
        self.omap = <objmap_t *>realloc_or_raise(self.omap, cap * sizeof(objmap_t))
        self.obj_base = <int64_t *>realloc_or_raise(self.obj_base, cap * sizeof(int64_t))
        self.obj_live = <uint8_t *>realloc_or_raise(self.obj_live, cap * sizeof(uint8_t))
        for i in range(self.obj_cap, cap):
            objmap_init(&self.omap[i], 0)
            self.obj_base[i] = 0
            self.obj_live[i] = 0
        self.obj_cap = cap

    cdef void _grow_mm(self, int64_t cap) except *:
        cdef int64_t i
        if pt_grow(&self.pt, cap):
            raise MemoryError()
        if rmap_grow(&self.rm, cap):
            raise MemoryError()
        self.vma_rows = <int64_t *>realloc_or_raise(self.vma_rows, cap * sizeof(int64_t))
        self.vma_count = <int64_t *>realloc_or_raise(self.vma_count, cap * sizeof(int64_t))
        self.mm_pid = <int64_t *>realloc_or_raise(self.mm_pid, cap * sizeof(int64_t))
        for i in range(self.mm_cap, cap):
            self.mm_pid[i] = -1
            self.vma_rows[i] = 0
            self.vma_count[i] = 0
        self.mm_cap = cap

    # ------------------------------------------------------------------
    # page tables: the unit is pymmu/include/pgtable.h (self.pt)

    @property
    def nodes(self):
        """Page-table nodes allocated, every address space's."""
        return self.pt.nodes

    def ptes(self, int64_t mm, uint64_t lo=0, object hi=None):
        """``(vpns, ptes)`` arrays of the nonzero PTEs of ``mm`` in ``[lo, hi)``."""
        cdef uint64_t h = self.max_vpn if hi is None else <uint64_t>hi
        cdef int64_t n
        cdef cnp.ndarray vpns, ptes
        self._enter()
        if not self._live(mm):
            raise ValueError(f"no live address space {mm}")
        n = pt_collect(&self.pt, mm, lo, h, NULL, NULL)
        vpns = np.zeros(n, np.uint64)
        ptes = np.zeros(n, np.uint64)
        if n:
            pt_collect(&self.pt, mm, lo, h, <uint64_t *>cnp.PyArray_DATA(vpns),
                       <uint64_t *>cnp.PyArray_DATA(ptes))
        return vpns, ptes

    # ------------------------------------------------------------------
    # TLB

    # ------------------------------------------------------------------
    # events: counted and recorded through pymmu/counting.pxd (stat_note); the
    # log itself is pymmu/include/events.h (self.ev)

    def refused(self, int64_t pid, uint64_t vaddr):
        """Record the ``segv`` event of an access the Python layer refuses
        (an address beyond the address space) at page ``vaddr``."""
        if unlikely(self.ev.on):
            ev_record(self, E_SEGV, pid, vaddr, -1, -1)

    def set_mm_pid(self, int64_t mm, int64_t pid):
        """Name the process address space ``mm`` was made for (events' victims)."""
        self.mm_pid[mm] = pid

    def events_start(self, object limit):
        """Open an event block (``limit`` None: keep every event; an int >= 0;
        one beyond int64, which no count reaches, keeps every event too)."""
        cdef int64_t keep = -1
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be at least 0, got {limit}")
            if limit <= INT64_MAX:       # (larger: no count reaches it, keep all)
                keep = limit
        self._take_hold()
        try:
            if unlikely(self.ev.on):
                raise RuntimeError("this machine is already recording events: "
                                   "events() blocks cannot nest")
            evlog_start(&self.ev, keep)
        finally:
            hold_give(&self.hold)

    def events_snapshot(self):
        """``(rows, counts, dropped)`` of the events recorded so far: the kept
        events copied out in bulk, oldest first (``pymmu.events.DTYPE`` is
        ``event_t``'s layout). RuntimeError while another thread holds the
        machine (its replay writes the log) or inside a policy hook."""
        self._take_hold()
        try:
            return _events_copy(self)
        finally:
            hold_give(&self.hold)

    def events_stop(self):
        """Close the event block: its ``(rows, counts, dropped)``. Kept events in
        order (no ring wrapped) are handed over, not copied: the rows array owns
        the log's buffer, and the next block starts a new one. RuntimeError,
        the block left open, while another thread holds the machine or inside
        a policy hook (``pymmu.machine._CoreRecorder.stop`` waits out the first)."""
        self._take_hold()
        try:
            return _events_close(self)
        finally:
            hold_give(&self.hold)

    cdef void _free_frame(self, int64_t pfn) noexcept nogil:
        """Return a frame nobody maps to the dirty set."""
        cdef frame_t *f = &self.fm[pfn]
        if f.state == F_ANON and f.link >= 0:
            uncache(self, pfn)
        f.state = F_FREE
        f.pinned = 0
        f.link = -1
        freeheap_push(&self.dirty, self.fm, <int32_t>pfn)
        if self.pol.on_unmap != NULL:
            self.pol.on_unmap(self, pfn)

    cdef inline void _get_frame(self, int64_t pfn) noexcept nogil:
        """Add one PTE reference to a frame."""
        if pfn == self.zero_pfn:
            self.zero_refs += 1
        else:
            self.fm[pfn].refcnt += 1

    cdef inline void _put_frame(self, int64_t pfn) noexcept nogil:
        """Drop one PTE reference to a frame."""
        cdef frame_t *f = &self.fm[pfn]
        if pfn == self.zero_pfn:
            self.zero_refs -= 1
            return
        f.refcnt -= 1
        if f.refcnt == 0 and f.state != F_SHMEM:
            self._free_frame(pfn)

    cdef int64_t _alloc_frame(self, bint zeroed) except -9 nogil:
        """A free frame for a fault, lowest pfn of the preferred set; reclaims if
        none is free. ``zeroed``: a demand-zero fill (pool first, bytes zeroed);
        else a frame about to be overwritten (dirty set first). When nothing can
        be freed, the victim choice's VICTIM_* code (``self.fault_kind``
        untouched): see ``_alloc_status``. (-9: an exception.)"""
        cdef int64_t pfn
        cdef int st
        if self.pool.count == 0 and self.dirty.count == 0:
            st = self._reclaim()
            if st != ST_OK:
                return (VICTIM_NONE if st == ST_OOM else VICTIM_BLIND if st == ST_OPT
                        else VICTIM_FAILED)
        if zeroed:
            if self.pool.count:
                pfn = freeheap_pop(&self.pool, self.fm)
                stat_count(self, S_ZERO_POOL_HITS)
            else:
                pfn = freeheap_pop(&self.dirty, self.fm)
                if not self.fm[pfn].czero:
                    page_zero(&self.mem[pfn, 0], self.page_size)
                    self.fm[pfn].czero = 1
        else:
            if self.dirty.count:
                pfn = freeheap_pop(&self.dirty, self.fm)
            else:
                pfn = freeheap_pop(&self.pool, self.fm)
        self.fm[pfn].pool = 0
        return pfn

    cdef void _copy_page(self, int64_t dst, int64_t src) noexcept nogil:
        if self.fm[src].czero:
            if not self.fm[dst].czero:
                page_zero(&self.mem[dst, 0], self.page_size)
                self.fm[dst].czero = 1
        else:
            page_copy(&self.mem[dst, 0], &self.mem[src, 0], self.page_size)
            self.fm[dst].czero = 0

    cdef void _own(self, int64_t pfn, int state, int64_t mm, uint64_t vpn) noexcept nogil:
        """A freshly allocated frame now mapped once, at ``vpn`` of ``mm``'s family."""
        cdef frame_t *f = &self.fm[pfn]
        f.state = state
        f.rmap = rmap_word(&self.rm, self.rm.family[mm], vpn)
        f.refcnt = 1
        if self.pol.on_map != NULL:       # (once per frame given a page)
            self.pol.on_map(self, pfn)

    # ------------------------------------------------------------------
    # reverse map: the unit is pymmu/include/rmap.h (self.rm); these bind it to
    # this machine's page tables, TLB and events

    cdef inline int64_t _rmap(self, int64_t pfn, int op, pte_t arg) noexcept nogil:
        """rmap_walk over the PTEs that map ``pfn`` (``op``: RMAP_COUNT, RMAP_YOUNG
        or RMAP_REPLACE with ``arg``); while events are on, ``rmap_owner`` becomes
        the lowest pid whose PTE RMAP_REPLACE overwrote."""
        return rmap_walk(&self.rm, &self.pt, &self.tlb, pfn, self.fm[pfn].rmap, op, arg,
                         self.mm_pid if unlikely(self.ev.on) else NULL, &self.rmap_owner)

    cdef bint _rmap_bits(self, int64_t pfn, pte_t bit) noexcept nogil:
        """Whether any PTE that maps ``pfn`` has ``bit`` set."""
        if self.fm[pfn].state == F_FREE:
            return False
        return rmap_any(&self.rm, &self.pt, pfn, self.fm[pfn].rmap, bit)

    cdef bint _evictable(self, int64_t pfn) noexcept nogil:
        cdef frame_t *f = &self.fm[pfn]
        if f.state == F_FREE or f.pinned:
            return False
        if f.state == F_FILE:
            return True
        if f.state == F_ANON and f.link >= 0:
            return True
        return self.free_slots.count > 0


    # ------------------------------------------------------------------
    # snapshots: pickle and deepcopy give an independent machine in the same state

    def __reduce__(self):
        """``(restore, (config, state))``: a snapshot (pymmu/_snapshot.pyx),
        taken whole while the machine is held. Refused during a replay and
        inside a policy hook."""
        from pymmu import _snapshot

        return _restore_core, _snapshot.held_state(self)

    def __deepcopy__(self, memo):
        """A snapshot restored at once (its arrays copied once, not twice)."""
        import copy
        from pymmu import _snapshot

        config, state = _snapshot.held_state(self, memo)
        state["policy"] = copy.deepcopy(state["policy"], memo)
        c = _restore_core(config, state)
        memo[id(self)] = c
        return c

    def __copy__(self):
        raise TypeError("a shallow copy of a machine's core would share its state: "
                        "use copy.deepcopy or pickle")

    # ------------------------------------------------------------------
    # a policy written in Python (pymmu/policy.py): its hooks, with the GIL

    def set_policy(self, object policy):
        """Serve ``policy`` (a pymmu.Policy; the machine was made with P_PYTHON)."""
        self.pypolicy = policy
        self.py_hooks = policy is not None
        self.py_access = bool(getattr(policy, "wants_access", False))
        self.victim_error = self.hook_error = None

    cdef int _hook_check(self) except -1:
        """Raise the exception a later hook raised during the operation just done."""
        if self.hook_failed:
            error, self.hook_error = self.hook_error, None
            self.hook_failed = False
            raise error
        return 0

    def hook_check(self):
        """Python-level ``_hook_check``, for operations machine.py completes."""
        self._hook_check()

    # ------------------------------------------------------------------
    # replacement: the policy's unit (self.pol, pymmu/policies/) chooses

    cdef int _reclaim(self) except -1 nogil:
        """Free one frame by the machine's policy; returns a status."""
        cdef int64_t victim = self.pol.victim(self)
        if victim < 0:
            return _alloc_status(victim)
        self._evict(victim)
        return ST_OK

    cdef int _evict(self, int64_t pfn) except -1 nogil:
        """Evict ``pfn`` (rule 6, section 6): drop a file page; a swap-cache page
        is dropped if no PTE mapping it is dirty, else written back to its own
        slot; any other anonymous or shared-object page is written to a new
        slot. Every PTE that maps it names the slot then (a file page: none)."""
        cdef frame_t *f = &self.fm[pfn]
        cdef int64_t slot = -1, n
        cdef bint cached = f.state == F_ANON and f.link >= 0
        cdef bint written = f.state == F_SHMEM or (f.state == F_ANON and not cached)
        if cached:
            slot = f.link           # page out only if needed: its slot holds it
            written = self._rmap_bits(pfn, PTE_DIRTY)
        elif written:
            slot = lowset_pop(&self.free_slots)
        if f.state == F_FILE:
            self._rmap(pfn, RMAP_REPLACE, 0)
        elif f.state == F_ANON:
            if written:
                swap_write(self, slot, pfn)
            if cached:
                f.link = -1
                self.sl[slot].cache = -1
            n = self._rmap(pfn, RMAP_REPLACE, pte_make_swap(slot))
            self.sl[slot].count += <int32_t>n
        else:                       # shmem: the object remembers the slot
            swap_write(self, slot, pfn)
            self._rmap(pfn, RMAP_REPLACE, 0)
            self._shmem_set(f.link, <int64_t>rmap_vpn(&self.rm, f.rmap), -(slot + 2))
            self.sl[slot].count = 1
        if unlikely(self.ev.on):
            ev_victim(self, pfn, slot, written)
        if written:
            stat_count(self, S_SWAP_OUTS)
        stat_count(self, S_EVICTIONS)
        f.refcnt = 0
        self._free_frame(pfn)
        return 0

    cdef void _shmem_set(self, int64_t obj, int64_t vpn, int64_t value) noexcept nogil:
        """Record ``value`` (a pfn, or -(slot+2)) for the object page mapped at
        ``vpn``, a page the object holds (so no memory is needed)."""
        objmap_set(&self.omap[obj], vpn - self.obj_base[obj], value)

    # ------------------------------------------------------------------
    # one access

    cdef inline int64_t *_vma(self, int64_t mm, uint64_t vpn) noexcept nogil:
        """The VMA row containing ``vpn`` (binary search), or NULL."""
        cdef int64_t *rows = <int64_t *><uintptr_t>self.vma_rows[mm]
        cdef int64_t lo = 0, hi = self.vma_count[mm], mid
        cdef int64_t v = <int64_t>vpn
        while lo < hi:
            mid = (lo + hi) >> 1
            if rows[mid * V_NCOLS + V_START] <= v:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return NULL
        rows = rows + (lo - 1) * V_NCOLS
        if rows[V_END] > v:
            return rows
        return NULL

    cdef int _fault(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                    pte_t *p) except -1 nogil:
        """Resolve one fault on the PTE at ``p`` (semantics.md section 5), by what
        the PTE holds, as Linux's handle_pte_fault dispatches: a present page the
        access may not write (``_do_wp_page``), a swap entry (``_do_swap_page``),
        nothing yet: a shared object's page (``_do_shared_page``), an image's file
        page (``_do_file_page``), or anonymous memory (``_do_anonymous_page``)."""
        cdef int st
        if p[0] & PTE_PRESENT:
            return self._do_wp_page(mm, vpn, vma, p)
        if pte_is_swap(p[0]):
            return self._do_swap_page(mm, vpn, kind, vma, p)
        if vma[V_KIND] == K_SHARED:
            return self._do_shared_page(mm, vpn, vma, p)
        if vma[V_KIND] == K_FILE:
            st = self._do_file_page(mm, vpn, kind, vma, p)
            if st != ST_NOT_FILE:
                return st
        return self._do_anonymous_page(mm, vpn, kind, vma, p)

    cdef int _do_wp_page(self, int64_t mm, uint64_t vpn, int64_t *vma,
                         pte_t *p) except -1 nogil:
        """What a write fault on a present page does (rule 4): a zero-page PTE gets
        a zeroed frame; a COW frame nobody else maps (refcount 1) is reused in
        place, leaving the swap cache; a shared COW frame is copied into a new
        one and loses a reference. The result is writable; a minor fault."""
        cdef pte_t pte = p[0], base = prot_bits(vma[V_PROT])
        cdef int64_t old, new
        cdef uint8_t saved
        if pte & PTE_ZERO:
            new = self._alloc_frame(True)
            if new < 0:
                return _alloc_status(new)
            self._put_frame(self.zero_pfn)
            self._own(new, F_ANON, mm, vpn)
            p[0] = pte_with_pfn(base | PTE_WRITABLE, new)
            stat_note(self, S_ZERO_FILLS, E_ZERO_FILLS, vpn, new, -1)
        else:
            old = pte_pfn(pte)
            if self.fm[old].refcnt == 1:
                # Nobody else maps it: write in place (do_wp_page's reuse).
                if self.fm[old].link >= 0:  # its slot's data stays as it was
                    uncache(self, old)
                self.fm[old].state = F_ANON
                p[0] = (pte | PTE_WRITABLE) & ~PTE_COW
                stat_note(self, S_COW_REUSES, E_COW_REUSES, vpn, old, -1)
            else:
                saved = self.fm[old].pinned
                self.fm[old].pinned = 1
                new = self._alloc_frame(False)
                self.fm[old].pinned = saved
                if new < 0:
                    return _alloc_status(new)
                self._copy_page(new, old)
                self._own(new, F_ANON, mm, vpn)
                self._put_frame(old)
                p[0] = pte_with_pfn((pte & ~PTE_COW) | PTE_WRITABLE, new)
                stat_note(self, S_COW_COPIES, E_COW_COPIES, vpn, new, -1)
        tlb_invalidate(&self.tlb, mm, vpn)
        stat_count(self, S_MINOR)
        return ST_OK

    cdef int _do_swap_page(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                           pte_t *p) except -1 nogil:
        """A swapped-out page (rule 6): mapped from the swap cache if a sharer
        brought it in (minor), else read from its slot (major). When this PTE
        is the slot's only swap entry it is mapped writable at once: by a write
        fault dirty, the slot freed; by a read or execute fault clean, the
        frame kept in the swap cache with its slot, so that evicting it again
        unwritten costs no write. Else read-only + cow, the frame kept in the
        swap cache for the other entries."""
        cdef pte_t base = prot_bits(vma[V_PROT])
        cdef bint vma_w = (vma[V_PROT] & PROT_WRITE) != 0
        cdef int64_t slot = pte_pfn(p[0]), new = self.sl[slot].cache
        if new >= 0:
            self.fm[new].refcnt += 1
            p[0] = pte_with_pfn(base | (PTE_COW if vma_w else 0), new)
            slot_put(self, slot, 1)
            stat_note(self, S_SWAP_CACHE_HITS, E_SWAP_CACHE_HITS, vpn, new, slot)
            stat_count(self, S_MINOR)
            return ST_OK
        new = self._alloc_frame(False)
        if new < 0:
            return _alloc_status(new)
        swap_read(self, new, slot)
        self._own(new, F_ANON, mm, vpn)
        if kind != ACC_WRITE or self.sl[slot].count > 1:
            self.sl[slot].cache = <int32_t>new
            self.fm[new].link = <int32_t>slot
        if self.sl[slot].count == 1:
            p[0] = pte_with_pfn(base | (PTE_WRITABLE if vma_w else 0), new)
        else:
            p[0] = pte_with_pfn(base | (PTE_COW if vma_w else 0), new)
        slot_put(self, slot, 1)
        stat_note(self, S_SWAP_INS, E_SWAP_INS, vpn, new, slot)
        stat_count(self, S_MAJOR)
        return ST_OK

    cdef int _do_anonymous_page(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                                pte_t *p) except -1 nogil:
        """Private anonymous memory (or bss) touched for the first time (rule 5):
        a read maps the shared zero page, a write (or any touch without the zero
        page) gets a zeroed frame. A minor fault."""
        cdef pte_t base = prot_bits(vma[V_PROT])
        cdef bint vma_w = (vma[V_PROT] & PROT_WRITE) != 0
        cdef int64_t new
        if kind == ACC_WRITE or not self.zero_page_on:
            new = self._alloc_frame(True)
            if new < 0:
                return _alloc_status(new)
            self._own(new, F_ANON, mm, vpn)
            p[0] = pte_with_pfn(base | (PTE_WRITABLE if vma_w else 0), new)
            stat_note(self, S_ZERO_FILLS, E_ZERO_FILLS, vpn, new, -1)
        else:
            self.zero_refs += 1
            p[0] = pte_with_pfn(base | PTE_ZERO, self.zero_pfn)
            stat_note(self, S_ZERO_PAGE_MAPS, E_ZERO_PAGE_MAPS, vpn, self.zero_pfn, -1)
        stat_count(self, S_MINOR)
        return ST_OK

    cdef int _do_shared_page(self, int64_t mm, uint64_t vpn, int64_t *vma,
                             pte_t *p) except -1 nogil:
        """Rule 5 for a shared mapping: the object's page, swapped in or new."""
        cdef pte_t base = prot_bits(vma[V_PROT])
        cdef bint vma_w = (vma[V_PROT] & PROT_WRITE) != 0
        cdef int64_t new, slot, obj = vma[V_OBJ]
        cdef int64_t page = <int64_t>vpn - vma[V_START] + vma[V_PGOFF]
        new = objmap_get(&self.omap[obj], page)
        if new >= 0:
            self.fm[new].refcnt += 1
            stat_count(self, S_MINOR)
        elif new == -1:
            if objmap_reserve(&self.omap[obj], page) != 0:
                return ST_NOMEM             # (before the frame: nothing to give back)
            new = self._alloc_frame(True)
            if new < 0:
                return _alloc_status(new)
            self._own_shmem(new, obj, page, mm, vpn)
            stat_note(self, S_ZERO_FILLS, E_ZERO_FILLS, vpn, new, -1)
            stat_count(self, S_MINOR)
        else:
            slot = -new - 2
            new = self._alloc_frame(False)
            if new < 0:
                return _alloc_status(new)
            swap_read(self, new, slot)
            slot_put(self, slot, 1)
            self._own_shmem(new, obj, page, mm, vpn)
            stat_note(self, S_SWAP_INS, E_SWAP_INS, vpn, new, slot)
            stat_count(self, S_MAJOR)
        p[0] = pte_with_pfn(base | PTE_SHARED | (PTE_WRITABLE if vma_w else 0), new)
        return ST_OK

    cdef int _do_file_page(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                           pte_t *p) except -1 nogil:
        """Rule 7: read a page of an exec image (ST_NOT_FILE for a bss page).
        The image's pages are C data (image_new), found by binary search."""
        cdef pte_t base = prot_bits(vma[V_PROT])
        cdef bint vma_w = (vma[V_PROT] & PROT_WRITE) != 0
        cdef int64_t new, img = vma[V_OBJ], lo = 0, hi = self.img_n[img], mid
        cdef uint64_t *vpns = self.img_vpns[img]
        while lo < hi:                      # the first file page >= vpn
            mid = (lo + hi) >> 1
            if vpns[mid] < vpn:
                lo = mid + 1
            else:
                hi = mid
        if lo == self.img_n[img] or vpns[lo] != vpn:
            return ST_NOT_FILE
        new = self._alloc_frame(False)
        if new < 0:
            return _alloc_status(new)
        memcpy(&self.mem[new, 0], self.img_pages[img] + lo * self.page_size, self.page_size)
        self.fm[new].czero = 0
        if kind == ACC_WRITE:
            self._own(new, F_ANON, mm, vpn)
            p[0] = pte_with_pfn(base | PTE_WRITABLE, new)
        else:
            self._own(new, F_FILE, mm, vpn)
            p[0] = pte_with_pfn(base | (PTE_COW if vma_w else 0), new)
        stat_note(self, S_FILE_READS, E_FILE_READS, vpn, new, -1)
        stat_count(self, S_MAJOR)
        return ST_OK

    cdef void _own_shmem(self, int64_t pfn, int64_t obj, int64_t page, int64_t mm,
                         uint64_t vpn) noexcept nogil:
        """Frame ``pfn`` now holds page ``page`` of object ``obj`` (whose value
        has room: it held the page, or objmap_reserve made room)."""
        self._own(pfn, F_SHMEM, mm, vpn)
        self.fm[pfn].link = <int32_t>obj
        objmap_set(&self.omap[obj], page, pfn)

    cdef int _touch(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                    pte_t **out) except -1 nogil:
        """Make page ``vpn`` allow ``kind``: TLB, walk, faults; set A/D."""
        cdef int64_t i = 0
        cdef pte_t *p = NULL
        if self.tlb.n:
            i = tlb_slot(&self.tlb, vpn)
            p = tlb_lookup(&self.tlb, i, mm, vpn)
            stat_count(self, S_TLB_HITS if p != NULL else S_TLB_MISSES)
        if p == NULL or not pte_allows(p[0], kind):
            p = pt_walk(&self.pt, mm, vpn, False)
        return self._settle(mm, vpn, kind, vma, p, i, out)

    cdef int _settle(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma, pte_t *p,
                     int64_t i, pte_t **out) except -1 nogil:
        """The rest of ``_touch`` once the walk is done: fault the PTE at ``p``
        (NULL: no leaf table yet) until it allows ``kind``, set A/D, do the
        policy's bookkeeping and fill TLB entry ``i``."""
        cdef int64_t pfn
        cdef pt_made_t made
        cdef int st
        if p == NULL:
            # No table yet: make the tables first (running out of memory for one
            # changes nothing), and take them back if the fault fails, so that a
            # failed access leaves no table behind.
            p = pt_walk(&self.pt, mm, vpn, True)
            if p == NULL:
                return ST_NOMEM
            made = self.pt.made
            while not pte_allows(p[0], kind):
                st = self._fault(mm, vpn, kind, vma, p)
                if st != ST_OK:
                    if p[0] & PTE_PRESENT:      # (a first step that did map)
                        self._put_frame(<int64_t>pte_pfn(p[0]))
                        p[0] = 0
                    pt_unmake(&self.pt, mm, vpn, made)
                    return st
        while not pte_allows(p[0], kind):
            st = self._fault(mm, vpn, kind, vma, p)
            if st != ST_OK:
                return st
        p[0] |= PTE_ACCESSED | (PTE_DIRTY if kind == ACC_WRITE else 0)
        pfn = pte_pfn(p[0])
        if pfn != self.zero_pfn:
            policy_use(self, pfn, self.references)
        if self.tlb.n:
            tlb_fill(&self.tlb, i, mm, vpn, p)
        out[0] = p
        return ST_OK

    cdef int _check(self, int64_t mm, uint64_t addr, int64_t n, int kind) except -1 nogil:
        """Rules 1 and 2 for every page of an access, before anything changes."""
        cdef uint64_t first = addr >> self.page_shift, last, vpn
        cdef int64_t *vma
        cdef int need = access_need(kind)
        if not self._live(mm):                  # (a released process's space: 0)
            return ST_STATE
        self.fault_kind = kind
        if addr + <uint64_t>(n - 1) < addr:     # wraps around 2**64
            self.fault_addr = addr
            return ST_SEGV
        last = (addr + <uint64_t>(n - 1)) >> self.page_shift
        vpn = first
        while vpn <= last:
            self.fault_addr = addr if vpn == first else vpn << self.page_shift
            if vpn >= self.max_vpn:
                return ST_SEGV
            vma = self._vma(mm, vpn)
            if vma == NULL:
                return ST_SEGV
            if not (vma[V_PROT] & need):
                return ST_PROT
            vpn += 1
        return ST_OK

    cdef int _access(self, int64_t mm, uint64_t addr, int64_t n, int kind,
                     uint8_t *buf) except -1 nogil:
        """One read/write/fetch of ``n`` >= 1 bytes that ``_check`` passed
        (semantics.md section 5): touch every page, then move the bytes."""
        cdef uint64_t first = addr >> self.page_shift, vpn
        cdef uint64_t last = (addr + <uint64_t>(n - 1)) >> self.page_shift
        cdef int64_t *vma
        cdef int st = ST_OK
        cdef pte_t *p = NULL
        cdef int64_t npages, k, pfn, off, chunk, done = 0
        self.fault_kind = kind
        npages = <int64_t>(last - first + 1)
        if npages == 1:
            # One page (most accesses): nothing to pin, and the PTE _touch returns
            # is the one the bytes move through.
            self.fault_addr = addr
            self.references += 1
            st = self._touch(mm, first, kind, self._vma(mm, first), &p)
            if st != ST_OK:
                return st
            if buf != NULL:
                self._move(pte_pfn(p[0]), <int64_t>(addr & <uint64_t>(self.page_size - 1)),
                           buf, n, kind)
            stat_count(self, access_stat(kind))
            return ST_OK
        self._reserve_pins(npages)
        # 2. touch each page, pinning the ones done so far
        self.pin_n = 0
        vpn = first
        while vpn <= last:
            self.fault_addr = addr if vpn == first else vpn << self.page_shift
            vma = self._vma(mm, vpn)
            self.references += 1
            st = self._touch(mm, vpn, kind, vma, &p)
            if st != ST_OK:
                break
            pfn = pte_pfn(p[0])
            if pfn != self.zero_pfn and not self.fm[pfn].pinned:
                self.fm[pfn].pinned = 1
                self.pins[self.pin_n] = pfn
                self.pin_n += 1
            vpn += 1
        for k in range(self.pin_n):
            self.fm[self.pins[k]].pinned = 0
        if st != ST_OK:
            return st
        # 3. move the bytes
        if buf != NULL:
            vpn = first
            off = <int64_t>(addr & <uint64_t>(self.page_size - 1))
            while vpn <= last:
                p = pt_walk(&self.pt, mm, vpn, False)
                chunk = min(self.page_size - off, n - done)
                self._move(pte_pfn(p[0]), off, buf + done, chunk, kind)
                done += chunk
                off = 0
                vpn += 1
        stat_count(self, access_stat(kind))
        return ST_OK

    cdef inline void _move(self, int64_t pfn, int64_t off, uint8_t *buf, int64_t n,
                           int kind) noexcept nogil:
        """Copy ``n`` bytes between ``buf`` and frame ``pfn`` at ``off``; a write
        makes the frame's content no longer known to be zero."""
        if kind == ACC_WRITE:
            memcpy(&self.mem[pfn, off], buf, n)
            self.fm[pfn].czero = 0
        else:
            memcpy(buf, &self.mem[pfn, off], n)

    cdef int _reserve_pins(self, int64_t n) except -1 nogil:
        cdef int64_t *q
        if n > self.pin_cap:
            q = <int64_t *>realloc(self.pins, n * sizeof(int64_t))
            if q == NULL:
                with gil:
                    raise MemoryError()
            self.pins = q
            self.pin_cap = n
        return 0

    cdef object _raise_status(self, int st, int64_t pid):
        """The one place a status code becomes an exception (and, while
        recording, the refused access's event)."""
        self._refusal_event(st, pid)
        self._status_error(st, pid)

    cdef void _refusal_event(self, int st, int64_t pid) noexcept nogil:
        """While recording: the event of an access refused with ``st``."""
        if unlikely(self.ev.on) and (st == ST_SEGV or st == ST_PROT or st == ST_OOM):
            ev_record(self, E_SEGV if st == ST_SEGV else E_PROTECTION if st == ST_PROT else E_OOM,
                        pid, self.fault_addr & ~(<uint64_t>self.page_size - 1), -1, -1)

    cdef object _status_error(self, int st, int64_t pid):
        """Raise the exception of status ``st`` (the last fault's address and access)."""
        access = _ACCESS_NAMES[self.fault_kind]
        if st == ST_BUSY:
            self._enter()
            raise RuntimeError(_BUSY)
        if st == ST_NOMEM:
            raise MemoryError("out of memory for a page table: the access changed nothing")
        if st == ST_STATE:
            raise ProcessStateError(f"pid {pid} is not running, or is a vfork child "
                                    "whose writes are refused (strict_vfork)")
        if st == ST_HOOK or st == ST_HOOK_LATE:
            # victim() failed (nothing changed), or a later hook raised (done)
            error = self.victim_error if self.victim_error is not None else self.hook_error
            self.victim_error = self.hook_error = None
            self.hook_failed = False
            raise error
        if st == ST_SEGV:
            raise SegmentationFault(self.fault_addr, access, pid)
        if st == ST_PROT:
            raise ProtectionFault(self.fault_addr, access, pid)
        if st == ST_OOM:
            raise OutOfMemory(self.fault_addr, access, pid)
        if st == ST_OPT:
            raise ValueError("the opt policy needs the future: it runs only in Machine.replay")
        if st == ST_BAD_RECORD:
            raise TraceError("bad trace record: kind code over 3 or size 0")
        raise SystemError(f"unknown core status {st}")

    cdef inline int _enter(self) except -1:
        """Refuse to touch the machine while another thread holds it (a replay
        without the GIL, or an operation of several calls: include/hold.h):
        the core's state is not safe to share then. The holding thread itself
        is let in (an operation's own calls, m.run's exit callback)."""
        if hold_elsewhere(&self.hold):
            raise RuntimeError(_BUSY)
        if self.in_hook:
            raise RuntimeError("a policy hook may not call the machine it serves")
        return 0

    cdef int _take_hold(self) except -1:
        """Hold the machine (include/hold.h) for a call of several steps; the
        caller gives it back with ``hold_give``. RuntimeError, holding nothing,
        if another thread holds it or a policy hook is running (``_enter``).

        The event log's calls hold it too: a replay in another thread, or a
        call of the C API made without the GIL, appends to the log while it
        holds the machine, so the log is read, reset or handed over only in a
        hold, never under a writer."""
        self._enter()
        if not hold_take(&self.hold):        # (taken by another thread meanwhile)
            raise RuntimeError(_BUSY)
        return 0

    def hold_acquire(self):
        """Hold the machine for an operation of several core calls (machine.py's
        ``_holding``): until ``hold_release``, another thread's call is refused
        with RuntimeError, and this thread's calls go through. Nests. Raises
        RuntimeError, and holds nothing, if another thread holds the machine
        or a policy hook is running."""
        self._take_hold()

    def hold_release(self):
        """Give back one ``hold_acquire`` of this thread."""
        if not hold_mine(&self.hold):
            raise RuntimeError("hold_release without hold_acquire on this thread")
        hold_give(&self.hold)

    @property
    def busy(self):
        """1 while some thread holds the machine (a replay, a run, an operation), else 0."""
        return self.hold.busy

    cdef inline int64_t *_counters(self, cnp.ndarray ps) except NULL:
        """The data of a per-process counter array (int64, S_COUNT long)."""
        if ps.dtype.num != cnp.NPY_INT64 or cnp.PyArray_SIZE(ps) != S_COUNT or (
                not cnp.PyArray_ISCARRAY(ps)):
            raise ValueError("per-process counters must be a contiguous int64 array")
        return <int64_t *>cnp.PyArray_DATA(ps)

    def count(self, int stat, int64_t n, cnp.ndarray ps, cnp.ndarray delta=None):
        """Add ``n`` to counter ``stat`` of the machine and of a process, through
        the counting unit (``stat_add_to``, pymmu/counting.pxd) as the core's own
        counts: the Python layer's counts (forks, vforks, execs, a vfork child's
        replayed writes) go through here, never by hand.

        Parameters
        ----------
        stat : int
            The counter's index in ``tables.COUNTERS``.
        n : int
            How much to add (not negative: counters only grow).
        ps : numpy.ndarray
            The process's counter array (int64[S_COUNT]).
        delta : numpy.ndarray, optional
            Counters like ``ps`` that also gain ``n``: what an operation added so
            far, as ``replay``'s ``delta``.
        """
        cdef int64_t *counters = self._counters(ps)
        cdef int64_t *added = NULL if delta is None else self._counters(delta)
        self._enter()
        if not 0 <= stat < S_COUNT:
            raise IndexError(f"no counter {stat} (there are {S_COUNT})")
        if n < 0:
            raise ValueError(f"counters only grow: {n}")
        stat_add_to(self, counters, stat, n)
        if added != NULL:
            added[stat] += n

    cdef int _access_or_raise(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n,
                              int kind, uint8_t *buf, int64_t *ps) except -1:
        """``_access_for`` raising the access's error: touch the pages of an
        access ``_check`` passed and move the bytes, counting into ``ps``. Every
        read, fetch and write of the Python API ends here (the C API's
        ``ProcessCore._io`` keeps the status instead)."""
        cdef int st = self._access_for(mm, pid, addr, n, kind, buf, ps)
        if st != ST_OK:
            self._raise_status(st, pid)
        return 0

    cdef int _access_for(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n, int kind,
                         uint8_t *buf, int64_t *ps) noexcept nogil:
        """``_access`` on behalf of process ``pid`` (counting into ``ps``, naming
        it in events), for an access ``_check`` passed (which also refuses an
        address space that is not live); a failed access's own error is the one
        to raise, so a policy hook's exception of the same access is dropped."""
        cdef int st
        self.ps = ps
        self.cur_pid = pid
        st = self._access(mm, addr, n, kind, buf)
        self.ps = self.scratch
        if st != ST_OK:
            self.hook_failed = False
        return st

    cdef bytes _read_bytes(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n,
                           int kind, int64_t *ps):
        """Read or fetch ``n`` >= 1 bytes. The checks come before the buffer is
        allocated, so an absurd length faults instead of exhausting memory."""
        cdef int st = self._check(mm, addr, n, kind)
        if st != ST_OK:
            self._raise_status(st, pid)
        out = PyBytes_FromStringAndSize(NULL, n)
        self._access_or_raise(mm, pid, addr, n, kind, <uint8_t *>PyBytes_AS_STRING(out),
                              ps)
        return out

    cdef int _write_bytes(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n,
                          const uint8_t *buf, int64_t *ps) except -1:
        """Write ``n`` >= 1 bytes from ``buf``."""
        cdef int st = self._check(mm, addr, n, ACC_WRITE)
        if st != ST_OK:
            self._raise_status(st, pid)
        return self._access_or_raise(mm, pid, addr, n, ACC_WRITE, <uint8_t *>buf, ps)

    def read(self, int64_t mm, int64_t pid, uint64_t addr, Py_ssize_t n, int kind,
             cnp.ndarray ps):
        """Read (kind 0) or fetch (kind 2) ``n`` bytes; returns bytes.

        ``ps`` is the calling process's counter array (int64[S_COUNT]).
        """
        self._enter()
        if n == 0:
            return b""
        out = self._read_bytes(mm, pid, addr, n, kind, self._counters(ps))
        self._hook_check()
        return out

    def write(self, int64_t mm, int64_t pid, uint64_t addr, object data, cnp.ndarray ps):
        """Write ``data`` (any C-contiguous buffer); returns its length."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int64_t *counters = self._counters(ps)
        self._enter()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            n = view.len
            if n:
                self._write_bytes(mm, pid, addr, n, <const uint8_t *>view.buf, counters)
        finally:
            PyBuffer_Release(&view)
        return n

    # ------------------------------------------------------------------
    # trace replay

    cdef void _tally(self, int64_t hits, int64_t misses, int64_t *done) noexcept nogil:
        """Add what a replay counted in registers to the machine's and the process's
        counters (done: reads, writes, fetches, indexed by access kind)."""
        cdef int kind
        stat_add(self, S_TLB_HITS, hits)
        stat_add(self, S_TLB_MISSES, misses)
        for kind in range(3):
            stat_add(self, access_stat(kind), done[kind])

    def replay(self, int64_t mm, int64_t pid, const uint64_t[::1] addr,
               const uint8_t[::1] kind, const uint32_t[::1] size,
               const int64_t[::1] next_use, cnp.ndarray ps, cnp.ndarray delta=None):
        """Replay trace columns in ``mm``; ``next_use`` (for opt) is the next
        position of each page reference, or None. Returns None, or
        ``(exception, index)`` for the record that failed. ``delta`` (counters
        like ``ps``) gains what the replay added to the machine's counters,
        taken while the machine is busy: no other thread's access is in it.
        On the main thread a pending signal's exception (KeyboardInterrupt)
        propagates, raised between two records (``replay_loop``)."""
        cdef int64_t index = -1
        cdef int st
        cdef int64_t pfn, i
        cdef int64_t *counters
        cdef int64_t *added = NULL
        cdef int64_t before[S_COUNT]
        cdef bint future
        cdef bint poll = on_main_thread()     # (where Ctrl-C's handler runs)
        self._enter()
        if not self._live(mm):
            raise ValueError(f"no live address space {mm}")
        if delta is not None:
            added = self._counters(delta)
        if kind.shape[0] != addr.shape[0] or size.shape[0] != addr.shape[0]:
            raise ValueError(f"trace columns of different lengths: addr {addr.shape[0]}, "
                             f"kind {kind.shape[0]}, size {size.shape[0]}")
        counters = self._counters(ps)       # every argument checked before anything changes
        if next_use is not None and next_use.shape[0] and not (
                0 <= np.min(next_use) and np.max(next_use) <= next_use.shape[0]):
            raise ValueError("next_use keys must lie in 0..len(next_use)")
        self._take_hold()
        # a policy that uses the future hears of it (opt), for this replay only
        future = next_use is not None and self.pol.begin != NULL
        try:
            if future:
                self.pol.begin(self, &next_use[0] if next_use.shape[0] else NULL,
                               next_use.shape[0])
            self.cur_pid = pid
            self.ps = counters
            for i in range(S_COUNT):
                before[i] = self.stats[i]
            with nogil:
                if self.pol.on_use != NULL:
                    st = replay_loop(self, <unit_uses_t *>NULL, mm, addr, kind, size,
                                     &index, poll)
                else:
                    st = replay_loop(self, <unit_ignores_t *>NULL, mm, addr, kind, size,
                                     &index, poll)
        finally:
            if added != NULL:
                for i in range(S_COUNT):
                    added[i] += self.stats[i] - before[i]
            self.ps = self.scratch
            if future:
                self.pol.end(self)
            hold_give(&self.hold)
        if st == ST_OK:
            self._hook_check()
            return None
        if st == ST_HOOK_LATE:          # the record completed; its hook's error
            error, self.hook_error = self.hook_error, None
            self.hook_failed = False
            return error, index
        self.hook_error = None          # the record's own error is the one raised
        self.hook_failed = False
        try:
            self._raise_status(st, pid)
        except Exception as e:
            return e, index

    # ------------------------------------------------------------------
    # address spaces

    def mm_new(self, int64_t family=-1):
        """A new, empty address space; in ``family`` or (-1) a new family."""
        cdef int64_t mm = self.mm_free[0] if self.mm_free else self.mm_next
        cdef uint64_t *root
        self._enter()
        if mm >= self.mm_limit:            # see mm_limit in __init__
            raise OverflowError(f"this machine has {self.mm_limit:,} address spaces, "
                                "as many as its reverse map can name")
        if mm >= self.mm_cap:
            self._grow_mm(2 * self.mm_cap)
            self.vma_keep.extend([None] * (self.mm_cap - len(self.vma_keep)))
        root = pt_new_node(&self.pt)        # the top-level table, before anything changes
        if root == NULL:
            raise MemoryError("out of memory for a page table")
        if self.mm_free:
            heapq.heappop(self.mm_free)     # (the lowest free id: mm)
        else:
            self.mm_next += 1
        if family < 0:
            family = mm             # a family is named after its first member
        rmap_join(&self.rm, mm, family)
        self.vma_rows[mm] = 0
        self.vma_count[mm] = 0
        self.pt.root[mm] = root
        return mm

    def set_vmas(self, int64_t mm, cnp.ndarray rows):
        """Install the mapping table of ``mm``: int64 rows of V_NCOLS columns,
        sorted by start. The core keeps a reference; callers never mutate it."""
        cdef cnp.ndarray arr = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1, V_NCOLS)
        self._enter()
        self.vma_keep[mm] = arr
        self.vma_rows[mm] = <int64_t><uintptr_t>cnp.PyArray_DATA(arr)
        self.vma_count[mm] = arr.shape[0]

    def mm_fork(self, int64_t parent):
        """Copy ``parent``'s page table into a new address space of its family:
        private pages become read-only + COW in both, refcounts and swap counts
        go up. No page data moves. Returns the child's mm."""
        cdef int64_t child = self.mm_new(self.rm.family[parent])
        self._enter()
        if self.pt.root[parent]:
            # Two passes, so that running out of memory changes nothing: first
            # every table of the copy, then the PTEs, COW bits and counts.
            if pt_clone_shape(&self.pt, self.pt.root[parent], self.pt.root[child], 0) != 0:
                self.mm_destroy(child)
                raise MemoryError("out of memory copying a page table (fork)")
            self._fork_fill(self.pt.root[parent], self.pt.root[child], 0)
        tlb_flush(&self.tlb, parent)
        return child

    cdef void _fork_fill(self, uint64_t *src, uint64_t *dst, int level) noexcept:
        """Copy the PTEs of ``src`` into ``dst``'s tables (made by pt_clone_shape):
        private pages read-only + COW in both, references counted."""
        cdef int64_t i, n = (<int64_t>1) << self.bits
        cdef pte_t pte
        if level < self.levels - 1:
            for i in range(n):
                if src[i]:
                    self._fork_fill(<uint64_t *><uintptr_t>src[i],
                                    <uint64_t *><uintptr_t>dst[i], level + 1)
            return
        for i in range(n):
            pte = src[i]
            if not pte:
                continue
            if pte & PTE_PRESENT:
                self._get_frame(pte_pfn(pte))
                if pte & (PTE_ZERO | PTE_SHARED):
                    dst[i] = pte            # copied as they are
                    continue
                if pte & (PTE_WRITABLE | PTE_COW):
                    pte = (pte & ~PTE_WRITABLE) | PTE_COW
                    src[i] = pte
                dst[i] = pte & ~PTE_ACCESSED   # the child has not used it yet
            else:
                self.sl[pte_pfn(pte)].count += 1
                dst[i] = pte

    def mm_destroy(self, int64_t mm):
        """Drop every PTE of ``mm``, free its page table, flush its TLB entries;
        its id is reused once no family is named after it (see _reusable)."""
        cdef int64_t fam
        self._enter()
        if not 0 < mm < self.mm_next or self.rm.family[mm] < 0:
            raise ValueError(f"no address space {mm}")
        fam = self.rm.family[mm]
        self.unmap(mm, 0, self.max_vpn)
        pt_destroy(&self.pt, mm)
        tlb_flush(&self.tlb, mm)
        rmap_leave(&self.rm, mm)            # (its family: -1, destroyed)
        self.vma_keep[mm] = None
        self.vma_rows[mm] = 0
        self.vma_count[mm] = 0
        self.mm_pid[mm] = -1
        self._reusable(mm)
        if fam != mm:
            self._reusable(fam)             # (its family may have died with it)

    cdef inline bint _live(self, int64_t mm) noexcept nogil:
        """Whether ``mm`` names an address space that exists (made, not destroyed):
        every path that takes an mm from outside the core checks it first."""
        return 0 < mm < self.mm_next and self.rm.family[mm] >= 0

    cdef void _reusable(self, int64_t mm) except *:
        """Offer a destroyed address space's id for reuse, unless a live family is
        named after it: frames' reverse maps name families by their first
        member's id, so a new family must not take the name of a live one."""
        if self.rm.family[mm] == -1 and self.rm.head[mm] == 0:
            self.rm.family[mm] = -2         # (offered: not twice)
            heapq.heappush(self.mm_free, mm)

    def unmap(self, int64_t mm, uint64_t lo, uint64_t hi):
        """Drop the PTEs of ``[lo, hi)`` (frames and slots lose a reference)."""
        cdef uint64_t[::1] vpns, ptes
        cdef int64_t i
        cdef pte_t *p
        self._enter()
        vpns, ptes = self.ptes(mm, lo, hi)
        for i in range(vpns.shape[0]):
            p = pt_walk(&self.pt, mm, vpns[i], False)
            if ptes[i] & PTE_PRESENT:
                self._put_frame(pte_pfn(ptes[i]))
            else:
                slot_put(self, pte_pfn(ptes[i]), 1)
            p[0] = 0
            tlb_invalidate(&self.tlb, mm, vpns[i])

    def protect(self, int64_t mm, uint64_t lo, uint64_t hi, int64_t prot):
        """Rewrite the present PTEs of ``[lo, hi)`` for a new ``prot``."""
        cdef uint64_t[::1] vpns, ptes
        cdef int64_t i
        cdef pte_t *p
        cdef pte_t pte
        self._enter()
        vpns, ptes = self.ptes(mm, lo, hi)
        for i in range(vpns.shape[0]):
            pte = ptes[i]
            if not (pte & PTE_PRESENT):
                continue
            pte &= ~(PTE_READABLE | PTE_EXECUTABLE)
            pte |= prot_bits(prot)
            if not (prot & PROT_WRITE):
                pte &= ~(PTE_WRITABLE | PTE_COW)
            elif pte & PTE_SHARED:
                pte |= PTE_WRITABLE
            elif not (pte & (PTE_ZERO | PTE_WRITABLE)):
                pte |= PTE_COW
            p = pt_walk(&self.pt, mm, vpns[i], False)
            p[0] = pte
            tlb_invalidate(&self.tlb, mm, vpns[i])

    def tlb_flush(self, int64_t mm):
        self._enter()
        tlb_flush(&self.tlb, mm)

    # ------------------------------------------------------------------
    # shared objects and images

    def obj_new(self, int64_t npages, int64_t base_vpn):
        """A shared memory object of ``npages`` pages mapped at ``base_vpn``: its
        id. It costs memory for the pages it comes to hold, not for its size."""
        cdef int64_t obj
        self._enter()
        if npages < 0:
            raise ValueError(f"a shared object of {npages} pages")
        if self.obj_free:
            obj = heapq.heappop(self.obj_free)
        else:
            if self.obj_next == self.obj_cap:
                self._grow_obj(2 * self.obj_cap)
            obj = self.obj_next
            self.obj_next += 1
        objmap_init(&self.omap[obj], npages)
        self.obj_base[obj] = base_vpn
        self.obj_live[obj] = 1
        return obj

    def obj_items(self, int64_t obj):
        """``(pages, values)``: the pages object ``obj`` holds (ascending) and
        where each is (a pfn, or -(slot + 2) for a swap slot)."""
        cdef cnp.ndarray pages, values
        cdef int64_t n
        if not 0 <= obj < self.obj_next or not self.obj_live[obj]:
            raise ValueError(f"no shared object {obj}")
        n = objmap_collect(&self.omap[obj], NULL, NULL)
        pages = np.empty(n, np.int64)
        values = np.empty(n, np.int64)
        if n:
            objmap_collect(&self.omap[obj], <int64_t *>cnp.PyArray_DATA(pages),
                           <int64_t *>cnp.PyArray_DATA(values))
        return pages, values

    def obj_ids(self):
        """The ids of the shared objects in use."""
        return [obj for obj in range(self.obj_next) if self.obj_live[obj]]

    def obj_release(self, int64_t obj):
        """The last mapping of ``obj`` is gone: free its frames and slots, and
        its id for reuse."""
        cdef int64_t v
        self._enter()
        pages, values = self.obj_items(obj)
        for v in values.tolist():
            if v >= 0:
                self._free_frame(v)
            elif v <= -2:
                slot_put(self, -v - 2, 1)
        objmap_clear(&self.omap[obj])
        self.obj_live[obj] = 0
        heapq.heappush(self.obj_free, obj)

    def image_new(self, file_vpns, file_pages):
        """Register an exec image's file pages for file mappings: ``file_vpns``
        (sorted page numbers) and ``file_pages`` (their contents, one row of
        page_size bytes each; both are kept, read only). Returns its id (a
        released id is reused)."""
        cdef int64_t img
        self._enter()
        if self.img_free:
            img = self.img_free[0]
        else:
            img = len(self.images)
            if img == self.img_cap:
                self._grow_img(2 * self.img_cap)
        self._image_put(img, file_vpns, file_pages)      # (checks them first)
        if self.img_free:
            heapq.heappop(self.img_free)
        return img

    cdef int _image_put(self, int64_t img, file_vpns, file_pages) except -1:
        """Check an image's pages and make them image ``img``'s."""
        cdef cnp.ndarray vpns = np.ascontiguousarray(file_vpns, np.uint64)
        cdef cnp.ndarray pages = np.ascontiguousarray(file_pages, np.uint8)
        cdef int64_t n = vpns.shape[0] if vpns.ndim == 1 else -1
        if n < 0 or pages.ndim != 2 or pages.shape[0] != n or (
                n and pages.shape[1] != self.page_size):
            raise ValueError("an image's pages: a vector of page numbers and one row of "
                             "page_size bytes per page")
        if n > 1 and not bool(np.all(vpns[1:] > vpns[:n - 1])):
            raise ValueError("an image's page numbers must be sorted and distinct")
        while len(self.images) <= img:
            self.images.append(None)
        self.images[img] = (vpns, pages)
        self.img_vpns[img] = <uint64_t *>cnp.PyArray_DATA(vpns)
        self.img_pages[img] = <uint8_t *>cnp.PyArray_DATA(pages)
        self.img_n[img] = n
        return 0

    def image_release(self, int64_t img):
        """No file mapping uses image ``img`` any more: let its pages go."""
        self._enter()
        if not 0 <= img < len(self.images) or self.images[img] is None:
            raise ValueError(f"no image {img}")
        self.images[img] = None
        self.img_vpns[img] = NULL
        self.img_pages[img] = NULL
        self.img_n[img] = 0
        heapq.heappush(self.img_free, img)

    # ------------------------------------------------------------------
    # introspection and housekeeping


    @property
    def hand(self):
        """The pfn under the policy's hand, or -1 for a policy without one."""
        return self.pol.hand(self)


    @property
    def frames_free(self):
        return self.pool.count + self.dirty.count

    @property
    def swap_free(self):
        return self.free_slots.count

    def idle(self, object n):
        """Zero dirty free frames into the pool, lowest pfn first."""
        cdef int64_t done = 0, pfn
        cdef int64_t ndirty = self.dirty.count
        cdef int64_t limit = ndirty if n is None else min(<int64_t>n, ndirty)
        self._enter()
        if self.zero_pool_target >= 0:
            limit = min(limit, max(self.zero_pool_target - <int64_t>self.pool.count, 0))
        while done < limit:
            pfn = freeheap_pop(&self.dirty, self.fm)
            if not self.fm[pfn].czero:
                page_zero(&self.mem[pfn, 0], self.page_size)
            self.fm[pfn].czero = 1
            self.fm[pfn].pool = 1
            freeheap_push(&self.pool, self.fm, <int32_t>pfn)
            done += 1
        return done


cdef tuple _events_copy(Core self):
    """``events_snapshot`` for a caller that holds the machine."""
    from pymmu.events import DTYPE

    cdef int64_t i, n, first
    n = self.ev.n
    if DTYPE.itemsize != sizeof(event_t):
        raise SystemError("pymmu.events.DTYPE does not match pymmu/include/events.h")
    rows = np.empty(n, DTYPE)
    cdef char *out = <char *>cnp.PyArray_DATA(rows)
    if n:
        # kept events are buf[head:] then buf[:head] (a full ring), else buf[:n]
        first = n - self.ev.head if self.ev.limit >= 0 else n
        memcpy(out, &self.ev.buf[self.ev.head], first * sizeof(event_t))
        if first < n:
            memcpy(out + first * sizeof(event_t), self.ev.buf,
                   (n - first) * sizeof(event_t))
    return rows, [self.ev.counts[i] for i in range(EV_KINDS)], self.ev.dropped


cdef tuple _events_close(Core self):
    """``events_stop`` for a caller that holds the machine."""
    cdef _EventBuffer owner
    cdef int64_t i, n
    cdef event_t *buf
    n = self.ev.n
    if n == 0 or self.ev.head != 0:
        out = _events_copy(self)
    else:
        from pymmu.events import DTYPE

        buf = <event_t *>realloc(self.ev.buf, n * sizeof(event_t))   # (shrink: no copy)
        if buf == NULL:
            buf = self.ev.buf
        owner = _EventBuffer.__new__(_EventBuffer)
        owner.p, owner.nbytes = <char *>buf, n * sizeof(event_t)
        self.ev.buf, self.ev.cap = NULL, 0
        out = (np.frombuffer(owner, dtype=DTYPE, count=n),
               [self.ev.counts[i] for i in range(EV_KINDS)], self.ev.dropped)
    self.ev.on = 0
    self.ev.n = 0
    return out


@cython.final
@cython.auto_pickle(False)      # (its pointer must never come from a pickle)
cdef class _EventBuffer:
    """A closed event log's buffer, handed to the numpy array of its rows (which
    keeps it alive through the buffer protocol; freed with the last view).
    Not picklable: the rows array pickles as numpy data instead."""
    cdef char *p
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t shape[1]

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.shape[0] = self.nbytes
        view.buf = self.p
        view.obj = self
        view.len = self.nbytes
        view.readonly = 0
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        view.ndim = 1
        view.shape = self.shape
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        free(self.p)



# Core.replay's loop in two forms (replay_loop): for a policy unit with an on_use
# and for one without. The types are tags only.
ctypedef struct unit_uses_t:
    char tag
ctypedef struct unit_ignores_t:
    char tag
ctypedef fused uses_kind:
    unit_uses_t
    unit_ignores_t


cdef int replay_loop(Core self, uses_kind *uses, int64_t mm, const uint64_t[::1] addr,
                     const uint8_t[::1] kind, const uint32_t[::1] size, int64_t *index,
                     bint poll) except -1 nogil:
    """``Core.replay``'s loop: run trace records in order; each page a record touches is an
    independent reference (no pinning). Stops at the first record that
    faults or runs out of memory, with ``index`` set to it.

    With ``poll`` (the main thread), it looks for a pending signal every
    ``POLL_REFS`` page references, between two records: if a handler
    raises (KeyboardInterrupt), it stops before the record, ``index`` set
    to it, the records before it applied, and returns -1 with that
    exception set.

    The common cases are handled inline, through the same operations as
    ``_touch`` (``tlb_lookup``, ``pt_walk_cached``, ``tlb_fill``, set A/D,
    the policy unit's ``on_use``) with the hit and miss counts in
    registers: a TLB hit on a page that allows the access, and a TLB miss
    whose walk the page-walk cache answers with such a page.

    Under memory pressure (no free frame) most records fault, and a fault
    waits on loads from all over memory: the PTE, then the swap slot it
    names. The loop pipelines them: it starts loading the PTE of the record
    ``PF_PTE`` ahead, and the swap slot of the record ``PF_SLOT`` ahead
    (whose PTE is in cache by then).

    It is compiled twice (``uses``, a fused type whose pointer is only a tag):
    for a policy unit that wants every reference (``on_use``, and ``ahead``)
    and for one that does not, whose hit step then makes no call at all (a
    call site in the loop, even one never taken, cost 4-6 % in
    benchmarks/ab.py).
    """
    cdef Py_ssize_t i, n = addr.shape[0]
    cdef int64_t pfn, length, t
    cdef uint64_t a, vpn, last
    cdef int acc, st, need
    cdef uint8_t code
    cdef int64_t *vma = NULL
    cdef uint64_t vstart = 1, vend = 0     # the cached mapping: [vstart, vend)
    cdef int vprot = 0
    cdef pte_t *p
    cdef pte_t bits
    # The policy's operations on a resident page's reference and ahead of one
    # (policy_ops_t), fixed for the loop: called only in its unit_uses_t form.
    cdef policy_use_f use = self.pol.on_use
    cdef policy_ahead_f ahead = self.pol.ahead
    cdef pte_t *q
    cdef pte_t *tp
    cdef pte_t *walked
    # Counters of the inline paths stay in registers until the loop ends:
    # TLB hits and misses, then reads, writes and fetches (by access kind).
    cdef int64_t hits = 0, misses = 0
    cdef int64_t done[3]
    # The fields the inline paths read, as locals: a store through a PTE
    # pointer could alias any field of self, so the compiler would reload them.
    cdef int shift = self.page_shift
    cdef int64_t tn = self.tlb.n
    cdef tlb_t tlb = self.tlb             # (its arrays are shared, not copied)
    cdef int64_t zero_pfn = self.zero_pfn
    # Page references are counted down in a register, `left` before the
    # next look for a signal (Ctrl-C; never off the main thread): the count
    # so far is `mark - left`. The test of the countdown uses the flags of
    # its subtraction, and an interrupt leaves by the loop's normal exit
    # (a return of its own, with its tally, cost 2-4 % in benchmarks/ab.py):
    # the look costs nothing measurable per record.
    cdef int64_t left = POLL_REFS if poll else INT64_MAX - self.references
    cdef int64_t mark = self.references + left
    cdef bint interrupted = False
    done[0] = done[1] = done[2] = 0
    for i in range(n):
        if self.pool.count + self.dirty.count == 0 and i + PF_PTE < n:
            q = pt_walk_cached(&self.pt, mm, addr[i + PF_PTE] >> shift)
            if q != NULL:
                prefetch(q)
            q = pt_walk_cached(&self.pt, mm, addr[i + PF_SLOT] >> shift)
            if q != NULL and pte_is_swap(q[0]):
                prefetch(&self.sl[pte_pfn(q[0])])
        if uses_kind is unit_uses_t:
            if ahead != NULL:
                ahead(self, mark - left + 1 + PF_PTE)   # (the reference PF_PTE ahead)
        a = addr[i]
        code = kind[i]                     # each column read once
        length = size[i]
        if code > 3 or length == 0:        # never trust the columns
            index[0] = i
            self.references = mark - left
            self._tally(hits, misses, done)
            return ST_BAD_RECORD
        acc = kind_access(code)
        need = access_need(acc)
        vpn = a >> shift
        last = (a + <uint64_t>(length - 1)) >> shift
        if last < vpn or vpn < vstart or last >= vend or not (vprot & need):
            st = self._check(mm, a, length, acc)
            if st != ST_OK:
                index[0] = i
                self.references = mark - left
                self._tally(hits, misses, done)
                return st
            vma = self._vma(mm, vpn)
            vstart, vend, vprot = vma[V_START], vma[V_END], vma[V_PROT]
            if last >= vend:             # spans mappings: look each page up
                vstart, vend = 1, 0
        bits = PTE_ACCESSED | (PTE_DIRTY if acc == ACC_WRITE else 0)
        left -= <int64_t>(last - vpn) + 1   # the record's page references
        if unlikely(left <= 0):
            left += POLL_REFS
            mark += POLL_REFS
            if signal_raised():            # Ctrl-C: stop before this record
                left += <int64_t>(last - vpn) + 1
                interrupted = True
                break
        while vpn <= last:
            p = walked = NULL
            if tn:
                t = tlb_slot(&tlb, vpn)
                q = tlb_lookup(&tlb, t, mm, vpn)
                if q != NULL:
                    if pte_allows(q[0], acc):
                        p = q
                        hits += 1
                else:
                    q = pt_walk_cached(&self.pt, mm, vpn)
                    if q != NULL and pte_allows(q[0], acc):
                        p = q
                        misses += 1
                        tlb_fill(&tlb, t, mm, vpn, q)
                    else:
                        walked = q      # a fault on a PTE we already found
            if p != NULL:
                p[0] |= bits
                pfn = pte_pfn(p[0])
                if uses_kind is unit_uses_t:
                    if pfn != zero_pfn:
                        use(self, pfn, mark - left - <int64_t>(last - vpn))
            else:
                self.fault_addr = a if vpn == a >> shift else vpn << shift
                self.fault_kind = acc
                if vend == 0:
                    vma = self._vma(mm, vpn)
                self.references = mark - left - <int64_t>(last - vpn)   # events' seq
                if walked != NULL:
                    misses += 1
                    st = self._settle(mm, vpn, acc, vma, walked, t, &tp)
                else:
                    st = self._touch(mm, vpn, acc, vma, &tp)   # (p stays in a register)
                if st != ST_OK:
                    index[0] = i
                    self._tally(hits, misses, done)
                    return st
            vpn += 1
        done[acc] += 1
        if unlikely(self.hook_failed):  # a policy hook raised: stop after this record
            index[0] = i
            self.references = mark - left
            self._tally(hits, misses, done)
            return ST_HOOK_LATE
    self.references = mark - left
    self._tally(hits, misses, done)
    if interrupted:
        index[0] = i
        return -1
    return ST_OK


def _restore_core(tuple config, dict state):
    """A core in the state ``Core.__reduce__`` saved (pickle's constructor, by
    this name): ``pymmu._snapshot.restore``, which checks it before use."""
    from pymmu._snapshot import restore

    return restore(config, state)


cdef class ProcessCore:
    """The per-call hot path of ``pymmu.Process``: ``read``, ``fetch``, ``write``.

    ``machine.Process`` subclasses this and owns everything else. The fast path
    here handles the common case (int arguments in range, a running process);
    anything else goes to the subclass's ``_read_slow`` / ``_write_slow``, which
    check arguments and state and raise the right error, so there is one set of
    rules.
    """

    # (fields: declared in _core.pxd)

    def __init__(self, Core core, int64_t pid, int64_t mm, bint strict):
        self._c = core
        self.pid = pid
        self._mm = mm
        self._active = True
        self._borrowing = False
        self._strict = strict
        self._top = (<uint64_t>1) << core.va_bits
        self._stats = np.zeros(S_COUNT, np.int64)
        self._ps = <int64_t *>cnp.PyArray_DATA(self._stats)

    def __reduce__(self):
        """A snapshot of the process brings its machine (``Core`` and all)."""
        self._c._enter()
        return (_restore_process,
                (type(self), self._c, self.pid, self._mm, self._strict, self._active,
                 self._borrowing, self._stats),
                getattr(self, "__dict__", None))

    def __copy__(self):
        raise TypeError("a shallow copy of a process would share its machine's state: "
                        "use copy.deepcopy or pickle")

    def _serves(self, Core core):
        """Whether this process runs on ``core`` (a restored machine's check)."""
        return self._c is core

    cdef object _read(self, object addr, object n, int kind):
        cdef uint64_t a
        cdef int64_t length
        cdef Core c = self._c
        if not self._active or type(addr) is not int or type(n) is not int:
            return None
        c._enter()
        try:
            a = addr
            length = n
        except OverflowError:
            return None
        if length <= 0 or a >= self._top or <uint64_t>length > self._top:
            return None
        out = c._read_bytes(self._mm, self.pid, a, length, kind, self._ps)
        c._hook_check()
        return out

    def read(self, addr, n):
        """Read ``n`` bytes at ``addr`` (a read access); returns bytes.

        Raises ``SegmentationFault`` or ``ProtectionFault`` (with ``.addr``,
        ``.access`` and ``.pid``), ``OutOfMemory``, or ``ProcessStateError``; a
        failed read changes no byte.
        """
        out = self._read(addr, n, ACC_READ)
        return self._read_slow(addr, n, "read") if out is None else out

    def fetch(self, addr, n):
        """Fetch ``n`` bytes at ``addr`` as instructions (an execute access)."""
        out = self._read(addr, n, ACC_EXEC)
        return self._read_slow(addr, n, "execute") if out is None else out

    def write(self, addr, data):
        """Write ``data`` (bytes, bytearray, memoryview, numpy array...) at ``addr``.

        A write by a vfork child lands in the parent's memory and counts
        ``vfork_child_writes``; with ``Machine(strict_vfork=True)`` it raises
        ``ProcessStateError`` and writes nothing.
        """
        cdef uint64_t a
        cdef Py_ssize_t length
        cdef Core c = self._c
        if (not self._active or type(addr) is not int or type(data) is not bytes
                or (self._borrowing and self._strict)):
            return self._write_slow(addr, data)
        c._enter()
        try:
            a = addr
        except OverflowError:
            return self._write_slow(addr, data)
        length = PyBytes_GET_SIZE(data)
        if length == 0 or a >= self._top:
            return self._write_slow(addr, data)
        c._write_bytes(self._mm, self.pid, a, length,
                       <const uint8_t *>PyBytes_AS_STRING(data), self._ps)
        self._wrote()
        c._hook_check()

    # ---- the C-level API (pymmu/core.pxd): no GIL, statuses instead of exceptions

    cdef int _io(self, uint64_t addr, uint8_t *buf, int64_t n, int kind) noexcept nogil:
        """One read, fetch or write of ``n`` bytes, as the Python calls do it
        (checks, faults, counters, events), holding the machine's busy flag."""
        cdef int st
        if n <= 0:
            return ST_OK
        if self._c.in_hook or not hold_take(&self._c.hold):
            return ST_BUSY
        # (the process's state is read in the hold: another thread's exit or
        # vfork changes it only while holding the machine)
        if not self._active or (kind == ACC_WRITE and self._borrowing and self._strict):
            hold_give(&self._c.hold)
            return ST_STATE
        if addr >= self._top:
            self._c.fault_addr = addr
            self._c.fault_kind = kind
            st = ST_SEGV
        else:
            st = self._c._check(self._mm, addr, n, kind)
            if st == ST_OK:
                st = self._c._access_for(self._mm, self.pid, addr, n, kind, buf, self._ps)
        if st != ST_OK:
            self._c._refusal_event(st, self.pid)
        elif self._c.hook_failed:
            st = ST_HOOK                  # done; a policy hook raised meanwhile
        if (st == ST_OK or self._c.hook_failed) and kind == ACC_WRITE and self._borrowing:
            stat_add_to(self._c, self._ps, S_VFORK_CHILD_WRITES, 1)
        hold_give(&self._c.hold)
        return st

    cdef int read_into(self, uint64_t addr, uint8_t *buf, int64_t n) noexcept nogil:
        """Read ``n`` bytes at ``addr`` into ``buf``: ``p.read(addr, n)`` without
        the GIL. Returns a status (PYMMU_OK, or one for ``raise_status``)."""
        return self._io(addr, buf, n, ACC_READ)

    cdef int fetch_into(self, uint64_t addr, uint8_t *buf, int64_t n) noexcept nogil:
        """``p.fetch(addr, n)`` (an execute access) into ``buf``, without the GIL."""
        return self._io(addr, buf, n, ACC_EXEC)

    cdef int write_from(self, uint64_t addr, const uint8_t *buf, int64_t n) noexcept nogil:
        """``p.write(addr, buf[:n])`` without the GIL."""
        return self._io(addr, <uint8_t *>buf, n, ACC_WRITE)

    cdef int64_t translate(self, uint64_t addr) noexcept nogil:
        """The physical address of ``addr``, or -1 when not present (never faults)."""
        cdef pte_t *p
        if addr >= self._top or not hold_take(&self._c.hold):
            return -1
        p = NULL
        if self._c._live(self._mm):     # (checked in the hold: an exit may be under way)
            p = pt_walk(&self._c.pt, self._mm, addr >> self._c.page_shift, False)
        hold_give(&self._c.hold)
        if p == NULL or not (p[0] & PTE_PRESENT):
            return -1
        return <int64_t>((pte_pfn(p[0]) << self._c.page_shift)
                         | (addr & <uint64_t>(self._c.page_size - 1)))

    cdef int raise_status(self, int st) except -1:
        """Raise the exception the Python API raises for status ``st`` (nothing
        for PYMMU_OK)."""
        if st != ST_OK:
            self._c._status_error(st, self.pid)
        return 0

    cdef void _wrote(self) noexcept:
        """Count a completed write by a vfork child (it lands in its parent)."""
        if self._borrowing:
            stat_add_to(self._c, self._ps, S_VFORK_CHILD_WRITES, 1)

    def _write_buffer(self, uint64_t addr, object data):
        """Write a bytes-like object whose checks the caller did."""
        self._c.write(self._mm, self.pid, addr, data, self._stats)
        self._wrote()
        self._c._hook_check()


def _restore_process(cls, Core core, int64_t pid, int64_t mm, bint strict, bint active,
                     bint borrowing, stats):
    """A process as ``ProcessCore.__reduce__`` saved it (pickle's constructor)."""
    cdef ProcessCore p = cls.__new__(cls)
    if mm != 0 and not core._live(mm):
        raise ValueError(f"snapshot: a process's address space {mm} is not in its machine")
    ProcessCore.__init__(p, core, pid, mm, strict)
    if (not isinstance(stats, np.ndarray) or stats.dtype != np.int64
            or stats.shape != (S_COUNT,) or not stats.flags.c_contiguous):
        raise ValueError("snapshot: process counters have the wrong shape")
    p._active = active
    p._borrowing = borrowing
    p._stats = stats
    p._ps = <int64_t *>cnp.PyArray_DATA(stats)
    return p

