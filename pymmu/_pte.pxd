# Cython view of pymmu/include/pte.h, pymmu/include/frame.h and pymmu/include/lowset.h: nothing here but extern blocks.
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
    bint busy_acquire(int *flag)
    void busy_release(int *flag)
    ctypedef struct slot_t:
        int32_t count
        int32_t cache
        uint8_t zero

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
    ctypedef struct tlb_t:
        int64_t n                      # entries; 0: no TLB is modelled
        uint64_t mask                  # n - 1 for a power of two above 1, else 0
        int64_t *mm                    # per entry: the address space tag, 0 when empty
        uint64_t *vpn                  # per entry: the virtual page tag
        pte_t **pte                    # per entry: the address of the cached PTE
    int tlb_init(tlb_t *t, int64_t n)
    void tlb_free(tlb_t *t)
    int64_t tlb_slot(const tlb_t *t, uint64_t vpn)
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
    int wset_init(wset_t *w, int64_t window)
    void wset_free(wset_t *w)
    void wset_add(wset_t *w, uint64_t vpn)
