# Belady's opt, one unit of the core's replacement-policy interface, live only
# during a replay that knows the future (Core.replay's next_use): every used frame
# is in exactly one of three lowest-first sets by its key (Core.opt_key): mapped
# before the replay (OPT_BEFORE), page never used again (key == opt_npos), or used
# again at position key < opt_npos (opt_next, stored reversed so that the lowest
# member is the farthest use). Included in pymmu/_core.pyx.


cdef int opt_begin(Core self, int64_t npos) except -1:
    """Set up opt's sets for a replay of ``npos`` page references. Frames
    mapped before it have no known future: they go first (OPT_BEFORE)."""
    cdef int64_t pfn
    opt_end(self)
    self.opt_owner = <int32_t *>malloc(max(npos, 1) * sizeof(int32_t))
    self.opt_key = <int64_t *>malloc(self.frames * sizeof(int64_t))
    if (self.opt_owner == NULL or self.opt_key == NULL
            or lowset_init(&self.opt_before, self.frames)
            or lowset_init(&self.opt_never, self.frames)
            or lowset_init(&self.opt_next, npos)):
        opt_end(self)
        raise MemoryError()
    self.opt_npos = npos
    for pfn in range(self.frames):
        self.opt_key[pfn] = -1
    self.opt_active = True
    for pfn in range(self.frames):
        if self.fm[pfn].state != F_FREE:
            opt_set(self, pfn, OPT_BEFORE)
    return 0


cdef void opt_end(Core self) noexcept:
    self.opt_active = False
    lowset_free(&self.opt_before)
    lowset_free(&self.opt_never)
    lowset_free(&self.opt_next)
    free(self.opt_owner)
    free(self.opt_key)
    self.opt_owner = NULL
    self.opt_key = NULL


cdef inline lowset_t *opt_set_of(Core self, int64_t pfn, int64_t key,
                                  uint64_t *member) noexcept nogil:
    """The set of opt's that holds a frame with ``key``, and its member there."""
    if key == OPT_BEFORE:
        member[0] = pfn
        return &self.opt_before
    if key >= self.opt_npos:
        member[0] = pfn
        return &self.opt_never
    member[0] = <uint64_t>(self.opt_npos - 1 - key)
    return &self.opt_next


cdef inline void opt_unset(Core self, int64_t pfn) noexcept nogil:
    """Take ``pfn`` out of opt's sets (it is freed, or gets a new key)."""
    cdef uint64_t member
    cdef lowset_t *s
    if self.opt_key[pfn] >= 0:
        s = opt_set_of(self, pfn, self.opt_key[pfn], &member)
        lowset_remove(s, member)
        self.opt_key[pfn] = -1


cdef inline void opt_set(Core self, int64_t pfn, int64_t key) noexcept nogil:
    """Give ``pfn`` the key ``key``: the position its page is used next."""
    cdef uint64_t member
    cdef lowset_t *s
    opt_unset(self, pfn)
    self.opt_key[pfn] = key
    s = opt_set_of(self, pfn, key, &member)     # (sets member: call it first)
    lowset_add(s, member)
    if key < self.opt_npos:
        self.opt_owner[key] = <int32_t>pfn


cdef int64_t opt_victim(Core self) noexcept nogil:
    """Belady's victim: the evictable frame whose page is used again last;
    among those with no known next use, the lowest pfn. -1 if none."""
    cdef int64_t x
    x = lowset_next(&self.opt_before, 0)
    while x >= 0:
        if self._evictable(x):
            return x
        x = lowset_next(&self.opt_before, x + 1)
    x = lowset_next(&self.opt_never, 0)
    while x >= 0:
        if self._evictable(x):
            return x
        x = lowset_next(&self.opt_never, x + 1)
    x = lowset_next(&self.opt_next, 0)
    while x >= 0:
        if self._evictable(self.opt_owner[self.opt_npos - 1 - x]):
            return self.opt_owner[self.opt_npos - 1 - x]
        x = lowset_next(&self.opt_next, x + 1)
    return -1
