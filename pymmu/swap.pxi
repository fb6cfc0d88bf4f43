# Swap slots, one unit of the core: a slot's count of swap entries naming it
# (slot_t, pymmu/include/frame.h), its swap-cache frame, and its bytes in the swap
# device (Core.swapmem). A slot is free, in Core.free_slots, exactly when no swap
# entry names it and no frame caches it (DESIGN.md section 4 rule 6). Functions
# of the Core, included into pymmu/_core.pyx so that calls stay direct.


cdef inline void slot_put(Core self, int64_t slot, int64_t n) noexcept nogil:
    """Drop ``n`` swap entries naming a slot. At 0 the slot is free, unless a
    frame still caches it (rule 6: a clean copy keeps its slot, so that
    evicting it again writes nothing); ``uncache`` frees it then."""
    cdef slot_t *s = &self.sl[slot]
    s.count -= <int32_t>n
    if s.count == 0 and s.cache < 0:
        lowset_add(&self.free_slots, slot)


cdef inline void uncache(Core self, int64_t pfn) noexcept nogil:
    """Take frame ``pfn`` out of the swap cache (freed, or about to be written
    in place); its slot is free once no swap entry names it either."""
    cdef int64_t slot = self.fm[pfn].link
    self.fm[pfn].link = -1
    self.sl[slot].cache = -1
    if self.sl[slot].count == 0:
        lowset_add(&self.free_slots, slot)


cdef inline void swap_write(Core self, int64_t slot, int64_t pfn) noexcept nogil:
    """Write frame ``pfn`` to ``slot`` (an all-zero frame only flags the slot)."""
    if self.fm[pfn].czero:
        self.sl[slot].zero = 1
    else:
        page_copy(&self.swapmem[slot, 0], &self.mem[pfn, 0], self.page_size)
        self.sl[slot].zero = 0


cdef inline void swap_read(Core self, int64_t pfn, int64_t slot) noexcept nogil:
    """Read ``slot`` into frame ``pfn``."""
    if self.sl[slot].zero:
        if not self.fm[pfn].czero:
            page_zero(&self.mem[pfn, 0], self.page_size)
            self.fm[pfn].czero = 1
    else:
        page_copy(&self.mem[pfn, 0], &self.swapmem[slot, 0], self.page_size)
        self.fm[pfn].czero = 0
