/* objmap.h: where each page of a shared memory object is (DESIGN.md section 4
 * rule 5), one unit: a sparse radix tree over the object's page numbers, so
 * that an object costs memory for the pages it holds, not for the pages it
 * spans (a 2**46-byte mapping is as cheap as a small one until touched).
 *
 * A page's value is a frame number (>= 0), -1 (never touched or freed), or
 * -(slot + 2) (in that swap slot). Leaves store value + 1, so that a zeroed
 * leaf reads as -1 everywhere. Nodes have OBJMAP_FAN children. */
#ifndef PYMMU_OBJMAP_H
#define PYMMU_OBJMAP_H

#include <stdint.h>
#include <stdlib.h>

_Static_assert(sizeof(void *) == sizeof(int64_t), "objmap: 64-bit pointers");

#define OBJMAP_BITS 9
#define OBJMAP_FAN (1 << OBJMAP_BITS)

typedef struct {
    int64_t npages;         /* pages the object spans                         */
    int levels;             /* radix levels (1: the root is the only leaf)    */
    int64_t held;           /* pages whose value is not -1                    */
    void *root;             /* NULL until a page is set                       */
} objmap_t;

static inline void objmap_init(objmap_t *m, int64_t npages) {
    int levels = 1;
    int64_t span = OBJMAP_FAN;
    while (span < npages && levels < 7) {       /* 9 * 7 = 63 bits: any int64 count */
        span <<= OBJMAP_BITS;
        levels++;
    }
    m->npages = npages;
    m->levels = levels;
    m->held = 0;
    m->root = NULL;
}

static inline unsigned objmap_index(const objmap_t *m, int64_t page, int level) {
    return (unsigned)(((uint64_t)page >> (OBJMAP_BITS * (m->levels - 1 - level)))
                      & (OBJMAP_FAN - 1));
}

/* The value of `page` (0 <= page < npages). */
static inline int64_t objmap_get(const objmap_t *m, int64_t page) {
    void *node = m->root;
    int level;
    for (level = 0; level < m->levels - 1 && node; level++)
        node = ((void **)node)[objmap_index(m, page, level)];
    return node ? ((int64_t *)node)[objmap_index(m, page, m->levels - 1)] - 1 : -1;
}

/* The leaf that holds `page`, made (with the nodes above it) if `make`; NULL
 * if absent, or if memory ran out (then nothing changed: the missing nodes of
 * the path are all made before any is linked). */
static inline int64_t *objmap_leaf(objmap_t *m, int64_t page, int make) {
    void **slot = &m->root;
    void *made[8];
    int level, need, i;
    for (level = 0; level < m->levels - 1 && *slot; level++)
        slot = &((void **)*slot)[objmap_index(m, page, level)];
    if (*slot) return (int64_t *)*slot;     /* (the loop stops on a node only at the leaf) */
    if (!make) return NULL;
    need = m->levels - level;               /* nodes for levels level .. leaf */
    for (i = 0; i < need; i++) {
        made[i] = calloc(OBJMAP_FAN, sizeof(int64_t));   /* == sizeof(void *) */
        if (!made[i]) {
            while (i-- > 0) free(made[i]);
            return NULL;
        }
    }
    for (i = 0; i + 1 < need; i++)
        ((void **)made[i])[objmap_index(m, page, level + i)] = made[i + 1];
    *slot = made[0];
    return (int64_t *)made[need - 1];
}

/* Make room for `page`'s value, so that setting it cannot fail: 0, or -1 if
 * memory ran out. */
static inline int objmap_reserve(objmap_t *m, int64_t page) {
    return objmap_leaf(m, page, 1) ? 0 : -1;
}

/* Set `page` to `value`: 0, or -1 if memory for a node ran out (nothing changed).
 * Setting -1 where nothing is stored allocates nothing. */
static inline int objmap_set(objmap_t *m, int64_t page, int64_t value) {
    int64_t *leaf = objmap_leaf(m, page, value != -1);
    int64_t old;
    int i = (int)objmap_index(m, page, m->levels - 1);
    if (!leaf) return value == -1 ? 0 : -1;
    old = leaf[i] - 1;
    leaf[i] = value + 1;
    m->held += (value != -1) - (old != -1);
    return 0;
}

/* Visit the pages whose value is not -1, in ascending order: fill `pages` and
 * `values` (when not NULL) from position n; returns the new count. */
static inline int64_t objmap_collect_node(const objmap_t *m, void *node, int level,
                                          int64_t base, int64_t *pages, int64_t *values,
                                          int64_t n) {
    int i;
    if (!node) return n;
    for (i = 0; i < OBJMAP_FAN; i++) {
        int64_t page = (base << OBJMAP_BITS) | i;
        if (level < m->levels - 1) {
            n = objmap_collect_node(m, ((void **)node)[i], level + 1, page, pages, values, n);
        } else if (((int64_t *)node)[i] != 0) {
            if (pages) pages[n] = page;
            if (values) values[n] = ((int64_t *)node)[i] - 1;
            n++;
        }
    }
    return n;
}

static inline int64_t objmap_collect(const objmap_t *m, int64_t *pages, int64_t *values) {
    return objmap_collect_node(m, m->root, 0, 0, pages, values, 0);
}

static inline void objmap_free_node(const objmap_t *m, void *node, int level) {
    int i;
    if (!node) return;
    if (level < m->levels - 1)
        for (i = 0; i < OBJMAP_FAN; i++) objmap_free_node(m, ((void **)node)[i], level + 1);
    free(node);
}

/* Free every node: the object holds nothing (its values were given back). */
static inline void objmap_clear(objmap_t *m) {
    objmap_free_node(m, m->root, 0);
    m->root = NULL;
    m->held = 0;
}

#endif
