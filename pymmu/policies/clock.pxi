# The clock policy (second chance; DESIGN.md section 6), a unit of the core's
# replacement-policy interface (policy_ops_t, pymmu/_core.pxd): its state is the
# hand; the reference bits it reads are the PTEs' accessed bits, through the
# reverse map. Included in pymmu/_core.pyx (pymmu/policies/_units.pxi).

ctypedef struct clock_t:
    int64_t hand            # the next frame to look at (0 on a fresh machine)


cdef inline clock_t *clock_of(Core c) noexcept nogil:
    return <clock_t *>c.pstate


cdef int clock_init(Core c) except -1:
    unit_state(c, sizeof(clock_t))
    return 0


cdef int64_t clock_victim(Core c) noexcept nogil:
    """Second chance over the frames in pfn order, circular (DESIGN.md section
    6): a referenced frame has its A bits cleared and is passed over."""
    cdef clock_t *s = clock_of(c)
    cdef int64_t pfn, ahead = (s.hand + PF_CLOCK) % c.frames
    for _ in range(2 * c.frames):
        pfn = s.hand
        s.hand = pfn + 1 if pfn + 1 < c.frames else 0
        if c.fm[ahead].state != F_FREE:  # (a free frame's rmap word holds links)
            rmap_prefetch(&c.rm, &c.pt, c.fm[ahead].rmap)
        ahead = ahead + 1 if ahead + 1 < c.frames else 0
        if not c._evictable(pfn):
            continue
        if c._rmap(pfn, RMAP_YOUNG, 0):     # referenced: second chance
            continue
        return pfn
    return VICTIM_NONE


cdef object clock_state(Core c):
    return {"hand": clock_of(c).hand}


cdef int clock_restore(Core c, dict state) except -1:
    # (snapshots before the policy unit kept the hand first in "scalars")
    hand = state["hand"] if "hand" in state else state["scalars"][0]
    if type(hand) is not int or not 0 <= hand < c.frames:
        raise ValueError("snapshot: the clock hand is out of range")
    clock_of(c).hand = hand
    return 0


cdef object clock_check(Core c):
    return None if 0 <= clock_of(c).hand < c.frames else "the clock hand is out of range"


cdef int64_t clock_hand(Core c) noexcept:
    return clock_of(c).hand


cdef policy_ops_t clock_unit
clock_unit.init = clock_init
clock_unit.free = unit_free
clock_unit.on_map = NULL
clock_unit.on_use = NULL
clock_unit.on_unmap = NULL
clock_unit.victim = clock_victim
clock_unit.begin = NULL
clock_unit.end = NULL
clock_unit.ahead = NULL
clock_unit.state = clock_state
clock_unit.restore = clock_restore
clock_unit.check = clock_check
clock_unit.nbytes = unit_nbytes_none
clock_unit.hand = clock_hand
