/* events.h: the core's event log (DESIGN.md section 11).
 *
 * While a `with m.events()` block is open, every increment of an event counter
 * (and every refused access) appends one event_t. Off, the core tests one flag
 * per counted event, on fault paths only: the hit paths never see it. With a
 * limit the log is a ring of the latest `limit` events; without one it grows.
 * Kind codes are pymmu.events.KINDS' order.
 */
#ifndef PYMMU_EVENTS_H
#define PYMMU_EVENTS_H

#include <stdint.h>
#include <stdlib.h>

#define EV_KINDS 12

typedef struct {
    int64_t seq;            /* machine-wide page references so far (the causing one included) */
    int64_t t_ns;           /* simulated time inside m.run, else 0      */
    int64_t pid;            /* who made the reference; a victim's lowest mapper */
    uint64_t vaddr;         /* the page's address                        */
    int64_t pfn;            /* the frame, or -1                          */
    int64_t slot;           /* the swap slot, or -1                      */
    uint8_t kind;           /* index into pymmu.events.KINDS             */
} event_t;

typedef struct {
    int on;                 /* recording: a block is open                */
    event_t *buf;           /* kept events: a ring when limit >= 0       */
    int64_t cap;            /* allocated entries of buf                  */
    int64_t n;              /* kept entries                              */
    int64_t head;           /* index of the oldest kept entry            */
    int64_t limit;          /* keep at most this many, or -1: all        */
    int64_t dropped;        /* recorded but not kept                     */
    int64_t counts[EV_KINDS];   /* recorded, dropped ones included        */
} evlog_t;

/* Start recording (the log is empty; buf stays allocated across blocks). */
static inline void evlog_start(evlog_t *l, int64_t limit) {
    int i;
    l->on = 1;
    l->n = l->head = l->dropped = 0;
    l->limit = limit;
    for (i = 0; i < EV_KINDS; i++) l->counts[i] = 0;
}

/* Append one event; 0, or -1 if memory ran out (the event counts as dropped). */
static inline int evlog_push(evlog_t *l, const event_t *e) {
    event_t *grown;
    int64_t want;
    l->counts[e->kind]++;
    if (l->limit >= 0 && l->n == l->limit) {       /* a full ring: drop the oldest */
        l->dropped++;
        if (l->limit == 0) return 0;
        l->buf[l->head] = *e;
        l->head = (l->head + 1) % l->limit;
        return 0;
    }
    if (l->n == l->cap) {
        want = l->cap ? 2 * l->cap : 1024;
        if (l->limit >= 0 && want > l->limit) want = l->limit;
        grown = (event_t *)realloc(l->buf, (size_t)want * sizeof(event_t));
        if (grown == NULL) {
            l->dropped++;
            return -1;
        }
        l->buf = grown;
        l->cap = want;
    }
    l->buf[l->n++] = *e;            /* head moves only once the ring is full */
    return 0;
}

/* The i-th kept event, oldest first. */
static inline const event_t *evlog_at(const evlog_t *l, int64_t i) {
    if (l->limit >= 0) return &l->buf[(l->head + i) % l->limit];
    return &l->buf[i];
}

#endif
