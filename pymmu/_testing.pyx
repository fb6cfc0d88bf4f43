"""Test wrappers of the core's C units (tests/test_units.py), as scikit-learn tests
its ``_utils``: the free-frame heaps (include/frame.h), the lowest-first bitmap sets
(include/lowset.h), the event log (include/events.h), the TLB's slot choice, the
working sets (include/wset.h), shared objects' page maps (include/objmap.h), the
page tables with their walk cache (include/pgtable.h) and the reverse map
(include/rmap.h),
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
    returns its size after each, and the ring entries and table slots it has
    at the end (they grow with the references added, never with ``window``)."""
    cdef wset_t w
    cdef list out = []
    if window < 1:
        raise ValueError("window must be at least 1")
    if wset_init(&w, window):
        wset_free(&w)
        raise MemoryError()
    try:
        for v in vpns:
            if wset_add(&w, <uint64_t>v) != 0:
                raise MemoryError()
            out.append(w.distinct)
        return out, (w.rcap, w.mask + 1)
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


def pgtable_run(int bits, int levels, int64_t spaces, list ops):
    """Run ``ops`` on page tables of ``levels`` levels of ``bits`` bits for spaces
    1..spaces (each with a root): ``("set", mm, vpn, pte)`` (an allocating walk,
    then the write), ``("get", mm, vpn)`` (None when a table is missing),
    ``("fail", mm, vpn, k)`` (the k-th node allocation fails: the walk's answer,
    True or False, then the tables are taken back as a failed fault does),
    ``("destroy", mm)`` (then a new root). Returns each get's and fail's answer,
    every space's nonzero PTEs as (vpn, pte) in vpn order, and the node count."""
    global pt_fail_after
    cdef pgtable_t t
    cdef pte_t *p
    cdef pt_made_t made
    cdef int64_t mm, n
    cdef list out = []
    if not 1 <= levels <= PT_MAX_LEVELS or not 1 <= bits <= 16 or bits * levels > 64:
        raise ValueError("bad geometry")
    pt_init(&t, bits, levels)
    try:
        if pt_grow(&t, spaces + 1):
            raise MemoryError()
        for mm in range(1, spaces + 1):
            t.root[mm] = pt_new_node(&t)
        for op in ops:
            mm = op[1]
            if not 1 <= mm <= spaces:
                raise ValueError("no such space")
            if op[0] == "destroy":
                pt_destroy(&t, mm)
                t.root[mm] = pt_new_node(&t)
                continue
            if bits * levels < 64 and op[2] >> (bits * levels):
                raise ValueError("vpn out of range")
            if op[0] == "set":
                p = pt_walk(&t, mm, op[2], 1)
                if p == NULL:
                    raise MemoryError()
                p[0] = op[3]
            elif op[0] == "get":
                p = pt_walk(&t, mm, op[2], 0)
                out.append(None if p == NULL else p[0])
            else:
                pt_fail_after = op[3]
                p = pt_walk(&t, mm, op[2], 1)
                pt_fail_after = 0
                out.append(p != NULL)
                if p != NULL:
                    pt_unmake(&t, mm, op[2], t.made)
        ptes = {}
        for mm in range(1, spaces + 1):
            n = pt_collect(&t, mm, 0, <uint64_t>-1, NULL, NULL)
            vpns = np.empty(n, np.uint64)
            vals = np.empty(n, np.uint64)
            if n:
                pt_collect(&t, mm, 0, <uint64_t>-1, <uint64_t *>cnp.PyArray_DATA(vpns),
                           <uint64_t *>cnp.PyArray_DATA(vals))
            ptes[mm] = list(zip(vpns.tolist(), vals.tolist()))
        return out, ptes, t.nodes
    finally:
        pt_fail_after = 0
        pt_free(&t)


def rmap_run(int64_t spaces, list ops):
    """Run ``ops`` on the reverse map's families over spaces 1..spaces, with page
    tables (9 bits, 2 levels) and an 8-entry TLB: ``("join", mm, family)``,
    ``("leave", mm)``, ``("relink",)`` (prev links wiped, then derived again, as
    a restore does), ``("map", mm, vpn, pte)``, ``("count", pfn, family, vpn)``,
    ``("young", ...)``, ``("any", pfn, family, vpn, bit)``, ``("replace", pfn,
    family, vpn, value)`` (answers its count and the owner by pid = 100 + mm).
    A mapped PTE with ACCESSED set is loaded into the TLB. Returns the answers
    and each family's members in list order, after checking that every TLB entry
    still caches a present, accessed PTE, that the prev links walk each list
    back, and that a space in no family has no links."""
    cdef pgtable_t t
    cdef tlb_t tlb
    cdef rmap_t r
    cdef pte_t *p
    cdef int64_t mm, owner, n
    cdef int64_t *pids = NULL
    cdef uint64_t word
    cdef list out = []
    pt_init(&t, 9, 2)
    rmap_init(&r, 18)
    if tlb_init(&tlb, 8) or pt_grow(&t, spaces + 1) or rmap_grow(&r, spaces + 1):
        tlb_free(&tlb); pt_free(&t); rmap_free(&r)
        raise MemoryError()
    pids = <int64_t *>calloc(spaces + 1, sizeof(int64_t))
    try:
        for mm in range(1, spaces + 1):
            pids[mm] = 100 + mm         # (a space's tables: made by its first map)
        for op in ops:
            if op[0] == "join":
                rmap_join(&r, op[1], op[2])
            elif op[0] == "leave":
                rmap_leave(&r, op[1])
            elif op[0] == "relink":
                for mm in range(spaces + 1):
                    r.prev[mm] = 12345
                if rmap_relink(&r, spaces + 1) != 0:
                    raise AssertionError("rmap_relink refused sound lists")
            elif op[0] == "map":
                p = pt_walk(&t, op[1], op[2], 1)
                if p == NULL:
                    raise MemoryError()
                p[0] = op[3]
                tlb_invalidate(&tlb, op[1], op[2])
                if p[0] & PTE_PRESENT and p[0] & PTE_ACCESSED:
                    tlb_fill(&tlb, tlb_slot(&tlb, op[2]), op[1], op[2], p)
            else:
                word = rmap_word(&r, op[2], op[3])
                if rmap_family(&r, word) != op[2] or rmap_vpn(&r, word) != op[3]:
                    raise AssertionError("a word does not give back its family and vpn")
                if op[0] == "count":
                    out.append(rmap_walk(&r, &t, &tlb, op[1], word, RMAP_COUNT, 0, NULL, NULL))
                elif op[0] == "young":
                    out.append(rmap_walk(&r, &t, &tlb, op[1], word, RMAP_YOUNG, 0, NULL, NULL))
                elif op[0] == "any":
                    out.append(bool(rmap_any(&r, &t, op[1], word, op[4])))
                else:
                    n = rmap_walk(&r, &t, &tlb, op[1], word, RMAP_REPLACE, op[4], pids, &owner)
                    out.append((n, owner))
        families = {f: [] for f in range(1, spaces + 1)}
        for f in range(1, spaces + 1):
            mm = r.head[f]
            n = 0                       # (the member before mm)
            while mm:
                if r.prev[mm] != n:
                    raise AssertionError(f"space {mm}'s prev link is {r.prev[mm]}, not {n}")
                families[f].append(mm)
                n, mm = mm, r.next[mm]
        for mm in range(spaces + 1):
            if r.family[mm] < 0 and (r.next[mm] or r.prev[mm]):
                raise AssertionError(f"space {mm} left its family but keeps its links")
        # a TLB entry never survives a change of its PTE
        for i in range(tlb.n):
            if tlb.e[i].mm and not (tlb.e[i].pte[0] & PTE_PRESENT
                                    and tlb.e[i].pte[0] & PTE_ACCESSED):
                raise AssertionError("a stale TLB entry")
        return out, {f: v for f, v in families.items() if v}
    finally:
        free(pids)
        tlb_free(&tlb)
        pt_free(&t)
        rmap_free(&r)


def rmap_relink_run(list family, list next, list head):
    """``rmap_relink`` over spaces 0..len(family)-1 with these links: its result
    (0, or -1 for lists that are not sound) and the prev links it set."""
    cdef rmap_t r
    cdef int64_t i, n = len(family), rc
    rmap_init(&r, 18)
    if rmap_grow(&r, max(n, 1)):
        rmap_free(&r)
        raise MemoryError()
    try:
        for i in range(n):
            r.family[i], r.next[i], r.head[i] = family[i], next[i], head[i]
        rc = rmap_relink(&r, n)
        return rc, [r.prev[i] for i in range(n)]
    finally:
        rmap_free(&r)
