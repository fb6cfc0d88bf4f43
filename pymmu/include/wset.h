/* wset.h: an exact working set (DESIGN.md section 12 rule 10), one unit: the
 * distinct pages among a process's last `window` page references. A ring holds
 * the last `window` page numbers; an open-addressing hash table (linear probing,
 * backward-shift deletion, no tombstones) counts each page's occurrences in the
 * ring, so adding a reference and dropping the oldest cost O(1) on average and
 * `distinct` is always the working-set size.
 *
 * Both grow by doubling as they fill, so memory follows the references made, not
 * the window: the ring holds at most min(window, references made) page numbers
 * and the table twice the distinct pages among them (m.run takes any window
 * below 2**63; a window longer than a job's references is all of them). Every
 * size is checked against SIZE_MAX before it is allocated.
 *
 * (A list of the pages by last reference would bound memory by the pages alone,
 * whatever the window; it cost m.run with load control 5-10 %: a trace changes
 * page at about every other reference, and moving a page to the newest end
 * chains each reference's stores to the next one's loads.)
 *
 * `wset_add` grows what it needs and fails (-1, nothing changed) only if memory
 * runs out; `wset_reserve` grows ahead of a reference, so that the `wset_add`
 * after it cannot fail (m.run's path through the fault handlers reserves before
 * the reference changes the machine). */
#ifndef PYMMU_WSET_H
#define PYMMU_WSET_H

#include <stdint.h>
#include <stdlib.h>

#define WSET_MIN 16         /* the first ring's entries and table's slots / 2 */

typedef struct {
    int64_t window;         /* references remembered; 0: not tracked            */
    int64_t pos;            /* where the next reference goes in the ring        */
    int64_t filled;         /* references in the ring (at most window)          */
    int64_t distinct;       /* pages with a nonzero count: the working-set size */
    int64_t rcap;           /* ring entries allocated (at most window)          */
    uint64_t *ring;         /* the last references' page numbers                */
    uint64_t *keys;         /* hash table: page number + 1, 0 when empty        */
    int64_t *counts;        /* ... its occurrences in the ring                  */
    uint64_t mask;          /* table size - 1 (a power of two)                  */
    int shift;              /* 64 - log2(table size): wset_home's               */
} wset_t;

static inline void wset_free(wset_t *w) {
    free(w->ring);
    free(w->keys);
    free(w->counts);
    w->ring = NULL;
    w->keys = NULL;
    w->counts = NULL;
    w->rcap = 0;
}

/* Page `vpn`'s home slot: Fibonacci hashing (one multiply; the high bits of
 * the product spread runs of neighbouring pages, a trace's usual pattern). */
static inline uint64_t wset_home(const wset_t *w, uint64_t vpn) {
    return (vpn * 0x9e3779b97f4a7c15ULL) >> w->shift;
}

/* The table slot holding page `vpn`, or the empty slot where it would go. */
static inline uint64_t wset_find(const wset_t *w, uint64_t vpn) {
    uint64_t i = wset_home(w, vpn);
    while (w->keys[i] && w->keys[i] != vpn + 1) i = (i + 1) & w->mask;
    return i;
}

/* A table of `size` slots (a power of two, more than now) holding the same
 * counts: 0, or -1 (nothing changed) if memory ran out or would not fit. */
static inline int wset_grow_table(wset_t *w, uint64_t size) {
    uint64_t *keys, *old_keys = w->keys, old_size = w->keys ? w->mask + 1 : 0, i, j;
    int64_t *counts, *old_counts = w->counts;
    if (size <= old_size || size > SIZE_MAX / sizeof(uint64_t)) return -1;
    keys = (uint64_t *)calloc((size_t)size, sizeof(uint64_t));
    counts = (int64_t *)calloc((size_t)size, sizeof(int64_t));
    if (keys == NULL || counts == NULL) {
        free(keys);
        free(counts);
        return -1;
    }
    w->keys = keys;
    w->counts = counts;
    w->mask = size - 1;
    w->shift = 64 - __builtin_ctzll(size);
    for (i = 0; i < old_size; i++) {
        if (!old_keys[i]) continue;
        j = wset_find(w, old_keys[i] - 1);
        keys[j] = old_keys[i];
        counts[j] = old_counts[i];
    }
    free(old_keys);
    free(old_counts);
    return 0;
}

/* An empty working set over `window` references (0: not tracked): 0, or -1 if
 * memory ran out (wset_free it all the same). */
static inline int wset_init(wset_t *w, int64_t window) {
    w->window = window > 0 ? window : 0;
    w->pos = w->filled = w->distinct = w->rcap = 0;
    w->ring = NULL;
    w->keys = NULL;
    w->counts = NULL;
    w->mask = 0;
    w->shift = 63;
    if (w->window == 0) return 0;
    w->rcap = w->window < WSET_MIN ? w->window : WSET_MIN;
    w->ring = (uint64_t *)malloc((size_t)w->rcap * sizeof(uint64_t));
    if (w->ring == NULL) return -1;
    return wset_grow_table(w, 2 * WSET_MIN);
}

/* Make sure the next wset_add needs no memory: 0, or -1 if memory ran out
 * (nothing changed). The ring grows only before it wraps (then its entries
 * are in order from 0), at most to `window`. (Out of line: wset_add, inlined
 * in m.run's loop, calls it once per doubling.) */
static __attribute__((noinline, cold, unused)) int wset_reserve(wset_t *w) {
    uint64_t *ring;
    int64_t cap;
    if (w->window <= 0) return 0;
    if ((uint64_t)(w->distinct + 1) * 2 > w->mask + 1
            && wset_grow_table(w, (w->mask + 1) * 2) != 0)
        return -1;
    if (w->filled < w->window && w->filled == w->rcap) {
        cap = w->rcap > w->window / 2 ? w->window : w->rcap * 2;
        if ((uint64_t)cap > SIZE_MAX / sizeof(uint64_t)) return -1;
        ring = (uint64_t *)realloc(w->ring, (size_t)cap * sizeof(uint64_t));
        if (ring == NULL) return -1;
        w->ring = ring;
        w->rcap = cap;
    }
    return 0;
}

/* Remove the entry at slot i, shifting later entries of its probe run back. */
static inline void wset_remove_at(wset_t *w, uint64_t i) {
    uint64_t j = i, home;
    for (;;) {
        j = (j + 1) & w->mask;
        if (!w->keys[j]) break;
        home = wset_home(w, w->keys[j] - 1);
        /* move j back to i unless its home lies cyclically in (i, j] */
        if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
            w->keys[i] = w->keys[j];
            w->counts[i] = w->counts[j];
            i = j;
        }
    }
    w->keys[i] = 0;
    w->counts[i] = 0;
}

/* One page reference: remember `vpn`, forget the reference `window` ago.
 * 0, or -1 if it needed memory and found none (nothing changed: a reserve
 * first rules that out). */
static inline int wset_add(wset_t *w, uint64_t vpn) {
    uint64_t i, old;
    if (w->window <= 0) return 0;
    if (((w->filled == w->rcap && w->rcap < w->window)
            || (uint64_t)(w->distinct + 1) * 2 > w->mask + 1) && wset_reserve(w) != 0)
        return -1;
    if (w->filled == w->window) {
        old = w->ring[w->pos];
        i = wset_find(w, old);
        if (--w->counts[i] == 0) {
            wset_remove_at(w, i);
            w->distinct--;
        }
    } else {
        w->filled++;
    }
    w->ring[w->pos] = vpn;
    w->pos = (w->pos + 1 == w->window) ? 0 : w->pos + 1;
    i = wset_find(w, vpn);
    if (!w->keys[i]) {
        w->keys[i] = vpn + 1;
        w->distinct++;
    }
    w->counts[i]++;
    return 0;
}

#endif
