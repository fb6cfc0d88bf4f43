/* tlb.h: the software TLB (DESIGN.md section 3), one unit: a direct-mapped cache
 * of translations tagged (address space, virtual page), holding the address of the
 * PTE it caches. An entry whose mm is 0 is empty (address space 0 is never used).
 * Every change that makes a translation stale drops its entry (tlb_invalidate) or
 * the whole space's (tlb_flush). */
#ifndef PYMMU_TLB_H
#define PYMMU_TLB_H

#include <stdint.h>
#include <stdlib.h>

/* One entry: a lookup reads one cache line, through one base pointer. */
typedef struct {
    int64_t mm;             /* the address space tag, 0 when empty             */
    uint64_t vpn;           /* the virtual page tag                            */
    uint64_t *pte;          /* the address of the cached PTE                   */
} tlb_entry_t;

typedef struct {
    int64_t n;              /* entries; 0: no TLB is modelled                  */
    uint64_t mask;          /* n - 1 when n is a power of two above 1, else 0  */
    tlb_entry_t *e;         /* the entries                                     */
} tlb_t;

/* An empty TLB of n entries: 0, or -1 if memory ran out. */
static inline int tlb_init(tlb_t *t, int64_t n) {
    t->n = n;
    t->mask = (n > 1 && !(n & (n - 1))) ? (uint64_t)(n - 1) : 0;
    t->e = NULL;
    if (n <= 0) return 0;
    t->e = (tlb_entry_t *)calloc((size_t)n, sizeof(tlb_entry_t));
    return t->e ? 0 : -1;
}

static inline void tlb_free(tlb_t *t) {
    free(t->e);
    t->e = NULL;
}

/* The entry vpn goes to: vpn mod n (a mask for a power of two). */
static inline int64_t tlb_slot(const tlb_t *t, uint64_t vpn) {
    return t->mask ? (int64_t)(vpn & t->mask) : (int64_t)(vpn % (uint64_t)t->n);
}

/* Look (mm, vpn) up in its entry i (tlb_slot): the address of the PTE it caches,
 * or NULL on a miss (then tlb_fill puts it in entry i). Every path that models
 * the TLB (Core._touch, the replay loop, m.run's fast path) looks up here. Hot
 * loops pass a copy of the tlb_t in a local, so that a store through a PTE
 * pointer does not make the compiler reload its fields. */
static inline uint64_t *tlb_lookup(const tlb_t *t, int64_t i, int64_t mm, uint64_t vpn) {
    const tlb_entry_t *x = &t->e[i];
    return (x->mm == mm && x->vpn == vpn) ? x->pte : NULL;
}

/* Remember that (mm, vpn) translates through the PTE at pte, in entry i. */
static inline void tlb_fill(tlb_t *t, int64_t i, int64_t mm, uint64_t vpn, uint64_t *pte) {
    t->e[i].mm = mm;
    t->e[i].vpn = vpn;
    t->e[i].pte = pte;
}

/* Drop the entry of (mm, vpn), if it is cached. */
static inline void tlb_invalidate(tlb_t *t, int64_t mm, uint64_t vpn) {
    int64_t i;
    if (!t->n) return;
    i = tlb_slot(t, vpn);
    if (t->e[i].mm == mm && t->e[i].vpn == vpn) t->e[i].mm = 0;
}

/* Drop every entry of address space mm. */
static inline void tlb_flush(tlb_t *t, int64_t mm) {
    int64_t i;
    for (i = 0; i < t->n; i++)
        if (t->e[i].mm == mm) t->e[i].mm = 0;
}

#endif
