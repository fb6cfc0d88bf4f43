# The random policy, a unit of the core's replacement-policy interface
# (policy_ops_t, pymmu/_core.pxd): its state is a splitmix64 generator seeded
# with the machine's seed, so that runs repeat. Included in pymmu/_core.pyx
# (pymmu/policies/_units.pxi).

ctypedef struct random_t:
    uint64_t rng            # splitmix64's state


cdef inline random_t *random_of(Core c) noexcept nogil:
    return <random_t *>c.pstate


cdef int random_init(Core c) except -1:
    (<random_t *>unit_state(c, sizeof(random_t))).rng = c.seed
    return 0


cdef int64_t random_victim(Core c) noexcept nogil:
    """An evictable frame drawn uniformly by the machine's seeded generator."""
    cdef int64_t pfn, count = 0, k
    for pfn in range(c.frames):
        count += c._evictable(pfn)
    if count == 0:
        return VICTIM_NONE
    k = <int64_t>(splitmix64(&random_of(c).rng) % <uint64_t>count)
    for pfn in range(c.frames):
        if c._evictable(pfn):
            if k == 0:
                return pfn
            k -= 1
    return VICTIM_NONE


cdef object random_state(Core c):
    return {"rng": random_of(c).rng}


cdef int random_restore(Core c, dict state) except -1:
    # (snapshots before the policy unit kept the generator third in "scalars")
    rng = state["rng"] if "rng" in state else state["scalars"][2]
    if type(rng) is not int or not 0 <= rng < 2 ** 64:
        raise ValueError("snapshot: the random policy's state is not a 64-bit number")
    random_of(c).rng = rng
    return 0


cdef policy_ops_t random_unit
random_unit.init = random_init
random_unit.free = unit_free
random_unit.on_map = NULL
random_unit.on_use = NULL
random_unit.on_unmap = NULL
random_unit.victim = random_victim
random_unit.begin = NULL
random_unit.end = NULL
random_unit.ahead = NULL
random_unit.state = random_state
random_unit.restore = random_restore
random_unit.check = unit_sound
random_unit.nbytes = unit_nbytes_none
random_unit.hand = unit_no_hand
