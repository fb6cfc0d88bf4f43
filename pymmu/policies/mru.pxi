# The mru policy (most recently used), a unit of the core's replacement-policy
# interface (policy_ops_t, pymmu/_core.pxd): lru's list (pymmu/policies/fifo.pxi,
# every use moving the frame last), with the victim taken from the young end.
# It suits a looping scan over more pages than frames, where lru misses on every
# reference: mru keeps most of the loop resident. Included in pymmu/_core.pyx
# (pymmu/policies/_units.pxi).


cdef int64_t mru_victim(Core c) noexcept nogil:
    """The most recently used evictable frame (a fault's own frames are pinned,
    hence passed over)."""
    cdef flist_t *s = flist_of(c)
    cdef int64_t pfn = s.prev[c.frames]
    while pfn != c.frames:
        if c._evictable(pfn):
            return pfn
        pfn = s.prev[pfn]
    return VICTIM_NONE


cdef policy_ops_t mru_unit
mru_unit = lru_unit
mru_unit.victim = mru_victim
