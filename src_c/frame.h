/* frame.h: what the core keeps per frame and per swap slot.
 *
 * Per frame, 16 bytes, the budget of DESIGN.md section 9: one cache line holds
 * four frames, and a fault touches one line per frame it handles. Policy state
 * (fifo/lru list links, opt's next use) lives beside it, only for its policy.
 */
#ifndef PYMMU_FRAME_H
#define PYMMU_FRAME_H

#include <stdint.h>

#define FRAME_REF_BITS 27
#define FRAME_REF_MAX  ((1u << FRAME_REF_BITS) - 1)

typedef struct {
    uint32_t refcnt : FRAME_REF_BITS; /* PTEs mapping it (the zero page counts apart) */
    uint32_t state  : 2;    /* F_FREE, F_ANON, F_FILE or F_SHMEM (_core.pxd)     */
    uint32_t czero  : 1;    /* content known to be all zero (the bytes really are) */
    uint32_t pool   : 1;    /* free and in the pre-zeroed pool                     */
    uint32_t pinned : 1;    /* touched by the access in progress: never a victim   */
    int32_t  link;          /* F_ANON: the swap slot it caches, or -1;
                               F_SHMEM: its object id; otherwise -1               */
    uint64_t rmap;          /* reverse map: (fork family << vpn bits) | vpn, the
                               virtual page at which every mapper maps it         */
} frame_t;

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

#endif
