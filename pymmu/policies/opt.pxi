# Belady's opt, a unit of the core's replacement-policy interface (policy_ops_t,
# pymmu/_core.pxd), live only during a replay that knows the future (begin/end
# around Core.replay, given Trace.next_use): every used frame is in exactly one
# of three lowest-first sets by its key: mapped before the replay (OPT_BEFORE),
# page never used again (key == npos), or used again at position key < npos
# (`later`, stored reversed so that the lowest member is the farthest use).
# Outside such a replay its victim is VICTIM_BLIND (opt needs the future).
# Included in pymmu/_core.pyx (pymmu/policies/_units.pxi).

# the key of a frame mapped before the replay (after every real position)
cdef int64_t OPT_BEFORE = (<int64_t>1) << 62

ctypedef struct opt_t:
    bint active             # in a replay that knows the future
    int64_t base            # m.references before it: a reference's position is
                            # ref - base - 1
    int64_t npos            # page references in the replay
    const int64_t *next_use # per position: the next position of its page (or npos)
    int64_t *key            # per frame: its key, or -1 (free)
    lowset_t before         # frames, lowest pfn first
    lowset_t never          # frames, lowest pfn first
    lowset_t later          # npos - 1 - key: the farthest use first
    int32_t *owner          # key -> the frame whose next use it is


cdef inline opt_t *opt_of(Core c) noexcept nogil:
    return <opt_t *>c.pstate


cdef int opt_init(Core c) except -1:
    cdef opt_t *s = <opt_t *>unit_state(c, sizeof(opt_t))
    s.before.levels = s.never.levels = s.later.levels = 0
    return 0


cdef void opt_free(Core c) noexcept:
    if c.pstate != NULL:
        opt_end(c)
    unit_free(c)


cdef int opt_begin(Core c, const int64_t *next_use, int64_t npos) except -1:
    """Set up the sets for a replay of ``npos`` page references. Frames mapped
    before it have no known future: they go first (OPT_BEFORE)."""
    cdef opt_t *s = opt_of(c)
    cdef int64_t pfn
    opt_end(c)
    s.owner = <int32_t *>malloc(max(npos, 1) * sizeof(int32_t))
    s.key = <int64_t *>malloc(c.frames * sizeof(int64_t))
    if (s.owner == NULL or s.key == NULL or lowset_init(&s.before, c.frames)
            or lowset_init(&s.never, c.frames) or lowset_init(&s.later, npos)):
        opt_end(c)
        raise MemoryError()
    s.npos = npos
    s.next_use = next_use
    s.base = c.references
    for pfn in range(c.frames):
        s.key[pfn] = -1
    s.active = True
    for pfn in range(c.frames):
        if c.fm[pfn].state != F_FREE:
            opt_set(s, pfn, OPT_BEFORE)
    return 0


cdef void opt_end(Core c) noexcept:
    cdef opt_t *s = opt_of(c)
    s.active = False
    lowset_free(&s.before)
    lowset_free(&s.never)
    lowset_free(&s.later)
    free(s.owner)
    free(s.key)
    s.owner = NULL
    s.key = NULL
    s.next_use = NULL


cdef inline lowset_t *opt_set_of(opt_t *s, int64_t pfn, int64_t key,
                                  uint64_t *member) noexcept nogil:
    """The set that holds a frame with ``key``, and its member there."""
    if key == OPT_BEFORE:
        member[0] = pfn
        return &s.before
    if key >= s.npos:
        member[0] = pfn
        return &s.never
    member[0] = <uint64_t>(s.npos - 1 - key)
    return &s.later


cdef inline void opt_unset(opt_t *s, int64_t pfn) noexcept nogil:
    """Take ``pfn`` out of the sets (it is freed, or gets a new key)."""
    cdef uint64_t member
    cdef lowset_t *set_
    if s.key[pfn] >= 0:
        set_ = opt_set_of(s, pfn, s.key[pfn], &member)  # (sets member: call it first)
        lowset_remove(set_, member)
        s.key[pfn] = -1


cdef inline void opt_set(opt_t *s, int64_t pfn, int64_t key) noexcept nogil:
    """Give ``pfn`` the key ``key``: the position its page is used next."""
    cdef uint64_t member
    cdef lowset_t *set_
    opt_unset(s, pfn)
    s.key[pfn] = key
    set_ = opt_set_of(s, pfn, key, &member)     # (sets member: call it first)
    lowset_add(set_, member)
    if key < s.npos:
        s.owner[key] = <int32_t>pfn


cdef void opt_use(Core c, int64_t pfn, int64_t ref) noexcept nogil:
    """Reference ``ref`` to ``pfn``: its key is now the next use of the page."""
    cdef opt_t *s = opt_of(c)
    cdef int64_t pos = ref - s.base - 1, key
    if not s.active:
        return
    key = s.next_use[pos] if pos < s.npos else s.npos      # (never read past it)
    if s.key[pfn] != key:
        opt_set(s, pfn, key)


cdef void opt_ahead(Core c, int64_t ref) noexcept nogil:
    """Prefetch the set word and owner entry that reference ``ref`` will update
    (a random spot: the next use of some page)."""
    cdef opt_t *s = opt_of(c)
    cdef int64_t pos = ref - s.base - 1, key
    if s.active and pos < s.npos:
        key = s.next_use[pos]
        if key < s.npos:
            prefetch(&s.owner[key])
            prefetch(lowset_word(&s.later, s.npos - 1 - key))


cdef void opt_unmap(Core c, int64_t pfn) noexcept nogil:
    cdef opt_t *s = opt_of(c)
    if s.active:
        opt_unset(s, pfn)


cdef int64_t opt_victim(Core c) noexcept nogil:
    """Belady's victim: the evictable frame whose page is used again last;
    among those with no known next use, the lowest pfn."""
    cdef opt_t *s = opt_of(c)
    cdef int64_t x
    if not s.active:
        return VICTIM_BLIND
    x = lowset_next(&s.before, 0)
    while x >= 0:
        if c._evictable(x):
            return x
        x = lowset_next(&s.before, x + 1)
    x = lowset_next(&s.never, 0)
    while x >= 0:
        if c._evictable(x):
            return x
        x = lowset_next(&s.never, x + 1)
    x = lowset_next(&s.later, 0)
    while x >= 0:
        if c._evictable(s.owner[s.npos - 1 - x]):
            return s.owner[s.npos - 1 - x]
        x = lowset_next(&s.later, x + 1)
    return VICTIM_NONE


cdef object opt_nbytes(Core c):
    # during a replay: a key per frame; an owner and a set bit per reference
    return (0, sizeof(int64_t), sizeof(int32_t) + 1 / 8)


cdef policy_ops_t opt_unit
opt_unit.init = opt_init
opt_unit.free = opt_free
opt_unit.on_map = NULL
opt_unit.on_use = opt_use
opt_unit.on_unmap = opt_unmap
opt_unit.victim = opt_victim
opt_unit.begin = opt_begin
opt_unit.end = opt_end
opt_unit.ahead = opt_ahead
opt_unit.state = unit_stateless
opt_unit.restore = unit_restore_nothing
opt_unit.check = unit_sound
opt_unit.nbytes = opt_nbytes
opt_unit.hand = unit_no_hand
