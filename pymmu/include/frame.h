/* frame.h: what the core keeps per frame and per swap slot.
 *
 * Per frame, 16 bytes, the budget of DESIGN.md section 9: one cache line holds
 * four frames, and a fault touches one line per frame it handles. Policy state
 * lives beside it, only for its policy: fifo/lru list links, and opt's next use
 * only while a replay runs.
 */
#ifndef PYMMU_FRAME_H
#define PYMMU_FRAME_H

#include <stdint.h>

#define FRAME_REF_BITS 27
#define FRAME_REF_MAX  ((1u << FRAME_REF_BITS) - 1)

typedef struct {
    int32_t child;          /* first child, or -1  */
    int32_t sibling;        /* next sibling, or -1 */
} frame_heap_t;

typedef struct {
    uint32_t refcnt : FRAME_REF_BITS; /* PTEs mapping it (the zero page counts apart) */
    uint32_t state  : 2;    /* F_FREE, F_ANON, F_FILE or F_SHMEM (_core.pxd)     */
    uint32_t czero  : 1;    /* content known to be all zero (the bytes really are) */
    uint32_t pool   : 1;    /* free and in the pre-zeroed pool                     */
    uint32_t pinned : 1;    /* touched by the access in progress: never a victim   */
    int32_t  link;          /* F_ANON: the swap slot it caches, or -1;
                               F_SHMEM: its object id; otherwise -1               */
    union {
        uint64_t rmap;      /* in use: the reverse map, (fork family << vpn bits)
                               | vpn, the virtual page every mapper maps it at    */
        frame_heap_t heap;  /* free: its links in the free heap it is in         */
    };
} frame_t;

_Static_assert(sizeof(frame_t) == 16, "a frame's record is 16 bytes (DESIGN.md 9)");

/* A set of free frames that hands out the lowest pfn first (the pre-zeroed pool,
 * the dirty free frames): a pairing heap threaded through the free frames' own
 * records, so that free sets cost no memory beyond the 16 bytes. Push is O(1),
 * pop O(log n) amortised; a frame freed and reallocated at once (a fault under
 * pressure) costs O(1) both ways. */
typedef struct {
    int32_t root;           /* lowest pfn, or -1 when empty */
    uint64_t count;
} freeheap_t;

static inline int32_t freeheap_meld(frame_t *fm, int32_t a, int32_t b) {
    int32_t t;
    if (a < 0) return b;
    if (b < 0) return a;
    if (b < a) { t = a; a = b; b = t; }
    fm[b].heap.sibling = fm[a].heap.child;   /* b becomes a's first child */
    fm[a].heap.child = b;
    return a;
}

/* The heap of frames first..last-1, built as a chain (each the child of the one
 * before): popping them in order costs O(1) each. */
static inline void freeheap_init_range(freeheap_t *h, frame_t *fm, int32_t first,
                                       int32_t last) {
    int32_t i;
    for (i = first; i < last; i++) {
        fm[i].heap.child = i + 1 < last ? i + 1 : -1;
        fm[i].heap.sibling = -1;
    }
    h->root = first < last ? first : -1;
    h->count = first < last ? (uint64_t)(last - first) : 0;
}

static inline void freeheap_push(freeheap_t *h, frame_t *fm, int32_t i) {
    fm[i].heap.child = -1;
    fm[i].heap.sibling = -1;
    h->root = freeheap_meld(fm, h->root, i);
    h->count++;
}

/* Remove and return the lowest pfn (the heap must not be empty): the root's
 * children are melded in pairs left to right, then the pairs right to left. */
static inline int32_t freeheap_pop(freeheap_t *h, frame_t *fm) {
    int32_t top = h->root, c = fm[top].heap.child, a, b, next, r, pairs = -1, acc = -1;
    while (c >= 0) {
        a = c;
        b = fm[a].heap.sibling;
        next = b >= 0 ? fm[b].heap.sibling : -1;
        fm[a].heap.sibling = -1;
        if (b >= 0) fm[b].heap.sibling = -1;
        r = freeheap_meld(fm, a, b);
        fm[r].heap.sibling = pairs;           /* a stack of the melded pairs */
        pairs = r;
        c = next;
    }
    while (pairs >= 0) {
        next = fm[pairs].heap.sibling;
        fm[pairs].heap.sibling = -1;
        acc = freeheap_meld(fm, acc, pairs);
        pairs = next;
    }
    h->root = acc;
    h->count--;
    return top;
}

/* Per swap slot. */
typedef struct {
    int32_t count;          /* swap PTEs and object pages naming the slot */
    int32_t cache;          /* the frame caching its content, or -1        */
    uint8_t zero;           /* content is all zero: the bytes are stale and never
                               read (a swap-in zeroes the frame instead)   */
} slot_t;

/* Ask the CPU to start loading the line at ``p``: for the dependent loads of a
 * later step (a PTE several trace records ahead, the frame the clock hand meets
 * next). Never faults, whatever ``p`` is. */
static inline void prefetch(const void *p) { __builtin_prefetch(p); }

/* A branch the hot paths almost never take (event recording, Python hooks):
 * laid out of the way of the common case. */
static inline int unlikely(int x) { return __builtin_expect(!!x, 0); }

#endif
