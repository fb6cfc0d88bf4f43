# The contract of the typed core: constants and the Core's C-level state.
# The Pythonic layer (machine.py) owns processes and mappings; the Core owns
# frames, page tables, the TLB, swap, reclaim and every fault path.
cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, uintptr_t
from pymmu._pte cimport *
# Policies, counters, event kinds, mapping kinds and columns, access kinds,
# protection bits: their codes are generated from pymmu/tables.py, the one source
# of their names.
from pymmu._tables cimport *

# Status codes: every core routine returns one; _raise_status turns it into an
# exception in exactly one place.
cdef enum:
    ST_OK = 0
    ST_SEGV = 1             # no mapping, or beyond va_bits
    ST_PROT = 2             # the mapping's prot forbids the access
    ST_OOM = 3              # no frame could be freed
    ST_OPT = 4              # opt policy asked to choose without knowing the future
    ST_NOT_FILE = 5         # internal: a file mapping's page holds no file bytes (bss)
    ST_BAD_RECORD = 6       # a replayed trace record has a kind code over 3 or size 0
    ST_HOOK = 7             # a Python policy's victim() raised or returned a bad pfn
    ST_HOOK_LATE = 8        # a later policy hook raised during a replay record
    ST_BUSY = 9             # the machine is busy (a replay, another C API call, a hook)
    ST_STATE = 10           # the process is not running (or a strict vfork child writes)
    ST_NOMEM = 11           # the C heap ran out (a page-table node): nothing changed

cdef inline int kind_access(uint8_t code) noexcept nogil:
    """The access of a trace record's kind code (traces.FETCH, LOAD, STORE,
    MODIFY: lackey's M is one write), for a code known to be at most 3."""
    return ACC_EXEC if code == 0 else ACC_READ if code == 1 else ACC_WRITE


cdef inline int access_need(int kind) noexcept nogil:
    """The prot bit access ``kind`` needs (PROT_READ, PROT_WRITE, PROT_EXEC):
    ``1 << kind``, as pymmu/tables.py defines them."""
    return 1 << kind


cdef inline int access_stat(int kind) noexcept nogil:
    """The counter of access ``kind`` (reads, writes, fetches: tables.COUNTERS)."""
    return S_READS + kind


cdef inline bint pte_allows(pte_t pte, int kind) noexcept nogil:
    """Whether a PTE lets access ``kind`` through without a fault (shared by the
    core's paths and m.run's scheduler, pymmu/_run.pyx)."""
    if not (pte & PTE_PRESENT):
        return False
    if kind == ACC_READ:
        return (pte & PTE_READABLE) != 0
    if kind == ACC_WRITE:
        return (pte & PTE_WRITABLE) != 0
    return (pte & PTE_EXECUTABLE) != 0


# Frame states.
cdef enum:
    F_FREE = 0
    F_ANON = 1              # private anonymous (or a written private file page)
    F_FILE = 2              # clean page read from an exec image: drop, don't swap
    F_SHMEM = 3             # owned by a shared memory object

# Ctrl-C in the long loops (replay's, m.run's), which run without the GIL: on the
# main thread (the only one Python runs signal handlers in) they look for a
# pending signal every POLL_REFS page references, at a record or reference
# boundary (a counter compare per record; the GIL is taken only then, some
# hundred times a second at full speed), and stop there if a handler raised.
cdef enum:
    POLL_REFS = 1 << 18

cdef extern from *:
    """
    /* Run Python's pending signal handlers, taking the GIL meanwhile: 1 when one
     * raised (KeyboardInterrupt for Ctrl-C), its exception then set, for the
     * caller to stop where it stands (the machine consistent) and return -1.
     * Out of line and cold, so that the loops that call it keep their
     * registers: they do once per POLL_REFS references. */
    static __attribute__((noinline, cold, unused)) int pymmu_signal_raised(void) {
        PyGILState_STATE gil = PyGILState_Ensure();
        int raised = PyErr_CheckSignals() != 0;
        PyGILState_Release(gil);
        return raised;
    }
    """
    bint signal_raised "pymmu_signal_raised" () nogil


cdef inline bint on_main_thread():
    """Python runs signal handlers on the main thread only: the long loops look
    for a pending one (``signal_raised``) there alone."""
    import threading
    return threading.get_ident() == threading.main_thread().ident


cdef enum:
    PF_PTE = 16           # replay prefetch distances (records ahead): PTEs,
    PF_SLOT = 8           # then the swap slots they name
    PF_CLOCK = 8          # clock: frames ahead of the hand whose PTE to prefetch


cdef class Core


# The replacement-policy interface: one unit per policy, pymmu/policies/<name>.pxi
# (docs/architecture.md), registered by the generated pymmu/policies/_units.pxi.
# Like numpy.random's bitgen_t, a unit is its operations and a state of its own:
# the Core holds both (``pol``, ``pstate``) and calls nothing else of a policy.
# ``ref`` is the reference's number (``m.references`` counting it).
ctypedef void (*policy_use_f)(Core c, int64_t pfn, int64_t ref) noexcept nogil
ctypedef void (*policy_ahead_f)(Core c, int64_t ref) noexcept nogil

ctypedef struct policy_ops_t:
    int (*init)(Core c) except -1               # make the state (c.pstate), with the GIL
    void (*free)(Core c) noexcept               # release it (also after a failed init)
    void (*on_map)(Core c, int64_t pfn) noexcept nogil       # a frame was given a page
    policy_use_f on_use
    #   a reference to a resident frame (not the zero page); NULL: not wanted
    void (*on_unmap)(Core c, int64_t pfn) noexcept nogil     # freed or evicted
    int64_t (*victim)(Core c) noexcept nogil    # the frame to evict, or a VICTIM_* code
    int (*begin)(Core c, const int64_t *next_use, int64_t n) except -1
    #   a replay that knows the future starts (next use of each of its n page
    #   references: Trace.next_use); NULL: the policy does not use it
    void (*end)(Core c) noexcept                # that replay ended
    policy_ahead_f ahead
    #   prefetch hint: reference ``ref`` comes soon (replay only); NULL: none
    object (*state)(Core c)                     # snapshot: {key: value} of its state
    int (*restore)(Core c, dict state) except -1   # load a snapshot's (ValueError)
    object (*check)(Core c)                     # its first broken invariant, or None
    object (*nbytes)(Core c)                    # (per frame, per frame and per page
    #   reference during a replay that knows the future) in bytes
    int64_t (*hand)(Core c) noexcept            # the pfn under its hand, or -1

# What a victim operation returns when it names no frame (and _alloc_frame then).
cdef enum:
    VICTIM_NONE = -1        # nothing can be evicted (ST_OOM)
    VICTIM_FAILED = -2      # a Python policy's victim() failed (ST_HOOK)
    VICTIM_BLIND = -3       # the policy needs a future it was not given (ST_OPT)


# The core: one machine's frames, page tables, TLB and swap (pymmu/_core.pyx has
# the methods; the fields and C methods are declared here so that other Cython
# modules, pymmu.core first, can call them directly).
@cython.final
cdef class Core:

    # geometry
    cdef readonly int64_t page_size, frames, swap_slots, va_bits
    cdef readonly int page_shift, levels, bits
    cdef uint64_t max_vpn
    cdef int policy                   # its code (tables.POLICY_CODES)
    cdef const policy_ops_t *pol      # its unit's operations (pymmu/policies/)
    cdef void *pstate                 # its unit's state (the unit's init makes it)
    cdef int64_t zero_pool_target
    cdef bint zero_page_on
    cdef readonly uint64_t seed       # the machine's seed (the random policy's)
    # physical memory: frames + 1 rows, the last is the zero page
    cdef readonly object mem_array
    cdef uint8_t[:, ::1] mem
    cdef int64_t zero_pfn
    cdef frame_t *fm                  # per frame (pymmu/include/frame.h); fm[zero_pfn] too
    cdef int64_t zero_refs            # PTEs mapping the zero page (unbounded)
    cdef readonly int64_t mm_limit    # address spaces a machine can create
    cdef freeheap_t pool              # free frames, pre-zeroed (lowest pfn first)
    cdef freeheap_t dirty             # free frames not zeroed yet
    # swap device
    cdef readonly object swap_array
    cdef uint8_t[:, ::1] swapmem
    cdef slot_t *sl                   # per slot (pymmu/include/frame.h)
    cdef lowset_t free_slots          # unused swap slots (lowest first)
    # address spaces
    cdef int64_t mm_cap               # address-space ids allocated
    cdef readonly int64_t mm_next     # the next new id (1 + the highest made)
    cdef list mm_free                 # destroyed ids offered for reuse (a heap: lowest first)
    cdef pgtable_t pt                 # page tables + page-walk cache (include/pgtable.h)
    cdef rmap_t rm                    # fork families: the reverse map (include/rmap.h)
    cdef int64_t *vma_rows            # per mm: pointer to its VMA table (as int)
    cdef int64_t *vma_count
    cdef list vma_keep
    # shared memory objects and exec images
    cdef objmap_t *omap               # object id -> where its pages are (include/objmap.h)
    cdef int64_t *obj_base            # id -> base vpn (all mappers use base + page)
    cdef uint8_t *obj_live            # id -> in use (a released id is reused)
    cdef int64_t obj_cap, obj_next    # ids allocated, ids ever handed out
    cdef list obj_free                # released ids (a heap: the lowest is reused first)
    cdef list images                  # image id -> (file_vpns, file_pages) kept alive, or None
    cdef uint64_t **img_vpns          # id -> sorted page numbers that hold file bytes
    cdef uint8_t **img_pages          # id -> their contents, page_size bytes each
    cdef int64_t *img_n               # id -> how many
    cdef int64_t img_cap              # ids allocated
    cdef list img_free                # released ids (a heap: the lowest is reused first)
    # TLB: direct-mapped, tagged (mm, vpn), caching the PTE's address
    cdef tlb_t tlb                    # the TLB (include/tlb.h)
    # counters and the last fault
    cdef readonly object stats_array
    cdef int64_t[::1] stats
    cdef int64_t *ps                  # counters of the process being served
    cdef int64_t scratch[S_COUNT]     # where ps points between calls
    cdef public uint64_t fault_addr
    cdef public int fault_kind
    cdef int64_t *pins
    cdef int64_t pin_n, pin_cap
    cdef hold_t hold                  # which thread may use the machine now (include/hold.h)
    cdef readonly int64_t references  # page references started, machine-wide (events' seq)
    cdef int64_t cur_pid              # the process making the current access
    cdef int64_t now_ns               # simulated time inside m.run (events' t_ns), else 0
    cdef int64_t *mm_pid              # per address space: the pid it was made for
    cdef evlog_t ev                   # the event log (pymmu/include/events.h)
    cdef int64_t rmap_owner           # lowest pid an RMAP_REPLACE pass met (events)
    cdef object pypolicy              # P_PYTHON: the pymmu.Policy (else None)
    cdef bint py_hooks                # ... it is set: call its hooks
    cdef bint py_access               # ... and it wants on_access
    cdef readonly int in_hook         # a Python policy hook runs: refuse re-entry
    cdef object victim_error          # why victim() failed (raised as ST_HOOK)
    cdef object hook_error            # the first exception of a later hook ...
    cdef bint hook_failed             # ... when this is set (nogil code clears it)

    cdef void _grow_mm(self, int64_t cap) except *
    cdef inline bint _live(self, int64_t mm) noexcept nogil
    cdef void _reusable(self, int64_t mm) except *
    cdef void _fork_fill(self, uint64_t *src, uint64_t *dst, int level) noexcept
    cdef void _free_frame(self, int64_t pfn) noexcept nogil
    cdef inline void _get_frame(self, int64_t pfn) noexcept nogil
    cdef inline void _put_frame(self, int64_t pfn) noexcept nogil
    cdef int64_t _alloc_frame(self, bint zeroed) except -9 nogil
    cdef void _copy_page(self, int64_t dst, int64_t src) noexcept nogil
    cdef void _own(self, int64_t pfn, int state, int64_t mm, uint64_t vpn) noexcept nogil
    cdef inline int64_t _rmap(self, int64_t pfn, int op, pte_t arg) noexcept nogil
    cdef bint _evictable(self, int64_t pfn) noexcept nogil
    cdef int _hook_check(self) except -1
    cdef bint _rmap_bits(self, int64_t pfn, pte_t bit) noexcept nogil
    cdef int _reclaim(self) except -1 nogil
    cdef int _evict(self, int64_t pfn) except -1 nogil
    cdef void _shmem_set(self, int64_t obj, int64_t vpn, int64_t value) noexcept nogil
    cdef inline int64_t *_vma(self, int64_t mm, uint64_t vpn) noexcept nogil
    cdef int _fault(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                    pte_t *p) except -1 nogil
    cdef int _do_wp_page(self, int64_t mm, uint64_t vpn, int64_t *vma,
                         pte_t *p) except -1 nogil
    cdef int _do_swap_page(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                           pte_t *p) except -1 nogil
    cdef int _do_anonymous_page(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                                pte_t *p) except -1 nogil
    cdef int _do_shared_page(self, int64_t mm, uint64_t vpn, int64_t *vma,
                             pte_t *p) except -1 nogil
    cdef int _do_file_page(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                           pte_t *p) except -1 nogil
    cdef void _own_shmem(self, int64_t pfn, int64_t obj, int64_t page, int64_t mm,
                         uint64_t vpn) noexcept nogil
    cdef void _grow_obj(self, int64_t cap) except *
    cdef void _grow_img(self, int64_t cap) except *
    cdef int _image_put(self, int64_t img, file_vpns, file_pages) except -1
    cdef int _touch(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma,
                    pte_t **out) except -1 nogil
    cdef int _settle(self, int64_t mm, uint64_t vpn, int kind, int64_t *vma, pte_t *p,
                     int64_t i, pte_t **out) except -1 nogil
    cdef int _check(self, int64_t mm, uint64_t addr, int64_t n, int kind) except -1 nogil
    cdef int _access(self, int64_t mm, uint64_t addr, int64_t n, int kind,
                     uint8_t *buf) except -1 nogil
    cdef int _access_for(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n, int kind,
                         uint8_t *buf, int64_t *ps) noexcept nogil
    cdef inline void _move(self, int64_t pfn, int64_t off, uint8_t *buf, int64_t n,
                           int kind) noexcept nogil
    cdef int _reserve_pins(self, int64_t n) except -1 nogil
    cdef object _raise_status(self, int st, int64_t pid)
    cdef inline int _enter(self) except -1
    cdef int _take_hold(self) except -1
    cdef inline int64_t *_counters(self, cnp.ndarray ps) except NULL
    cdef int _access_or_raise(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n,
                              int kind, uint8_t *buf, int64_t *ps) except -1
    cdef bytes _read_bytes(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n,
                           int kind, int64_t *ps)
    cdef int _write_bytes(self, int64_t mm, int64_t pid, uint64_t addr, int64_t n,
                          const uint8_t *buf, int64_t *ps) except -1
    cdef void _tally(self, int64_t hits, int64_t misses, int64_t *done) noexcept nogil
    cdef void _refusal_event(self, int st, int64_t pid) noexcept nogil
    cdef object _status_error(self, int st, int64_t pid)


# The per-call hot path of pymmu.Process, and the C-level API (pymmu/core.pxd).
cdef class ProcessCore:
    cdef Core _c
    cdef public int64_t _mm            # address space (0 once released)
    cdef public int64_t pid
    cdef public bint _active           # state == "running"
    cdef public bint _borrowing        # a vfork child using its parent's space
    cdef bint _strict                  # the machine refuses vfork child writes
    cdef uint64_t _top                 # 2**va_bits
    cdef readonly object _stats        # int64[S_COUNT] counters of this process
    cdef int64_t *_ps

    cdef object _read(self, object addr, object n, int kind)
    cdef void _wrote(self) noexcept
    cdef int _io(self, uint64_t addr, uint8_t *buf, int64_t n, int kind) noexcept nogil
    # the C API: statuses ST_* (PYMMU_* in pymmu/core.pxd)
    cdef int read_into(self, uint64_t addr, uint8_t *buf, int64_t n) noexcept nogil
    cdef int fetch_into(self, uint64_t addr, uint8_t *buf, int64_t n) noexcept nogil
    cdef int write_from(self, uint64_t addr, const uint8_t *buf, int64_t n) noexcept nogil
    cdef int64_t translate(self, uint64_t addr) noexcept nogil
    cdef int raise_status(self, int st) except -1


# The calls of the policy interface the fault paths and the loops make (_core and
# _run): the same operation wherever a reference or a mapping happens.
cdef inline void policy_use(Core c, int64_t pfn, int64_t ref) noexcept nogil:
    """A reference (number ``ref``) to resident frame ``pfn``, not the zero page."""
    if c.pol.on_use != NULL:
        c.pol.on_use(c, pfn, ref)
