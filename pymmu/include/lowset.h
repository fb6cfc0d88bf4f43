/* lowset.h: a set of integers 0..n-1 that hands out its lowest member first.
 *
 * pymmu allocates swap slots lowest number first (deterministic runs that a
 * reference model can match), and opt keeps its replay-time sets in these
 * (free frames are in frame.h's heaps, inside the frames' own records). A
 * hierarchical bitmap does that in O(log64 n) per operation with one bit per
 * member: level 0 has a bit per member, each higher level a bit per non-zero
 * word of the level below, up to a single word. Plain C with no Python.h.
 */
#ifndef PYMMU_LOWSET_H
#define PYMMU_LOWSET_H

#include <stdint.h>
#include <stdlib.h>

#define LOWSET_MAX_LEVELS 6        /* 64**6 members: far beyond any machine here */

typedef struct {
    uint64_t *words[LOWSET_MAX_LEVELS];  /* level 0 first                        */
    uint64_t nwords[LOWSET_MAX_LEVELS];  /* words per level                      */
    int levels;                          /* how many levels are in use           */
    uint64_t n;                          /* capacity: members are 0..n-1         */
    uint64_t count;                      /* members present                      */
} lowset_t;

/* Allocate an empty set for 0..n-1; returns 0, or -1 when out of memory. */
static inline int lowset_init(lowset_t *s, uint64_t n) {
    uint64_t bits = n ? n : 1;
    int l;
    s->levels = 0;
    s->n = n;
    s->count = 0;
    for (l = 0; l < LOWSET_MAX_LEVELS; l++) {
        s->nwords[l] = (bits + 63) / 64;
        s->words[l] = (uint64_t *)calloc(s->nwords[l], sizeof(uint64_t));
        if (!s->words[l]) return -1;
        s->levels = l + 1;
        if (s->nwords[l] == 1) break;
        bits = s->nwords[l];
    }
    return 0;
}

static inline void lowset_free(lowset_t *s) {
    int l;
    for (l = 0; l < s->levels; l++) free(s->words[l]);
    s->levels = 0;
}

static inline int lowset_has(const lowset_t *s, uint64_t i) {
    return (s->words[0][i >> 6] >> (i & 63)) & 1;
}

static inline void lowset_add(lowset_t *s, uint64_t i) {
    int l;
    for (l = 0; l < s->levels; l++) {
        uint64_t *w = &s->words[l][i >> 6];
        int was_empty = (*w == 0);
        if (l == 0 && ((*w >> (i & 63)) & 1)) return;   /* already a member */
        *w |= (uint64_t)1 << (i & 63);
        if (l == 0) s->count++;
        if (!was_empty) return;
        i >>= 6;
    }
}

static inline void lowset_remove(lowset_t *s, uint64_t i) {
    int l;
    for (l = 0; l < s->levels; l++) {
        uint64_t *w = &s->words[l][i >> 6];
        if (l == 0) {
            if (!((*w >> (i & 63)) & 1)) return;        /* not a member */
            s->count--;
        }
        *w &= ~((uint64_t)1 << (i & 63));
        if (*w) return;
        i >>= 6;
    }
}

/* The address of the bottom-level word holding i (for prefetching). */
static inline const uint64_t *lowset_word(const lowset_t *s, uint64_t i) {
    return &s->words[0][i >> 6];
}

/* The lowest member, or -1 if the set is empty (the set is unchanged). */
static inline int64_t lowset_min(const lowset_t *s) {
    uint64_t i = 0;
    int l;
    if (!s->count) return -1;
    for (l = s->levels - 1; l >= 0; l--)
        i = (i << 6) | (uint64_t)__builtin_ctzll(s->words[l][i]);
    return (int64_t)i;
}

/* The lowest member at or above i, or -1 if there is none (the set is unchanged):
 * climb while the word holding i has no member from i on, then descend. */
static inline int64_t lowset_next(const lowset_t *s, uint64_t i) {
    int l, found = -1;
    uint64_t w;
    if (i >= s->n) return -1;
    for (l = 0; l < s->levels; l++) {
        w = s->words[l][i >> 6] & (~(uint64_t)0 << (i & 63));
        if (w) {
            i = (i & ~(uint64_t)63) | (uint64_t)__builtin_ctzll(w);
            found = l;
            break;
        }
        i = (i >> 6) + 1;                 /* the next word, as a bit one level up */
        if (i >= s->nwords[l]) return -1;
    }
    if (found < 0) return -1;
    for (l = found - 1; l >= 0; l--)
        i = (i << 6) | (uint64_t)__builtin_ctzll(s->words[l][i]);
    return (int64_t)i;
}

/* Remove and return the lowest member, or -1 if the set is empty. */
static inline int64_t lowset_pop(lowset_t *s) {
    int64_t i = lowset_min(s);
    if (i >= 0) lowset_remove(s, (uint64_t)i);
    return i;
}

#endif
