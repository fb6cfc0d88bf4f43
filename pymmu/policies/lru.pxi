# The lru policy (exact least recently used), a unit of the core's
# replacement-policy interface (policy_ops_t, pymmu/_core.pxd): fifo's list
# (pymmu/policies/fifo.pxi) with every use moving the frame last, so that the
# oldest is the least recently used. Included in pymmu/_core.pyx
# (pymmu/policies/_units.pxi).


cdef void lru_use(Core c, int64_t pfn, int64_t ref) noexcept nogil:
    """``pfn`` was just used: to the young end."""
    flist_unlink(c, pfn)
    flist_append(c, pfn)


cdef policy_ops_t lru_unit
lru_unit = fifo_unit
lru_unit.on_use = lru_use
