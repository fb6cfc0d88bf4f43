# Cython view of the core's C units (pymmu/include/*.h): nothing here but extern blocks.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "pymmu/include/pte.h" nogil:
    ctypedef uint64_t pte_t
    pte_t PTE_PRESENT
    pte_t PTE_WRITABLE
    pte_t PTE_USER
    pte_t PTE_READABLE
    pte_t PTE_EXECUTABLE
    pte_t PTE_ACCESSED
    pte_t PTE_DIRTY
    pte_t PTE_SWAP
    pte_t PTE_COW
    pte_t PTE_ZERO
    pte_t PTE_SHARED
    int PTE_PFN_SHIFT
    pte_t PTE_PERM_MASK
    uint64_t pte_pfn(pte_t pte)
    pte_t pte_with_pfn(pte_t flags, uint64_t pfn)
    int pte_present(pte_t pte)
    int pte_is_swap(pte_t pte)
    pte_t pte_make_swap(uint64_t slot)
    void page_zero(uint8_t *page, size_t size)
    void page_copy(uint8_t *dst, const uint8_t *src, size_t size)
    int page_is_zero(const uint8_t *page, size_t size)

cdef extern from "pymmu/include/frame.h" nogil:
    ctypedef struct frame_heap_t:
        int32_t child
        int32_t sibling
    ctypedef struct frame_t:          # bitfields: refcnt 27 bits, state 2, flags 1 each
        uint32_t refcnt
        uint32_t state
        uint32_t czero
        uint32_t pool
        uint32_t pinned
        int32_t link
        uint64_t rmap                 # in use (a union with heap)
        frame_heap_t heap             # free
    ctypedef struct freeheap_t:
        int32_t root
        uint64_t count
    int32_t freeheap_pop(freeheap_t *h, frame_t *fm)
    void freeheap_push(freeheap_t *h, frame_t *fm, int32_t i)
    void freeheap_init_range(freeheap_t *h, frame_t *fm, int32_t first, int32_t last)
    uint32_t FRAME_REF_MAX
    void prefetch(const void *p)
    bint unlikely(bint x)
    ctypedef struct slot_t:
        int32_t count
        int32_t cache
        uint8_t zero

cdef extern from "pymmu/include/hold.h" nogil:
    ctypedef struct hold_t:
        int busy
        int depth
        unsigned long holder
    bint hold_take(hold_t *h)
    void hold_give(hold_t *h)
    bint hold_elsewhere(hold_t *h)
    bint hold_mine(hold_t *h)

cdef extern from "pymmu/include/lowset.h" nogil:
    ctypedef struct lowset_t:
        uint64_t nwords[6]             # words per level
        int levels                     # 0 until lowset_init
        uint64_t n                     # capacity: members are 0..n-1
        uint64_t count                 # members present
    int lowset_init(lowset_t *s, uint64_t n)
    void lowset_free(lowset_t *s)
    int lowset_has(const lowset_t *s, uint64_t i)
    void lowset_add(lowset_t *s, uint64_t i)
    void lowset_remove(lowset_t *s, uint64_t i)
    int64_t lowset_min(const lowset_t *s)
    int64_t lowset_pop(lowset_t *s)
    int64_t lowset_next(const lowset_t *s, uint64_t i)
    const uint64_t *lowset_word(const lowset_t *s, uint64_t i)

cdef extern from "pymmu/include/events.h" nogil:
    ctypedef struct event_t:
        int64_t seq
        int64_t t_ns
        int64_t pid
        uint64_t vaddr
        int64_t pfn
        int64_t slot
        uint8_t kind
    ctypedef struct evlog_t:
        int on                         # recording: a block is open
        event_t *buf
        int64_t cap
        int64_t n                      # kept entries
        int64_t head
        int64_t limit
        int64_t dropped
        int64_t counts[12]
    int EV_KINDS
    void evlog_start(evlog_t *l, int64_t limit)
    int evlog_push(evlog_t *l, const event_t *e)
    const event_t *evlog_at(const evlog_t *l, int64_t i)

cdef extern from "pymmu/include/tlb.h" nogil:
    ctypedef struct tlb_entry_t:
        int64_t mm                     # the address space tag, 0 when empty
        uint64_t vpn                   # the virtual page tag
        pte_t *pte                     # the address of the cached PTE
    ctypedef struct tlb_t:
        int64_t n                      # entries; 0: no TLB is modelled
        uint64_t mask                  # n - 1 for a power of two above 1, else 0
        tlb_entry_t *e                 # the entries
    int tlb_init(tlb_t *t, int64_t n)
    void tlb_free(tlb_t *t)
    int64_t tlb_slot(const tlb_t *t, uint64_t vpn)
    pte_t *tlb_lookup(const tlb_t *t, int64_t i, int64_t mm, uint64_t vpn)
    void tlb_fill(tlb_t *t, int64_t i, int64_t mm, uint64_t vpn, pte_t *pte)
    void tlb_invalidate(tlb_t *t, int64_t mm, uint64_t vpn)
    void tlb_flush(tlb_t *t, int64_t mm)


cdef extern from "pymmu/include/objmap.h" nogil:
    ctypedef struct objmap_t:
        int64_t npages                 # pages the object spans
        int levels
        int64_t held                   # pages whose value is not -1
    void objmap_init(objmap_t *m, int64_t npages)
    int64_t objmap_get(const objmap_t *m, int64_t page)
    int objmap_reserve(objmap_t *m, int64_t page)
    int objmap_set(objmap_t *m, int64_t page, int64_t value)
    int64_t objmap_collect(const objmap_t *m, int64_t *pages, int64_t *values)
    void objmap_clear(objmap_t *m)


cdef extern from "pymmu/include/wset.h" nogil:
    ctypedef struct wset_t:
        int64_t window                 # references remembered
        int64_t distinct               # the working-set size
        int64_t rcap                   # ring entries allocated (grow by doubling)
        uint64_t mask                  # table slots - 1 (grow by doubling)
    int wset_init(wset_t *w, int64_t window)
    void wset_free(wset_t *w)
    int wset_reserve(wset_t *w)        # memory for the next add: 0, or -1
    int wset_add(wset_t *w, uint64_t vpn)   # -1: no memory (without a reserve)


cdef extern from "pymmu/include/ckdint.h" nogil:
    # C23's ckd_add/ckd_mul on int64: 0 and the exact result in r, or 1 when it
    # does not fit (m.run's clock: user costs must not wrap it)
    bint ckd_add_i64(int64_t *r, int64_t a, int64_t b)
    bint ckd_mul_i64(int64_t *r, int64_t a, int64_t b)


cdef extern from "pymmu/include/pgtable.h" nogil:
    int PT_MAX_LEVELS
    ctypedef struct pt_made_t:        # the tables one allocating walk made
        uint64_t *top
        uint64_t *at
        int level
    ctypedef struct pgtable_t:
        int bits                       # index bits per level
        int levels                     # levels of every tree
        uint64_t mask                  # (1 << bits) - 1
        int64_t nodes                  # tables allocated, every space's
        int64_t cap                    # address-space ids with room for a root
        uint64_t **root                # per address space: its top table, or NULL
        pt_made_t made                 # what the last allocating pt_walk made
    int64_t pt_fail_after
    void pt_init(pgtable_t *t, int bits, int levels)
    int pt_grow(pgtable_t *t, int64_t cap)
    void pt_free(pgtable_t *t)
    uint64_t *pt_new_node(pgtable_t *t)
    void pt_free_tree(pgtable_t *t, uint64_t *node, int level)
    pte_t *pt_walk_cached(const pgtable_t *t, int64_t mm, uint64_t vpn)
    pte_t *pt_walk(pgtable_t *t, int64_t mm, uint64_t vpn, int alloc)
    void pt_unmake(pgtable_t *t, int64_t mm, uint64_t vpn, pt_made_t made)
    void pt_destroy(pgtable_t *t, int64_t mm)
    int pt_clone_shape(pgtable_t *t, const uint64_t *src, uint64_t *dst, int level)
    int64_t pt_collect(const pgtable_t *t, int64_t mm, uint64_t lo, uint64_t hi,
                       uint64_t *vpns, uint64_t *ptes)


cdef extern from "pymmu/include/rmap.h" nogil:
    int RMAP_COUNT                     # rmap_walk's operations
    int RMAP_YOUNG
    int RMAP_REPLACE
    ctypedef struct rmap_t:
        int vpn_bits                   # a frame's word is (family << vpn_bits) | vpn
        int64_t cap                    # address-space ids with room
        int64_t *family                # per space: its family; -1 destroyed, -2 offered
        int64_t *next                  # per space: the next member of its family, 0: last
        int64_t *prev                  # per space: the previous member, 0: first
        int64_t *head                  # per family name: its first member, 0: none
    void rmap_init(rmap_t *r, int vpn_bits)
    int rmap_grow(rmap_t *r, int64_t cap)
    void rmap_free(rmap_t *r)
    uint64_t rmap_word(const rmap_t *r, int64_t family, uint64_t vpn)
    int64_t rmap_family(const rmap_t *r, uint64_t word)
    uint64_t rmap_vpn(const rmap_t *r, uint64_t word)
    void rmap_join(rmap_t *r, int64_t mm, int64_t family)
    void rmap_leave(rmap_t *r, int64_t mm)
    int rmap_relink(rmap_t *r, int64_t n)
    int64_t rmap_walk(const rmap_t *r, pgtable_t *pt, tlb_t *tlb, int64_t pfn, uint64_t word,
                      int op, pte_t arg, const int64_t *mm_pid, int64_t *owner)
    bint rmap_any(const rmap_t *r, pgtable_t *pt, int64_t pfn, uint64_t word, pte_t bit)
    void rmap_prefetch(const rmap_t *r, const pgtable_t *pt, uint64_t word)
