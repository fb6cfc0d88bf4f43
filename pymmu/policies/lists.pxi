# fifo and lru, one unit of the core's replacement-policy interface: an intrusive
# doubly linked list of the used frames, oldest first (node `frames` is the head,
# Core.lnext / Core.lprev). Allocation appends (both), a use moves the frame last
# (lru only: list_use, from Core._policy_use and the replay loop), freeing unlinks;
# the victim is the oldest evictable frame. Included in pymmu/_core.pyx.


cdef inline void list_unlink(Core self, int64_t pfn) noexcept nogil:
    cdef int32_t a, b
    if self.lprev == NULL:
        return
    a, b = self.lprev[pfn], self.lnext[pfn]
    if a >= 0:
        self.lnext[a] = b
        self.lprev[b] = a
        self.lnext[pfn] = self.lprev[pfn] = -1


cdef inline void list_append(Core self, int64_t pfn) noexcept nogil:
    """Put ``pfn`` at the young end (fifo: just loaded; lru: just used)."""
    cdef int32_t head = <int32_t>self.frames, last = self.lprev[head]
    self.lnext[last] = <int32_t>pfn
    self.lprev[pfn] = last
    self.lnext[pfn] = head
    self.lprev[head] = <int32_t>pfn


cdef inline void list_use(Core self, int64_t pfn) noexcept nogil:
    """lru: ``pfn`` was just used: move it to the young end."""
    list_unlink(self, pfn)
    list_append(self, pfn)


cdef inline int64_t list_victim(Core self) noexcept nogil:
    """fifo and lru: the oldest evictable frame of the list, by load order
    (fifo) or last use (lru), O(1) per step."""
    cdef int64_t pfn = self.lnext[self.frames]
    while pfn != self.frames:
        if self._evictable(pfn):
            return pfn
        pfn = self.lnext[pfn]
    return -1
