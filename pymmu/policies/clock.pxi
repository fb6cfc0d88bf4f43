# The clock policy (second chance; DESIGN.md section 6), one unit of the core's
# replacement-policy interface (docs/architecture.md): it keeps no state of its own
# beyond the machine's hand (Core.clock_hand) and the PTEs' accessed bits, so its
# part of the interface is its victim choice. Included in pymmu/_core.pyx.


cdef inline int64_t clock_victim(Core self) noexcept nogil:
    """Second chance over the frames in pfn order, circular (DESIGN.md section
    6): a referenced frame has its A bits cleared and is passed over."""
    cdef int64_t pfn, ahead = (self.clock_hand + PF_CLOCK) % self.frames
    for _ in range(2 * self.frames):
        pfn = self.clock_hand
        self.clock_hand = pfn + 1 if pfn + 1 < self.frames else 0
        if self.fm[ahead].state != F_FREE:  # (a free frame's rmap word holds links)
            rmap_prefetch(&self.rm, &self.pt, self.fm[ahead].rmap)
        ahead = ahead + 1 if ahead + 1 < self.frames else 0
        if not self._evictable(pfn):
            continue
        if self._rmap(pfn, RMAP_YOUNG, 0):      # referenced: second chance
            continue
        return pfn
    return -1
