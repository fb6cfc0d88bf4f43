/* hold.h: who may use a machine now.
 *
 * One thread at a time holds a machine. A replay, a run, a call of the C API
 * (pymmu/core.pxd) made without the GIL, and every Machine-level operation of
 * several core calls (spawn, fork, exit, check, frame_table, ...) take it for
 * their whole duration, so another thread never sees one half done: it is
 * refused before anything changes. A hold nests on its own thread (an
 * operation's core calls, m.run's exit callback, a replay inside m.replay's
 * hold) and never on another.
 *
 * `busy` is the flag, taken atomically; `holder` names the holding thread and
 * `depth` counts its takes. Only the holder writes them; another thread reads
 * `holder` only to learn that it is not itself (the holder clears it before it
 * gives the flag back, so a stale value never names the reader).
 */
#ifndef PYMMU_HOLD_H
#define PYMMU_HOLD_H

#include <pthread.h>

typedef struct {
    int busy;                   /* held (1) or free (0) */
    int depth;                  /* takes by the holder, not yet given back */
    unsigned long holder;       /* the holding thread (pthread_self), or 0 */
} hold_t;

static inline unsigned long hold_self(void) { return (unsigned long)pthread_self(); }

/* Take the machine, or take it again on the thread that holds it: 1; another
 * thread holds it: 0, and nothing changed. */
static inline int hold_take(hold_t *h) {
    unsigned long me = hold_self();
    if (__atomic_exchange_n(&h->busy, 1, __ATOMIC_ACQ_REL) == 0) {
        __atomic_store_n(&h->holder, me, __ATOMIC_RELAXED);
        h->depth = 1;
        return 1;
    }
    if (__atomic_load_n(&h->holder, __ATOMIC_RELAXED) == me) {
        h->depth++;
        return 1;
    }
    return 0;
}

/* Give back one take of the holding thread; the last one frees the machine. */
static inline void hold_give(hold_t *h) {
    if (--h->depth == 0) {
        __atomic_store_n(&h->holder, 0UL, __ATOMIC_RELAXED);
        __atomic_store_n(&h->busy, 0, __ATOMIC_RELEASE);
    }
}

/* Another thread holds the machine (this one may not use it now). */
static inline int hold_elsewhere(hold_t *h) {
    return __atomic_load_n(&h->busy, __ATOMIC_ACQUIRE)
        && __atomic_load_n(&h->holder, __ATOMIC_RELAXED) != hold_self();
}

/* This thread holds the machine. */
static inline int hold_mine(hold_t *h) {
    return __atomic_load_n(&h->busy, __ATOMIC_ACQUIRE)
        && __atomic_load_n(&h->holder, __ATOMIC_RELAXED) == hold_self();
}

#endif
