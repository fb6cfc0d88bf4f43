# The random policy, one unit of the core's replacement-policy interface: no state
# but the machine's seeded generator (Core.rng, splitmix64), so runs repeat.
# Included in pymmu/_core.pyx.


cdef inline int64_t random_victim(Core self) noexcept nogil:
    """An evictable frame drawn uniformly by the machine's seeded generator."""
    cdef int64_t pfn, count = 0, k
    for pfn in range(self.frames):
        count += self._evictable(pfn)
    if count == 0:
        return -1
    k = <int64_t>(splitmix64(&self.rng) % <uint64_t>count)
    for pfn in range(self.frames):
        if self._evictable(pfn):
            if k == 0:
                return pfn
            k -= 1
    return -1
