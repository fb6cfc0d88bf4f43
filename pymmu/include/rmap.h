/* rmap.h: the reverse map (DESIGN.md section 6), one unit: from a frame to every
 * PTE that maps it, for eviction, clock's second chance and check().
 *
 * Object-based, like Linux's anon_vma rather than a list per frame: a frame in use
 * holds one word, (family << vpn_bits) | vpn (frame_t.rmap, frame.h). A family is
 * an address space and every space forked from it (named after its first member);
 * a private page is mapped only at one vpn, so the PTEs that map a frame are among
 * its family members' PTEs at that vpn. A shared-object page's word names the
 * family of the space that made the object and the object's vpn there, and every
 * mapper maps it at that vpn (the core keeps it so).
 *
 * The unit owns the families: which family each space is in, and each family's
 * members as a doubly linked list (pymmu's address spaces are numbered from 1, 0
 * ends a list), so that a space leaves in O(1): with a singly linked list, a
 * parent's N forked children exiting in fork order each sat at its far end
 * (rmap_join puts the newest first), and their exits were quadratic. It reads the
 * page tables (pgtable.h) and drops stale TLB entries (tlb.h).
 */
#ifndef PYMMU_RMAP_H
#define PYMMU_RMAP_H

#include <stdint.h>
#include <stdlib.h>

#include "pymmu/include/pte.h"
#include "pymmu/include/pgtable.h"
#include "pymmu/include/tlb.h"

/* rmap_walk's operations */
#define RMAP_COUNT 0        /* count the PTEs that map the frame                     */
#define RMAP_YOUNG 1        /* clear their ACCESSED bits; count those that had it    */
#define RMAP_REPLACE 2      /* overwrite them (with a swap entry, or 0); count them  */

typedef struct {
    int vpn_bits;           /* a word is (family << vpn_bits) | vpn                  */
    int64_t cap;            /* address-space ids with room                           */
    int64_t *family;        /* per space: its family; -1 destroyed, -2 its id is
                               offered for reuse (the core's mm_free)                */
    int64_t *next;          /* per space: the next member of its family, 0: last     */
    int64_t *prev;          /* per space: the previous member, 0: first (the head's);
                               not in snapshots: rmap_relink derives it from next    */
    int64_t *head;          /* per family name: its first member, 0: none            */
} rmap_t;

static inline void rmap_init(rmap_t *r, int vpn_bits) {
    r->vpn_bits = vpn_bits;
    r->cap = 0;
    r->family = r->next = r->prev = r->head = NULL;
}

/* Room for spaces 0 .. cap-1 (each new one destroyed, heading no family): 0, or
 * -1 if memory ran out (then the room is as before). */
static inline int rmap_grow(rmap_t *r, int64_t cap) {
    int64_t *p, i;
    if (cap <= r->cap) return 0;
    p = (int64_t *)realloc(r->family, (size_t)cap * sizeof(int64_t));
    if (p == NULL) return -1;
    r->family = p;
    p = (int64_t *)realloc(r->next, (size_t)cap * sizeof(int64_t));
    if (p == NULL) return -1;
    r->next = p;
    p = (int64_t *)realloc(r->prev, (size_t)cap * sizeof(int64_t));
    if (p == NULL) return -1;
    r->prev = p;
    p = (int64_t *)realloc(r->head, (size_t)cap * sizeof(int64_t));
    if (p == NULL) return -1;
    r->head = p;
    for (i = r->cap; i < cap; i++) {
        r->family[i] = -1;
        r->next[i] = 0;
        r->prev[i] = 0;
        r->head[i] = 0;
    }
    r->cap = cap;
    return 0;
}

static inline void rmap_free(rmap_t *r) {
    free(r->family);
    free(r->next);
    free(r->prev);
    free(r->head);
    r->family = r->next = r->prev = r->head = NULL;
    r->cap = 0;
}

/* The word of a page at vpn of `family`. */
static inline uint64_t rmap_word(const rmap_t *r, int64_t family, uint64_t vpn) {
    return ((uint64_t)family << r->vpn_bits) | vpn;
}

static inline int64_t rmap_family(const rmap_t *r, uint64_t word) {
    return (int64_t)(word >> r->vpn_bits);
}

static inline uint64_t rmap_vpn(const rmap_t *r, uint64_t word) {
    return word & (((uint64_t)1 << r->vpn_bits) - 1);
}

/* Space mm joins `family` (its own id for a new family), first in its list. */
static inline void rmap_join(rmap_t *r, int64_t mm, int64_t family) {
    int64_t first = r->head[family];
    r->family[mm] = family;
    r->next[mm] = first;
    r->prev[mm] = 0;
    if (first) r->prev[first] = mm;
    r->head[family] = mm;
}

/* Space mm leaves its family (it is destroyed: family -1), in O(1). */
static inline void rmap_leave(rmap_t *r, int64_t mm) {
    int64_t fam = r->family[mm], before = r->prev[mm], after = r->next[mm];
    if (before) r->next[before] = after;
    else r->head[fam] = after;
    if (after) r->prev[after] = before;
    r->next[mm] = r->prev[mm] = 0;
    r->family[mm] = -1;
}

/* Set every prev link from the families' heads and next links (a snapshot
 * keeps only those), for spaces 0 .. n-1. A list that leaves the range, visits
 * a space twice or names a space of another family is left as far as it is
 * sound and returns -1: the caller refuses it (check_restored says why). */
static inline int rmap_relink(rmap_t *r, int64_t n) {
    int64_t fam, cur, before, steps, bad = 0;
    for (cur = 0; cur < n; cur++) r->prev[cur] = -1;     /* -1: not reached yet */
    for (fam = 0; fam < n; fam++) {
        before = 0;
        steps = 0;
        for (cur = r->head[fam]; cur; cur = r->next[cur]) {
            if (cur < 0 || cur >= n || r->prev[cur] != -1 || r->family[cur] != fam
                    || ++steps > n) {
                bad = 1;
                break;
            }
            r->prev[cur] = before;
            before = cur;
            if (r->next[cur] < 0 || r->next[cur] >= n) {
                bad = 1;
                break;
            }
        }
    }
    for (cur = 0; cur < n; cur++)
        if (r->prev[cur] == -1) r->prev[cur] = 0;         /* in no list */
    return bad ? -1 : 0;
}

/* Visit every PTE that maps frame `pfn`, whose word is `word`, and do `op` (arg:
 * RMAP_REPLACE's new value); returns the count op says. A PTE changed drops its
 * TLB entry: hardware sets A only when it loads a translation, so a PTE with A
 * clear has no entry. With `mm_pid`, *owner becomes the lowest pid (by mm_pid)
 * of the spaces whose PTE RMAP_REPLACE overwrote, or -1 (for victims' events). */
static inline int64_t rmap_walk(const rmap_t *r, pgtable_t *pt, tlb_t *tlb, int64_t pfn,
                                uint64_t word, int op, pte_t arg, const int64_t *mm_pid,
                                int64_t *owner) {
    uint64_t vpn = rmap_vpn(r, word);
    int64_t mm = r->head[rmap_family(r, word)], n = 0, pid;
    pte_t *p;
    if (owner != NULL) *owner = -1;
    for (; mm; mm = r->next[mm]) {
        p = pt_walk(pt, mm, vpn, 0);
        if (p == NULL || !(*p & PTE_PRESENT) || pte_pfn(*p) != (uint64_t)pfn) continue;
        if (op == RMAP_COUNT) {
            n++;
        } else if (op == RMAP_YOUNG) {
            if (*p & PTE_ACCESSED) {
                *p &= ~PTE_ACCESSED;
                tlb_invalidate(tlb, mm, vpn);
                n++;
            }
        } else {
            if (mm_pid != NULL) {
                pid = mm_pid[mm];
                if (*owner < 0 || (0 <= pid && pid < *owner)) *owner = pid;
            }
            *p = arg;
            tlb_invalidate(tlb, mm, vpn);
            n++;
        }
    }
    return n;
}

/* Whether any PTE that maps frame `pfn` (word `word`) has `bit` set. */
static inline int rmap_any(const rmap_t *r, pgtable_t *pt, int64_t pfn, uint64_t word,
                           pte_t bit) {
    uint64_t vpn = rmap_vpn(r, word);
    int64_t mm;
    pte_t *p;
    for (mm = r->head[rmap_family(r, word)]; mm; mm = r->next[mm]) {
        p = pt_walk(pt, mm, vpn, 0);
        if (p != NULL && (*p & PTE_PRESENT) && pte_pfn(*p) == (uint64_t)pfn && (*p & bit))
            return 1;
    }
    return 0;
}

/* Start loading the PTE through which rmap_walk would first find a frame whose
 * word is `word` (when the page-walk cache knows its table). */
static inline void rmap_prefetch(const rmap_t *r, const pgtable_t *pt, uint64_t word) {
    int64_t mm = r->head[rmap_family(r, word)];
    pte_t *q;
    if (!mm) return;
    q = pt_walk_cached(pt, mm, rmap_vpn(r, word));
    if (q != NULL) __builtin_prefetch(q);
}

#endif
