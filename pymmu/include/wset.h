/* wset.h: an exact working set (DESIGN.md section 12 rule 10), one unit: the
 * distinct pages among a process's last `window` page references. A ring holds
 * the last `window` page numbers; an open-addressing hash table (linear probing,
 * backward-shift deletion, no tombstones) counts each page's occurrences in the
 * ring, so adding a reference and dropping the oldest cost O(1) on average and
 * `distinct` is always the working-set size. */
#ifndef PYMMU_WSET_H
#define PYMMU_WSET_H

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    int64_t window;         /* references remembered; 0: not tracked           */
    int64_t pos;            /* where the next reference goes in the ring        */
    int64_t filled;         /* references in the ring (at most window)          */
    int64_t distinct;       /* pages with a nonzero count: the working set size */
    uint64_t *ring;         /* the last references' page numbers                */
    uint64_t *keys;         /* hash table: page number + 1, 0 when empty        */
    int64_t *counts;        /* ... its occurrences in the ring                  */
    uint64_t mask;          /* table size - 1 (a power of two >= 2 * window)    */
} wset_t;

/* An empty working set over `window` references: 0, or -1 if memory ran out. */
static inline int wset_init(wset_t *w, int64_t window) {
    uint64_t cap = 2;
    w->window = window;
    w->pos = w->filled = w->distinct = 0;
    w->ring = NULL;
    w->keys = NULL;
    w->counts = NULL;
    w->mask = 0;
    if (window <= 0) return 0;
    while (cap < 2 * (uint64_t)window) cap <<= 1;
    w->mask = cap - 1;
    w->ring = (uint64_t *)malloc((size_t)window * sizeof(uint64_t));
    w->keys = (uint64_t *)calloc((size_t)cap, sizeof(uint64_t));
    w->counts = (int64_t *)calloc((size_t)cap, sizeof(int64_t));
    return (w->ring && w->keys && w->counts) ? 0 : -1;
}

static inline void wset_free(wset_t *w) {
    free(w->ring);
    free(w->keys);
    free(w->counts);
    w->ring = NULL;
    w->keys = NULL;
    w->counts = NULL;
}

static inline uint64_t wset_hash(uint64_t key) {   /* a 64-bit mixer (splitmix64's) */
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    return key ^ (key >> 31);
}

/* The table slot holding page `vpn`, or the empty slot where it would go. */
static inline uint64_t wset_find(const wset_t *w, uint64_t vpn) {
    uint64_t i = wset_hash(vpn) & w->mask;
    while (w->keys[i] && w->keys[i] != vpn + 1) i = (i + 1) & w->mask;
    return i;
}

/* Remove the entry at slot i, shifting later entries of its probe run back. */
static inline void wset_remove_at(wset_t *w, uint64_t i) {
    uint64_t j = i, home;
    for (;;) {
        j = (j + 1) & w->mask;
        if (!w->keys[j]) break;
        home = wset_hash(w->keys[j] - 1) & w->mask;
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

/* One page reference: remember `vpn`, forget the reference `window` ago. */
static inline void wset_add(wset_t *w, uint64_t vpn) {
    uint64_t i, old;
    if (w->window <= 0) return;
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
}

#endif
