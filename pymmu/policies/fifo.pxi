# The fifo policy, a unit of the core's replacement-policy interface (policy_ops_t,
# pymmu/_core.pxd): an intrusive doubly linked list of the used frames, oldest
# first (node ``frames`` is the head). A frame given a page goes last, a freed one
# leaves, the victim is the oldest evictable frame. The list operations are the
# lru and mru units' too (they move a frame last on every use). Included in
# pymmu/_core.pyx (pymmu/policies/_units.pxi).

ctypedef struct flist_t:
    int32_t *next           # frames + 1 links each: next / previous frame on the
    int32_t *prev           # list (-1: not on it); node `frames` is the head


cdef inline flist_t *flist_of(Core c) noexcept nogil:
    return <flist_t *>c.pstate


cdef int flist_init(Core c) except -1:
    """The state and its two link arrays, in one block: an empty list."""
    cdef int64_t i, n = c.frames + 1
    cdef flist_t *s = <flist_t *>unit_state(c, sizeof(flist_t) + 2 * n * sizeof(int32_t))
    s.next = <int32_t *>(s + 1)
    s.prev = s.next + n
    for i in range(n):
        s.next[i] = s.prev[i] = -1
    s.next[c.frames] = s.prev[c.frames] = <int32_t>c.frames
    return 0


cdef inline void flist_unlink(Core c, int64_t pfn) noexcept nogil:
    cdef flist_t *s = flist_of(c)
    cdef int32_t a = s.prev[pfn], b = s.next[pfn]
    if a >= 0:
        s.next[a] = b
        s.prev[b] = a
        s.next[pfn] = s.prev[pfn] = -1


cdef inline void flist_append(Core c, int64_t pfn) noexcept nogil:
    """Put ``pfn`` at the young end (fifo: just loaded; lru: just used)."""
    cdef flist_t *s = flist_of(c)
    cdef int32_t head = <int32_t>c.frames, last = s.prev[head]
    s.next[last] = <int32_t>pfn
    s.prev[pfn] = last
    s.next[pfn] = head
    s.prev[head] = <int32_t>pfn


cdef void flist_map(Core c, int64_t pfn) noexcept nogil:
    flist_append(c, pfn)


cdef void flist_unmap(Core c, int64_t pfn) noexcept nogil:
    flist_unlink(c, pfn)


cdef int64_t flist_oldest(Core c) noexcept nogil:
    """The oldest evictable frame of the list (fifo: by load, lru: by last use)."""
    cdef flist_t *s = flist_of(c)
    cdef int64_t pfn = s.next[c.frames]
    while pfn != c.frames:
        if c._evictable(pfn):
            return pfn
        pfn = s.next[pfn]
    return VICTIM_NONE


cdef object flist_state(Core c):
    cdef flist_t *s = flist_of(c)
    cdef size_t n = (c.frames + 1) * sizeof(int32_t)
    return {"lnext": (<char *>s.next)[:n], "lprev": (<char *>s.prev)[:n]}


cdef int flist_restore(Core c, dict state) except -1:
    cdef flist_t *s = flist_of(c)
    cdef size_t n = (c.frames + 1) * sizeof(int32_t)
    for key, dst in (("lnext", <uintptr_t>s.next), ("lprev", <uintptr_t>s.prev)):
        src = state.get(key)
        if not isinstance(src, bytes) or len(src) != n:
            raise ValueError(f"snapshot: the policy's {key} table has the wrong size")
        memcpy(<void *>dst, <const char *>src, n)
    return 0


cdef object flist_check(Core c):
    """One list through the head, every used frame on it once, no free one."""
    cdef flist_t *s = flist_of(c)
    cdef int64_t pfn, cur, nxt, steps, frames = c.frames
    for pfn in range(frames + 1):
        if not -1 <= s.next[pfn] <= frames or not -1 <= s.prev[pfn] <= frames:
            return f"frame {pfn}'s list links are out of range"
    cur, steps = frames, 0
    while True:
        nxt = s.next[cur]
        if nxt < 0 or s.prev[nxt] != cur or steps > frames:
            return f"the policy's list is broken after frame {cur}"
        if nxt == frames:
            break
        if c.fm[nxt].state == F_FREE:
            return f"free frame {nxt} is on the policy's list"
        cur, steps = nxt, steps + 1
    for pfn in range(frames):
        if (c.fm[pfn].state != F_FREE) != (s.prev[pfn] >= 0):
            return f"frame {pfn} is {'not ' if s.prev[pfn] < 0 else ''}on the policy's list"
    if steps != sum(c.fm[pfn].state != F_FREE for pfn in range(frames)):
        return "the policy's list does not hold every used frame once"
    return None


cdef object flist_nbytes(Core c):
    return (2 * sizeof(int32_t), 0, 0)


cdef policy_ops_t fifo_unit
fifo_unit.init = flist_init
fifo_unit.free = unit_free
fifo_unit.on_map = flist_map
fifo_unit.on_use = NULL
fifo_unit.on_unmap = flist_unmap
fifo_unit.victim = flist_oldest
fifo_unit.begin = NULL
fifo_unit.end = NULL
fifo_unit.ahead = NULL
fifo_unit.state = flist_state
fifo_unit.restore = flist_restore
fifo_unit.check = flist_check
fifo_unit.nbytes = flist_nbytes
fifo_unit.hand = unit_no_hand
