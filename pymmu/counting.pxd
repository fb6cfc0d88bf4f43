# Counters and events, one unit of the core (DESIGN.md sections 6 and 11).
#
# Every counter goes through stat_add_to: the machine's counters (Core.stats) and
# a process's move together. stat_add counts for the process being served
# (Core.ps, set for the length of an access or a replay); a count made outside
# one names its process's counters itself (Core.count is the Python layer's way
# in). stat_note is the seam of the event log (pymmu/include/events.h): a counter
# that is also an event kind counts there, and while an `events()` block is open
# the same call records the event, so that a log's counts equal the counters'
# deltas by construction. Off, recording costs one flag test on fault paths only.
#
# Inline functions of a Core, declared here so that every module of the core
# (pymmu/_core.pyx, pymmu/_run.pyx) counts through the same code.
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memset

from pymmu._core cimport Core
from pymmu._pte cimport *
from pymmu._tables cimport *


cdef inline void stat_add_to(Core c, int64_t *ps, int stat, int64_t n) noexcept nogil:
    """Add ``n`` to counter ``stat`` of the machine and of the process whose
    counters are ``ps``: the one place a counter moves. A count made outside
    an access (when ``c.ps`` names no process: a vfork child's completed
    write, a fork, ``Core.count``) names its process's counters here."""
    c.stats[stat] += n
    ps[stat] += n


cdef inline void stat_add(Core c, int stat, int64_t n) noexcept nogil:
    """Add ``n`` to counter ``stat`` of the machine and of the process served."""
    stat_add_to(c, c.ps, stat, n)


cdef inline void stat_count(Core c, int stat) noexcept nogil:
    """Add 1 to counter ``stat``."""
    stat_add(c, stat, 1)


cdef inline void ev_record(Core c, int kind, int64_t pid, uint64_t vaddr, int64_t pfn,
                           int64_t slot) noexcept nogil:
    """Append one event (a block is open): the reference count so far as its seq,
    the simulated time inside m.run as its t_ns."""
    cdef event_t e
    memset(&e, 0, sizeof(e))            # the padding too: logs compare as bytes
    e.seq = c.references
    e.t_ns = c.now_ns
    e.pid = pid
    e.vaddr = vaddr
    e.pfn = pfn
    e.slot = slot
    e.kind = <uint8_t>kind
    evlog_push(&c.ev, &e)


cdef inline void stat_note(Core c, int stat, int kind, uint64_t vpn, int64_t pfn,
                           int64_t slot) noexcept nogil:
    """Count ``stat`` and, while recording, its event ``kind``: the current
    process's reference to page ``vpn``."""
    stat_count(c, stat)
    if unlikely(c.ev.on):
        ev_record(c, kind, c.cur_pid, vpn << c.page_shift, pfn, slot)


cdef inline void ev_victim(Core c, int64_t pfn, int64_t slot, bint written) noexcept nogil:
    """While recording: a victim's ``evictions`` then (if written) ``swap_outs``
    events, named by the lowest pid that mapped it (``rmap_owner``, which the
    eviction's RMAP_REPLACE pass just found; -1 / 0 when no PTE did)."""
    cdef int64_t owner = c.rmap_owner
    cdef uint64_t vaddr = 0
    if owner >= 0:
        vaddr = rmap_vpn(&c.rm, c.fm[pfn].rmap) << c.page_shift
    ev_record(c, E_EVICTIONS, owner, vaddr, pfn, slot)
    if written:
        ev_record(c, E_SWAP_OUTS, owner, vaddr, pfn, slot)
