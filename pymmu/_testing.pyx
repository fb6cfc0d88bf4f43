"""Test wrappers of the core's C units (tests/test_units.py), as scikit-learn tests
its ``_utils``: the free-frame heaps (include/frame.h), the lowest-first bitmap sets
(include/lowset.h), the event log (include/events.h), the TLB's slot choice, the
working sets (include/wset.h) and shared objects' page maps (include/objmap.h),
driven directly with small inputs. Nothing in pymmu's API uses this module."""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free

cimport numpy as cnp
import numpy as np

cnp.import_array()

from pymmu._core cimport Core
from pymmu._pte cimport *


def freeheap_run(int32_t frames, list ops):
    """Run ``ops`` on a free heap over ``frames`` frame records: ``("push", pfn)``
    or ``("pop",)``; returns the pfns the pops gave and the final count."""
    cdef frame_t *fm = <frame_t *>calloc(max(frames, 1), sizeof(frame_t))
    cdef freeheap_t h
    cdef list out = []
    if fm == NULL:
        raise MemoryError()
    try:
        freeheap_init_range(&h, fm, 0, 0)
        for op in ops:
            if op[0] == "push":
                if not 0 <= op[1] < frames:
                    raise ValueError("pfn out of range")
                freeheap_push(&h, fm, op[1])
            elif h.count:
                out.append(freeheap_pop(&h, fm))
            else:
                raise ValueError("pop from an empty heap")
        return out, h.count
    finally:
        free(fm)


def lowset_run(uint64_t n, list ops):
    """Run ``ops`` on a lowest-first set of 0..n-1: ``("add", i)``, ``("remove", i)``,
    ``("pop",)``, ``("min",)``, ``("next", i)``, ``("has", i)``; returns each
    query's answer, in order, and the final count."""
    cdef lowset_t s
    cdef list out = []
    s.levels = 0
    if lowset_init(&s, n):
        lowset_free(&s)
        raise MemoryError()
    try:
        for op in ops:
            if op[0] in ("add", "remove", "next", "has") and not 0 <= op[1] < n:
                raise ValueError("member out of range")
            if op[0] == "add":
                lowset_add(&s, op[1])
            elif op[0] == "remove":
                lowset_remove(&s, op[1])
            elif op[0] == "pop":
                out.append(lowset_pop(&s) if s.count else None)
            elif op[0] == "min":
                out.append(lowset_min(&s))
            elif op[0] == "next":
                out.append(lowset_next(&s, op[1]))
            else:
                out.append(bool(lowset_has(&s, op[1])))
        return out, s.count
    finally:
        lowset_free(&s)


def evlog_run(int64_t limit, int64_t events):
    """Push ``events`` events (kind i % 12, seq i) into a log keeping ``limit``
    (-1: all); returns the kept seqs oldest first, the counts and the dropped."""
    cdef evlog_t log
    cdef event_t e
    cdef int64_t i
    log.buf = NULL
    log.cap = 0
    evlog_start(&log, limit)
    try:
        for i in range(events):
            e.seq = i
            e.kind = <uint8_t>(i % EV_KINDS)
            e.t_ns = e.pid = e.pfn = e.slot = 0
            e.vaddr = 0
            evlog_push(&log, &e)
        return ([evlog_at(&log, i).seq for i in range(log.n)],
                [log.counts[i] for i in range(EV_KINDS)], log.dropped)
    finally:
        free(log.buf)


def tlb_slots(Core core, list vpns):
    """The TLB entry each vpn would go to in ``core`` (vpn mod entries)."""
    return [tlb_slot(&core.tlb, v) for v in vpns]


def wset_run(int64_t window, list vpns):
    """Add ``vpns`` one by one to a working set over ``window`` references;
    returns its size after each."""
    cdef wset_t w
    cdef list out = []
    if window < 1:
        raise ValueError("window must be at least 1")
    if wset_init(&w, window):
        wset_free(&w)
        raise MemoryError()
    try:
        for v in vpns:
            wset_add(&w, <uint64_t>v)
            out.append(w.distinct)
        return out
    finally:
        wset_free(&w)


def objmap_run(int64_t npages, list ops):
    """Run ``ops`` on a shared object's page map of ``npages`` pages: ``("set",
    page, value)``, ``("get", page)``; returns each get's answer, then the pages
    it holds with their values (ascending) and how many it holds."""
    cdef objmap_t m
    cdef list out = []
    cdef int64_t n
    objmap_init(&m, npages)
    try:
        for op in ops:
            if not 0 <= op[1] < npages:
                raise ValueError("page out of range")
            if op[0] == "set":
                if objmap_set(&m, op[1], op[2]) != 0:
                    raise MemoryError()
            else:
                out.append(objmap_get(&m, op[1]))
        n = objmap_collect(&m, NULL, NULL)
        pages = np.empty(n, np.int64)
        values = np.empty(n, np.int64)
        if n:
            objmap_collect(&m, <int64_t *>cnp.PyArray_DATA(pages),
                           <int64_t *>cnp.PyArray_DATA(values))
        return out, list(zip(pages.tolist(), values.tolist())), m.held
    finally:
        objmap_clear(&m)
