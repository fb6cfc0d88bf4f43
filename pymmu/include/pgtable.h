/* pgtable.h: the page tables and the page-walk cache (DESIGN.md section 3), one unit.
 *
 * Each address space (mm, numbered from 1) has a radix tree of `levels` levels
 * over its virtual page numbers, `bits` index bits per level. A node is a calloc'd
 * block of 2**bits 64-bit entries outside the user frames: an inner entry holds
 * the child node's address (0: none), a leaf entry a PTE (pte.h). A space's root
 * exists from its creation to pt_destroy.
 *
 * The page-walk cache, like a CPU's paging-structure cache, remembers the leaf
 * table of recent (mm, vpn >> bits). A leaf table lives until its space is
 * destroyed, or until pt_unmake takes back the tables a failed fault made: both
 * drop its cache entry, so an entry never points at freed memory.
 *
 * Allocation reports failure: an allocating walk that runs out of memory returns
 * NULL and adds no table. What the PTEs mean (COW, swap entries, refcounts) is
 * the core's business; this unit only stores them.
 */
#ifndef PYMMU_PGTABLE_H
#define PYMMU_PGTABLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PT_MAX_LEVELS 16        /* pt_new_chain's bound (pages >= 512 B need <= 7) */
#define PWC_N 1024              /* page-walk cache entries (a power of two)        */

/* The tables one allocating walk made: the top one (NULL: none), the entry it is
 * linked at (NULL: it is the root) and its level. */
typedef struct {
    uint64_t *top;
    uint64_t *at;
    int level;
} pt_made_t;

/* A page-walk cache entry: the leaf table of (mm, hi = vpn >> bits); mm 0: empty.
 * One entry per probe's cache line. */
typedef struct {
    int64_t mm;
    uint64_t hi;
    uint64_t *leaf;
} pwc_entry_t;

typedef struct {
    int bits;                   /* index bits per level                           */
    int levels;                 /* levels of every tree                           */
    uint64_t mask;              /* (1 << bits) - 1                                */
    int64_t nodes;              /* tables allocated, every space's                */
    int64_t cap;                /* address-space ids with room for a root         */
    uint64_t **root;            /* per address space: its top table, or NULL      */
    pt_made_t made;             /* what the last allocating pt_walk made          */
    int64_t *fail_after;        /* testing: pt_fail_after of the module that made it */
    pwc_entry_t pwc[PWC_N];     /* the page-walk cache                            */
} pgtable_t;

/* Testing: when positive, the pt_fail_after-th node allocation from now fails
 * (pymmu._core._fail_node_allocation), to check that every caller rolls back.
 * Each extension module has its own copy of this static: page tables keep a
 * pointer to the copy of the module whose pt_init made them (pymmu._core's for
 * every Core), so allocations made from another module count there too. */
static int64_t pt_fail_after = 0;

/* Empty tables for trees of `levels` levels of `bits` bits; no address space yet. */
static inline void pt_init(pgtable_t *t, int bits, int levels) {
    memset(t, 0, sizeof(*t));
    t->bits = bits;
    t->levels = levels;
    t->mask = ((uint64_t)1 << bits) - 1;
    t->fail_after = &pt_fail_after;
}

/* Room for address spaces 0 .. cap-1 (new ones have no root): 0, or -1 if memory
 * ran out (then nothing changed). */
static inline int pt_grow(pgtable_t *t, int64_t cap) {
    uint64_t **r;
    int64_t i;
    if (cap <= t->cap) return 0;
    r = (uint64_t **)realloc(t->root, (size_t)cap * sizeof(uint64_t *));
    if (r == NULL) return -1;
    for (i = t->cap; i < cap; i++) r[i] = NULL;
    t->root = r;
    t->cap = cap;
    return 0;
}

/* An empty node, or NULL if memory ran out. */
static inline uint64_t *pt_new_node(pgtable_t *t) {
    uint64_t *n;
    if (*t->fail_after > 0 && --*t->fail_after == 0) return NULL;
    n = (uint64_t *)calloc((size_t)1 << t->bits, sizeof(uint64_t));
    if (n != NULL) t->nodes++;
    return n;
}

/* Free `node`, at `level`, and every table below it. */
static inline void pt_free_tree(pgtable_t *t, uint64_t *node, int level) {
    int64_t i, n = (int64_t)1 << t->bits;
    if (level < t->levels - 1)
        for (i = 0; i < n; i++)
            if (node[i]) pt_free_tree(t, (uint64_t *)(uintptr_t)node[i], level + 1);
    free(node);
    t->nodes--;
}

/* Free every tree and the roots' array. */
static inline void pt_free(pgtable_t *t) {
    int64_t mm;
    for (mm = 0; mm < t->cap; mm++)
        if (t->root[mm]) pt_free_tree(t, t->root[mm], 0);
    free(t->root);
    t->root = NULL;
    t->cap = 0;
}

/* The index of vpn's entry in its table at `level`. */
static inline uint64_t pt_index(const pgtable_t *t, uint64_t vpn, int level) {
    return (vpn >> (t->bits * (t->levels - 1 - level))) & t->mask;
}

/* The page-walk cache entry of leaf table `hi` (vpn >> bits) of `mm`. */
static inline uint64_t pt_pwc_slot(int64_t mm, uint64_t hi) {
    return (hi ^ ((uint64_t)mm * (uint64_t)0x9E3779B97F4A7C15ULL)) & (PWC_N - 1);
}

/* The PTE address of vpn if the page-walk cache knows its leaf table, else NULL:
 * a probe without side effects, for prefetching. */
static inline uint64_t *pt_walk_cached(const pgtable_t *t, int64_t mm, uint64_t vpn) {
    uint64_t hi = vpn >> t->bits;
    const pwc_entry_t *e = &t->pwc[pt_pwc_slot(mm, hi)];
    if (e->mm == mm && e->hi == hi) return &e->leaf[vpn & t->mask];
    return NULL;
}

/* New tables for levels first .. leaf on vpn's path, each linked to the next: the
 * top one, or NULL (none made) if memory ran out. */
static inline uint64_t *pt_new_chain(pgtable_t *t, int first, uint64_t vpn) {
    uint64_t *made[PT_MAX_LEVELS];
    int i, n = t->levels - first;
    for (i = 0; i < n; i++) {
        made[i] = pt_new_node(t);
        if (made[i] == NULL) {
            while (i > 0) {
                free(made[--i]);
                t->nodes--;
            }
            return NULL;
        }
    }
    for (i = 0; i < n - 1; i++)
        made[i][pt_index(t, vpn, first + i)] = (uint64_t)(uintptr_t)made[i + 1];
    return made[0];
}

/* The address of vpn's PTE in space mm. Without `alloc`: NULL if a table on the
 * path is missing. With it: the missing tables are made (recorded in t->made, for
 * pt_unmake), or NULL if memory ran out, and then no table was added. */
static inline uint64_t *pt_walk(pgtable_t *t, int64_t mm, uint64_t vpn, int alloc) {
    uint64_t *node = t->root[mm];
    uint64_t *child;
    uint64_t idx, hi = vpn >> t->bits;
    pwc_entry_t *e;
    int level;
    uint64_t *p;
    if (alloc) t->made.top = NULL;          /* (before the cache: a hit made none) */
    p = pt_walk_cached(t, mm, vpn);
    if (p != NULL) return p;
    if (node == NULL) {
        if (!alloc) return NULL;
        node = pt_new_chain(t, 0, vpn);
        if (node == NULL) return NULL;
        t->root[mm] = node;
        t->made.top = node;
        t->made.at = NULL;
        t->made.level = 0;
    }
    for (level = 0; level < t->levels - 1; level++) {
        idx = pt_index(t, vpn, level);
        child = (uint64_t *)(uintptr_t)node[idx];
        if (child == NULL) {
            if (!alloc) return NULL;
            /* every table below is missing too: make them all, then link */
            child = pt_new_chain(t, level + 1, vpn);
            if (child == NULL) return NULL;
            node[idx] = (uint64_t)(uintptr_t)child;
            t->made.top = child;
            t->made.at = &node[idx];
            t->made.level = level + 1;
        }
        node = child;
    }
    e = &t->pwc[pt_pwc_slot(mm, hi)];
    e->mm = mm;
    e->hi = hi;
    e->leaf = node;
    return &node[vpn & t->mask];
}

/* Take back the tables an allocating walk for vpn made (`made`, a copy of t->made
 * taken right after it): a failed fault leaves none behind. */
static inline void pt_unmake(pgtable_t *t, int64_t mm, uint64_t vpn, pt_made_t made) {
    uint64_t hi = vpn >> t->bits;
    pwc_entry_t *e = &t->pwc[pt_pwc_slot(mm, hi)];
    if (made.top == NULL) return;
    if (made.at == NULL) t->root[mm] = NULL;
    else made.at[0] = 0;
    if (e->mm == mm && e->hi == hi) e->mm = 0;
    pt_free_tree(t, made.top, made.level);
}

/* Free space mm's tables and forget its page-walk cache entries. */
static inline void pt_destroy(pgtable_t *t, int64_t mm) {
    int64_t k;
    if (t->root[mm]) pt_free_tree(t, t->root[mm], 0);
    t->root[mm] = NULL;
    for (k = 0; k < PWC_N; k++)
        if (t->pwc[k].mm == mm) t->pwc[k].mm = 0;
}

/* Give `dst` (at `level`) an empty table wherever `src` has one, leaves excepted:
 * 0, or -1 if memory ran out (the tables made so far stay linked, for pt_destroy). */
static inline int pt_clone_shape(pgtable_t *t, const uint64_t *src, uint64_t *dst, int level) {
    int64_t i, n = (int64_t)1 << t->bits;
    uint64_t *child;
    if (level == t->levels - 1) return 0;
    for (i = 0; i < n; i++) {
        if (!src[i]) continue;
        child = pt_new_node(t);
        if (child == NULL) return -1;
        dst[i] = (uint64_t)(uintptr_t)child;
        if (pt_clone_shape(t, (const uint64_t *)(uintptr_t)src[i], child, level + 1))
            return -1;
    }
    return 0;
}

static inline int64_t pt_collect_node(const pgtable_t *t, const uint64_t *node, int level,
                               uint64_t base, uint64_t lo, uint64_t hi,
                               uint64_t *vpns, uint64_t *ptes, int64_t n) {
    int64_t i, count = (int64_t)1 << t->bits;
    int shift = t->bits * (t->levels - 1 - level);
    uint64_t first, span = (uint64_t)1 << shift;
    for (i = 0; i < count; i++) {
        if (!node[i]) continue;
        first = base + ((uint64_t)i << shift);
        if (first >= hi || first + span <= lo) continue;
        if (level == t->levels - 1) {
            if (vpns != NULL) vpns[n] = first;
            if (ptes != NULL) ptes[n] = node[i];
            n++;
        } else {
            n = pt_collect_node(t, (const uint64_t *)(uintptr_t)node[i], level + 1, first,
                                lo, hi, vpns, ptes, n);
        }
    }
    return n;
}

/* How many nonzero PTEs space mm has in [lo, hi); into the arrays given (either
 * may be NULL), their vpns and values, in vpn order. */
static inline int64_t pt_collect(const pgtable_t *t, int64_t mm, uint64_t lo, uint64_t hi,
                                 uint64_t *vpns, uint64_t *ptes) {
    if (t->root[mm] == NULL) return 0;
    return pt_collect_node(t, t->root[mm], 0, 0, lo, hi, vpns, ptes, 0);
}

#endif
