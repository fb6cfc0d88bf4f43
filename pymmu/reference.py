"""The oracle: a small, readable pure-Python model of pymmu's semantics.

This module is the executable specification. It implements DESIGN.md sections
2-7 and the reclaim rules exactly as ``docs/semantics.md`` pins them down, with
plain Python data structures and no attempt at speed. The Cython core
(``pymmu.Machine``) must agree with it byte for byte and counter for counter;
the differential tests in ``tests/test_state_machine.py`` hold them to that.

Where the model keeps its state:

* frame bytes: one ``bytearray`` of ``frames + 1`` pages (the last is the zero page);
* per frame: refcount, state (free, anon, file, shmem), reverse map, fifo/lru stamps;
* free frames: two sets, the zero pool (pre-zeroed) and the dirty set;
* page tables: a radix tree per address space, one dict per node;
* swap: a count per slot, the bytes of used slots, and the swap cache
  (slot -> frame of a page that is both in swap and resident);
* the TLB: one direct-mapped array, entries tagged (asid, vpn);
* observation (DESIGN.md section 11): ``references`` (page references started,
  the events' seq) and a ``pymmu.events.ListRecorder`` behind ``m.events()``,
  fed by ``_event`` (each counter kind), ``_evict`` (evictions, then swap_outs)
  and ``_fault_event`` (oom, segv, protection);
* a policy written in Python (``pymmu.policy.Policy``, DESIGN.md section 11):
  ``_ask_victim`` asks it for a victim through a :class:`PolicyView`, and
  ``_hook`` calls ``on_free`` (in ``_free_frame``: every frame that goes back to
  the free sets), ``on_map`` (in ``_alloc``: every allocation of a frame to a
  page) and ``on_access`` (in ``_touch``: every page reference but those of the
  zero page). Every public method (and every property that reads state) goes
  through ``_api``, which refuses calls from inside a hook and raises the first
  exception a later hook raised once the outermost call completes.

The copy-on-write story (DESIGN.md section 8, ``pymmu demo``):

>>> m = Machine(8)
>>> p = m.spawn()
>>> a = p.mmap(3 * m.page_size)
>>> for i, tag in enumerate(b"ABC"):
...     p.write(a + i * m.page_size, bytes([tag]) * 4)
>>> c = p.fork()
>>> c.write(a + 2 * m.page_size, b"c")
>>> m.stats["cow_copies"]
1
>>> [m.refcount(p.translate(a + i * m.page_size) // m.page_size) for i in range(3)]
[2, 2, 1]
>>> p.read(a + 2 * m.page_size, 2), c.read(a + 2 * m.page_size, 2)
(b'CC', b'cC')
>>> c.exit(7); p.wait(c)
7
>>> p.exit(); m.frames_free == m.frames
True

Belady's anomaly under fifo (every first touch and every refault counts):

>>> def faults(refs, frames, policy="fifo"):
...     m = Machine(frames, zero_page=False, policy=policy, swap_slots=64)
...     p = m.spawn()
...     base = p.mmap(8 * m.page_size)
...     for r in refs:
...         p.read(base + r * m.page_size, 1)
...     return m.stats["minor_faults"] + m.stats["major_faults"]
>>> belady = [1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]
>>> faults(belady, 3), faults(belady, 4)
(9, 10)
>>> book = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1]
>>> faults(book, 3, "fifo"), faults(book, 3, "lru")
(15, 12)
"""
from __future__ import annotations

import functools
import operator
import weakref
from fractions import Fraction

import numpy as np

from pymmu._args import (
    MMAP_MIN, STAT_NAMES, as_buffer, as_int, check_machine_args, count_int, levels_for,
    nonneg_int, parse_prot, positive_int,
)
from pymmu._children import Children
from pymmu.errors import (
    InvariantError, MemoryFault, OutOfMemory, ProcessStateError, ProtectionFault,
    SegmentationFault,
)
from pymmu.image import Image
from pymmu.introspect import FRAME_TABLE_DTYPE
from pymmu.policy import Policy
from pymmu.pte import (
    ACCESSED, COW, DIRTY, EXECUTABLE, PFN_SHIFT, PRESENT, READABLE, SHARED, SWAP, USER,
    WRITABLE, ZERO, page_table_rows,
)
from pymmu.tables import PROT_EXEC, PROT_READ, PROT_WRITE
from pymmu.vmas import AddressMap, Vma, mapping_of

__all__ = ["Machine", "Process", "PolicyView"]

_FRAME_KINDS = {"free": "", "anon": "anon", "file": "file", "shmem": "shared"}

_M64 = (1 << 64) - 1
_NEEDS = {"read": PROT_READ, "write": PROT_WRITE, "execute": PROT_EXEC}
_ALLOWS = {"read": READABLE, "write": WRITABLE, "execute": EXECUTABLE}
# Trace kind codes FETCH, LOAD, STORE, MODIFY: a modify is one write.
_TRACE_ACCESS = ("execute", "read", "write", "write")
_NEVER = 1 << 62     # opt: the next use of a frame mapped before the replay


def _api(method):
    """Wrap a public method (or the getter of a property that reads state) of
    Machine or Process (DESIGN.md section 11, policies written in Python):

    * inside a policy hook, the call raises ``RuntimeError`` and does nothing;
    * the outermost such call raises, once it has completed, the first exception
      that ``on_free``, ``on_map`` or ``on_access`` raised during it. If the call
      itself raises, its own exception propagates and the hook's is dropped.
    """
    @functools.wraps(method)
    def api(self, *args, **kwargs):
        m = self._m if isinstance(self, Process) else self
        if m._in_hook is not None:
            raise RuntimeError(f"a policy hook ({type(m._py_policy).__name__}."
                               f"{m._in_hook}) must not call the machine "
                               f"({method.__name__})")
        m._depth += 1
        try:
            result = method(self, *args, **kwargs)
        except BaseException:
            if m._depth == 1:
                m._hook_exc = None
            raise
        finally:
            m._depth -= 1
        if m._depth == 0 and m._hook_exc is not None:
            exc, m._hook_exc = m._hook_exc, None
            raise exc
        return result

    return api


def _as_pfn(pfn, frames: int) -> int | None:
    """``pfn`` as a user frame number, or None: what ``operator.index`` takes (an
    int, numpy integers, any object with ``__index__``) but a bool, in
    ``[0, frames)``. A type without ``__index__`` (float, str) is None; what its
    ``__index__`` raises propagates (the policy's own error)."""
    if isinstance(pfn, bool) or not hasattr(type(pfn), "__index__"):
        return None
    pfn = operator.index(pfn)
    return pfn if 0 <= pfn < frames else None


def _set_index(exc: BaseException, index: int) -> None:
    """Give a policy's exception the ``.index`` of the record it stopped a replay at."""
    try:
        exc.index = index
    except (AttributeError, TypeError):
        pass


class PolicyView:
    """What ``Policy.victim(view)`` sees of the machine (DESIGN.md section 11).

    Valid only during the ``victim`` call it is given to (``RuntimeError``
    afterwards). Each method takes a user pfn, an int (numpy integers too) with
    ``0 <= pfn < frames``; anything else raises ``ValueError``.
    """

    def __init__(self, machine: "Machine"):
        self._m = machine
        self._live = True

    @property
    def frames(self) -> int:
        """The number of user frames."""
        return self._m._frames

    def _pfn(self, pfn) -> int:
        if not self._live:
            raise RuntimeError("a PolicyView is valid only inside the victim() call "
                               "it was given to")
        checked = _as_pfn(pfn, self._m._frames)
        if checked is None:
            raise ValueError(f"pfn must be an int in [0, {self._m._frames}), not {pfn!r}")
        return checked

    def evictable(self, pfn) -> bool:
        """Could ``pfn`` be the victim now (what the built-in policies consider)?
        Not free, not held by the access in progress, and a swap slot free if
        its page needs a new one."""
        return self._m._evictable(self._pfn(pfn))

    def accessed(self, pfn) -> bool:
        """The OR of the accessed bits of the PTEs that map ``pfn``."""
        return self._m._frame_bit(self._pfn(pfn), ACCESSED)

    def dirty(self, pfn) -> bool:
        """The OR of the dirty bits of the PTEs that map ``pfn``."""
        return self._m._frame_bit(self._pfn(pfn), DIRTY)

    def clear_accessed(self, pfn) -> bool:
        """Test and clear: clear the accessed bit of every PTE that maps ``pfn``
        (through the reverse map; their TLB entries go, as with the built-in
        clock's second chance); True if any was set."""
        return self._m._clear_young(self._pfn(pfn))

    def __repr__(self) -> str:
        return f"<reference.PolicyView frames={self._m._frames}>"


class SplitMix64:
    """The seeded generator of the random policy (Steele, Lea and Flood 2014)."""

    def __init__(self, seed: int):
        self.state = seed & _M64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return z ^ (z >> 31)


class _ShmObject:
    """A shared memory object (Linux's shmem): the backing of a MAP_SHARED mapping.

    Each page is resident (``frames[idx] = pfn``), swapped (``slots[idx] = slot``)
    or not yet touched (neither).
    """

    def __init__(self, npages: int):
        self.npages = npages
        self.frames: dict[int, int] = {}
        self.slots: dict[int, int] = {}


class _FileBacking:
    """The image a file mapping reads its pages from (compared by identity)."""

    def __init__(self, layout, name: str):
        self.layout = layout
        self.name = name


class _AddressSpace:
    """Mappings plus a radix page table. Nodes are dicts: index -> child (or PTE at
    the last level); a PTE of 0 is simply absent."""

    def __init__(self, asid: int, family: int, levels: int, bits: int):
        self.asid = asid
        self.family = family          # fork family: who may share anon frames
        self.vmas = AddressMap()
        self.levels, self.bits = levels, bits
        self.root: dict = {}
        self.nodes = 1                # the root exists as long as the space does

    def _index(self, vpn: int, level: int) -> int:
        return (vpn >> (self.bits * (self.levels - 1 - level))) & ((1 << self.bits) - 1)

    def get(self, vpn: int) -> int:
        node = self.root
        for level in range(self.levels - 1):
            node = node.get(self._index(vpn, level))
            if node is None:
                return 0
        return node.get(self._index(vpn, self.levels - 1), 0)

    def set(self, vpn: int, pte: int) -> None:
        node = self.root
        for level in range(self.levels - 1):
            i = self._index(vpn, level)
            child = node.get(i)
            if child is None:
                if pte == 0:
                    return            # clearing an entry never creates nodes
                child = node[i] = {}
                self.nodes += 1
            node = child
        i = self._index(vpn, self.levels - 1)
        if pte:
            node[i] = pte
        else:
            node.pop(i, None)         # empty nodes stay until the space is destroyed

    def entries(self, lo: int = 0, hi: int | None = None):
        """Yield ``(vpn, pte)`` for every non-zero PTE with lo <= vpn < hi, in order."""
        if hi is None:
            hi = 1 << (self.bits * self.levels)

        def walk(node, level, base):
            span = 1 << (self.bits * (self.levels - 1 - level))
            for i in sorted(node):
                first = base + i * span
                if first + span <= lo or first >= hi:
                    continue
                if level == self.levels - 1:
                    yield first, node[i]
                else:
                    yield from walk(node[i], level + 1, first)

        yield from walk(self.root, 0, 0)


class Machine:
    """A machine: physical frames, swap, processes. See DESIGN.md section 7.

    Parameters
    ----------
    frames : int
        Number of user frames (the zero page is one more, pfn ``frames``).
    page_size, swap_slots, va_bits, zero_pool, zero_page, tlb_entries,
    strict_vfork, seed
        As in ``pymmu.Machine``; see docs/semantics.md section 1.
    policy : str or pymmu.policy.Policy
        A built-in policy's name, or a policy written in Python (DESIGN.md
        section 11): its hooks are called as ``_ask_victim`` and ``_hook`` say.
    """

    def __init__(self, frames, *, page_size=4096, swap_slots=0, policy="clock",
                 va_bits=48, zero_pool=None, zero_page=True, tlb_entries=64,
                 strict_vfork=False, seed=0):
        (frames, page_size, swap_slots, policy, va_bits, zero_pool, tlb_entries,
         seed) = check_machine_args(frames, page_size, swap_slots, policy, va_bits,
                                    zero_pool, tlb_entries, seed)
        self._frames, self._page_size, self._swap_slots = frames, page_size, swap_slots
        self._va_bits, self._zero_pool = va_bits, zero_pool
        # A Python policy (DESIGN.md section 11): _policy is then "python", so no
        # built-in rule (the clock hand, opt's future) applies. wants_access is
        # read once, here.
        if isinstance(policy, Policy):
            self._policy, self._py_policy = "python", policy
            self._wants_access = bool(policy.wants_access)
        else:
            self._policy, self._py_policy, self._wants_access = policy, None, False
        self._in_hook: str | None = None          # the hook being called, if any
        self._hook_exc: BaseException | None = None   # the first one a later hook raised
        self._depth = 0                           # public calls under way (see _api)
        self._zero_page_on, self._strict_vfork = bool(zero_page), bool(strict_vfork)
        self._shift = page_size.bit_length() - 1
        self._levels, self._bits = levels_for(va_bits, self._shift)
        self._max_vpn = 1 << (va_bits - self._shift)
        self._zero_pfn = frames

        # Physical memory: every frame starts zeroed, so all are in the pool.
        self._mem = bytearray((frames + 1) * page_size)
        self._ref = [0] * (frames + 1)
        self._state = ["free"] * frames
        self._rmap: list = [None] * frames       # (family, vpn) or (shm object, index)
        self._pool = set(range(frames))
        self._dirty: set[int] = set()
        self._loaded = [0] * frames               # fifo: when the content was loaded
        self._used = [0] * frames                 # lru and mru: last touch
        self._tick = 0
        self._hand = 0                            # clock hand
        self._rng = SplitMix64(seed)
        self._pinned: set[int] = set()            # frames this call must keep
        self._future: dict | None = None          # opt, in replay: pfn -> next use

        # Swap: slot counts, bytes of used slots, the swap cache both ways.
        self._slot_count = [0] * swap_slots
        self._slot_data: dict[int, bytes] = {}
        self._swap_cache: dict[int, int] = {}     # slot -> pfn
        self._frame_slot: dict[int, int] = {}     # pfn -> slot

        self._tlb: list = [None] * tlb_entries    # (asid, vpn, pte without A/D)
        self._spaces: dict[int, _AddressSpace] = {}
        self._procs: dict[int, Process] = {}     # those that have not exited
        self._gone = weakref.WeakValueDictionary()   # exited ones, while others hold them
        self._next_pid = self._next_asid = self._next_family = 1
        self._stats = dict.fromkeys(STAT_NAMES, 0)

        # Observation (DESIGN.md section 11): page references started, ever
        # (the events' seq), and the recorder behind m.events() (made by the
        # first call; a pymmu.events.ListRecorder records only inside a block).
        self._references = 0
        self._recorder = None

    @_api
    def __getstate__(self) -> dict:
        """Snapshots keep everything but the event recorder: a copy does not
        record (an events() block belongs to its machine)."""
        state = self.__dict__.copy()
        state["_recorder"] = None
        state["_depth"] = 0                       # this very call is one
        # weak references do not pickle; items(), since a lookup by key raises
        # KeyError for an entry the collector frees meanwhile
        state["_gone"] = dict(self._gone.items())
        return state

    def __setstate__(self, state: dict) -> None:
        gone = state.pop("_gone", {})
        self.__dict__.update(state)
        self._gone = weakref.WeakValueDictionary(gone)

    def __copy__(self):
        raise TypeError("copy.copy of a Machine would share its state: "
                        "use copy.deepcopy or pickle")

    # ------------------------------------------------------------------ public

    page_size = property(lambda self: self._page_size)
    frames = property(lambda self: self._frames)
    swap_slots = property(lambda self: self._swap_slots)

    @property
    def policy(self):
        """The built-in policy's name, or the ``pymmu.policy.Policy`` instance."""
        return self._policy if self._py_policy is None else self._py_policy

    @property
    @_api
    def frames_free(self) -> int:
        return len(self._pool) + len(self._dirty)

    @property
    @_api
    def swap_free(self) -> int:
        return sum(1 for i in range(self._swap_slots) if self._slot_is_free(i))

    @property
    @_api
    def page_table_pages(self) -> int:
        """Radix-tree nodes of every live address space."""
        return sum(s.nodes for s in self._spaces.values())

    @property
    @_api
    def stats(self) -> dict:
        return dict(self._stats)

    @_api
    def reset_stats(self) -> None:
        self._stats = dict.fromkeys(STAT_NAMES, 0)

    @_api
    def refcount(self, pfn) -> int:
        """PTEs mapping ``pfn`` over all address spaces (``frames``: the zero page)."""
        pfn = as_int(pfn, "pfn")
        if not 0 <= pfn <= self._frames:
            raise ValueError(f"pfn must be in 0..{self._frames}, got {pfn}")
        return self._ref[pfn]

    @_api
    def idle(self, n=None) -> int:
        """Zero dirty free frames into the pool, lowest pfn first; returns how many."""
        n = None if n is None else count_int(n, "n")
        moved = 0
        while self._dirty and (n is None or moved < n) and (
                self._zero_pool is None or len(self._pool) < self._zero_pool):
            pfn = min(self._dirty)
            self._dirty.remove(pfn)
            self._zero(pfn)
            self._pool.add(pfn)
            moved += 1
        return moved

    @_api
    def spawn(self) -> "Process":
        """A new parentless process with an empty address space and a new family."""
        p = self._new_process(ppid=0)
        p._as = self._new_space(self._new_family())
        return p

    @_api
    def process(self, pid) -> "Process":
        pid = as_int(pid, "pid")
        p = self._procs.get(pid)
        if p is None:
            p = self._gone.get(pid)
        if p is None:
            raise KeyError(f"no process with pid {pid} (or it exited and was let go)")
        return p

    # ------------------------------------------------------------------ observation

    @property
    @_api
    def references(self) -> int:
        """Page references started over the machine's life (each page an access
        touches is one); only grows, kept by snapshots, untouched by reset_stats."""
        return self._references

    @property
    @_api
    def clock_hand(self) -> int | None:
        """The pfn under the clock hand (policy "clock"), else None."""
        return self._hand if self._policy == "clock" else None

    @_api
    def events(self, limit=None):
        """A ``pymmu.events.EventLog`` to use as ``with m.events() as log:``: one
        row per event recorded inside the block (DESIGN.md section 11)."""
        from pymmu.events import EventLog, ListRecorder

        if self._recorder is None:
            self._recorder = ListRecorder(guard=self._refuse_in_hook)
        return EventLog(self._recorder, limit)

    def _refuse_in_hook(self) -> None:
        """The event log's guard: a policy hook may not open, read or close the
        block (``log.array``, ``__exit__``...), as a hook may call no method of
        the machine it serves."""
        if self._in_hook is not None:
            raise RuntimeError(f"a policy hook ({type(self._py_policy).__name__}."
                               f"{self._in_hook}) must not use the machine's event log")

    @_api
    def processes(self) -> list:
        """Every process that is not "exited", by pid."""
        return [p for _, p in sorted(self._procs.items()) if p.state != "exited"]

    @_api
    def frame_table(self) -> np.ndarray:
        """One row of :data:`FRAME_TABLE_DTYPE` per user frame, by pfn."""
        rows = []
        for pfn in range(self._frames):
            if pfn in self._pool:
                state = "free_zeroed"
            elif pfn in self._dirty:
                state = "free_dirty"
            else:
                state = "used"
            mappers = self._mappers(pfn) if self._state[pfn] != "free" else []
            pid, vaddr = self._lowest_mapper(mappers)
            ptes = [s.get(vpn) for s, vpn in mappers]
            rows.append((pfn, state, self._ref[pfn], _FRAME_KINDS[self._state[pfn]],
                         pid, vaddr, any(pte & ACCESSED for pte in ptes),
                         any(pte & DIRTY for pte in ptes), self._frame_slot.get(pfn, -1)))
        rows = np.array(rows, dtype=FRAME_TABLE_DTYPE)
        return rows

    def _lowest_mapper(self, mappers) -> tuple[int, int]:
        """(pid, vaddr) of the lowest pid whose address space holds one of
        ``mappers`` ((space, vpn) pairs); (-1, 0) when none. A vfork child
        shares its parent's space, so the parent (the lower pid) names it."""
        best = (-1, 0)
        for s, vpn in mappers:
            for p in self._procs.values():
                if p._as is s and (best[0] < 0 or p.pid < best[0]):
                    best = (p.pid, vpn << self._shift)
        return best

    # ------------------------------------------------------------------ small helpers

    def _count(self, proc, name: str, k: int = 1) -> None:
        """An event: counted for the machine and the process that caused it."""
        self._stats[name] += k
        proc._stats[name] += k

    def _event(self, proc, name: str, vpn: int, pfn: int = -1, slot: int = -1) -> None:
        """Count one event of a counter kind and record it: the reference now
        under way, made by ``proc``, to page ``vpn``."""
        self._count(proc, name)
        self._record(name, proc.pid, vpn << self._shift, pfn, slot)

    def _fault_event(self, proc, kind: str, at: int) -> None:
        """Record an access refused with ``kind`` ("oom", "segv", "protection")
        at byte address ``at`` (beyond 64 bits: the last 64-bit page)."""
        page = (min(at, _M64) >> self._shift) << self._shift
        self._record(kind, proc.pid, page)

    def _record(self, kind: str, pid: int, vaddr: int, pfn: int = -1, slot: int = -1) -> None:
        """Record one event (inside an events() block), seq = references so far."""
        if self._recorder is not None:
            self._recorder.record(kind, self._references, pid, vaddr, pfn, slot, self._t_ns)

    def _page(self, pfn: int) -> slice:
        return slice(pfn * self._page_size, (pfn + 1) * self._page_size)

    def _zero(self, pfn: int) -> None:
        self._mem[self._page(pfn)] = bytes(self._page_size)

    def _stamp(self) -> int:
        self._tick += 1
        return self._tick

    def _new_process(self, ppid: int) -> "Process":
        p = Process(self, self._next_pid, ppid)
        self._procs[p.pid] = p
        self._next_pid += 1
        if ppid:
            self._procs[ppid]._children.add(p)
        return p

    def _forget(self, p: "Process") -> None:
        """``p`` has exited (reaped, or parentless): keep it only while others do."""
        del self._procs[p.pid]
        self._gone[p.pid] = p

    def _new_family(self) -> int:
        self._next_family += 1
        return self._next_family - 1

    def _new_space(self, family: int) -> _AddressSpace:
        s = _AddressSpace(self._next_asid, family, self._levels, self._bits)
        self._spaces[s.asid] = s
        self._next_asid += 1
        return s

    def _make_pte(self, vma: Vma, pfn: int, flags: int) -> int:
        """A present PTE: USER, READABLE/EXECUTABLE mirroring the mapping, plus flags."""
        pte = PRESENT | USER | flags | (pfn << PFN_SHIFT)
        if vma.prot & PROT_READ:
            pte |= READABLE
        if vma.prot & PROT_EXEC:
            pte |= EXECUTABLE
        return pte

    # ------------------------------------------------------------------ TLB

    def _tlb_invalidate(self, asid: int, vpn: int) -> None:
        if self._tlb:
            i = vpn % len(self._tlb)
            e = self._tlb[i]
            if e is not None and e[0] == asid and e[1] == vpn:
                self._tlb[i] = None

    def _tlb_flush(self, asid: int, lo: int = 0, hi: int | None = None) -> None:
        for i, e in enumerate(self._tlb):
            if e is not None and e[0] == asid and e[1] >= lo and (hi is None or e[1] < hi):
                self._tlb[i] = None

    def _set_pte(self, space: _AddressSpace, vpn: int, pte: int) -> None:
        """Change a PTE (not just A/D): the cached translation is now stale."""
        space.set(vpn, pte)
        self._tlb_invalidate(space.asid, vpn)

    # ------------------------------------------------------------------ frames and slots

    def _free_frame(self, pfn: int) -> None:
        """A frame nobody maps or owns goes back, dirty (a Python policy's
        ``on_free``: every frame that returns to the free sets comes here)."""
        self._state[pfn] = "free"
        self._rmap[pfn] = None
        if pfn in self._frame_slot:
            self._uncache(pfn)
        self._dirty.add(pfn)
        self._hook("on_free", pfn)

    def _unref_frame(self, pfn: int) -> None:
        self._ref[pfn] -= 1
        if pfn != self._zero_pfn and self._ref[pfn] == 0 and self._state[pfn] != "shmem":
            self._free_frame(pfn)

    def _slot_is_free(self, slot: int) -> bool:
        """Rule 6: a slot is free once no swap entry names it and no frame caches it."""
        return self._slot_count[slot] == 0 and slot not in self._swap_cache

    def _put_slot(self, slot: int) -> None:
        """Drop one swap entry naming a slot; it may free the slot."""
        self._slot_count[slot] -= 1
        if self._slot_is_free(slot):
            del self._slot_data[slot]

    def _uncache(self, pfn: int) -> None:
        """Take ``pfn`` out of the swap cache (freed, or about to be written in
        place); its slot keeps its bytes while swap entries still name it."""
        slot = self._frame_slot.pop(pfn)
        del self._swap_cache[slot]
        if self._slot_is_free(slot):
            del self._slot_data[slot]

    def _drop_pte(self, space: _AddressSpace, vpn: int, pte: int) -> None:
        """Remove one PTE and the reference it held (frame or swap slot)."""
        self._set_pte(space, vpn, 0)
        if pte & PRESENT:
            self._unref_frame(pte >> PFN_SHIFT)
        elif pte & SWAP:
            self._put_slot(pte >> PFN_SHIFT)

    def _alloc(self, proc, zero: bool, fault_addr: int, access: str, state: str,
               owner) -> int:
        """Take a frame for a fault, reclaiming one if both free sets are empty.

        ``zero``: a demand-zero fill, which prefers the pool; copies and reads
        overwrite the page, so they prefer dirty frames and spare the pool.
        """
        if not self._pool and not self._dirty:
            self._reclaim(proc, fault_addr, access)
        if zero and self._pool:
            pfn = min(self._pool)
            self._pool.remove(pfn)
            self._count(proc, "zero_pool_hits")
        elif self._dirty:
            pfn = min(self._dirty)
            self._dirty.remove(pfn)
            if zero:
                self._zero(pfn)
        else:
            pfn = min(self._pool)
            self._pool.remove(pfn)
        self._state[pfn] = state
        self._rmap[pfn] = owner
        self._loaded[pfn] = self._used[pfn] = self._stamp()
        self._hook("on_map", pfn)     # every allocation of a frame to a page
        return pfn

    # ------------------------------------------------------------------ reverse map and reclaim

    def _mappers(self, pfn: int) -> list[tuple[_AddressSpace, int]]:
        """Every (address space, vpn) whose PTE maps ``pfn``, found through the
        reverse map: the fork family and vpn for anon and file frames (COW sharers
        map a page at one address), every mapping of the object for shmem."""
        out = []
        spaces = sorted(self._spaces.values(), key=lambda s: s.asid)
        if self._state[pfn] == "shmem":
            obj, idx = self._rmap[pfn]
            places = [(s, v.start + idx - v.pgoff) for s in spaces for v in s.vmas
                      if v.obj is obj and v.pgoff <= idx < v.pgoff + v.end - v.start]
        else:
            family, vpn = self._rmap[pfn]
            places = [(s, vpn) for s in spaces if s.family == family]
        for s, vpn in places:
            pte = s.get(vpn)
            if pte & PRESENT and pte >> PFN_SHIFT == pfn:
                out.append((s, vpn))
        return out

    def _free_slot(self) -> int | None:
        return next((i for i in range(self._swap_slots) if self._slot_is_free(i)), None)

    def _evictable(self, pfn: int) -> bool:
        if pfn in self._pinned:
            return False
        state = self._state[pfn]
        if state == "file" or (state == "anon" and pfn in self._frame_slot):
            return True
        return state in ("anon", "shmem") and self._free_slot() is not None

    def _frame_bit(self, pfn: int, bit: int) -> bool:
        """Is ``bit`` (ACCESSED or DIRTY) set in any PTE that maps ``pfn``?"""
        if self._state[pfn] == "free":
            return False
        return any(s.get(vpn) & bit for s, vpn in self._mappers(pfn))

    def _clear_young(self, pfn: int) -> bool:
        """Clear the accessed bit of every PTE that maps ``pfn``, found through
        the reverse map (each such PTE changed drops its TLB entry); returns
        whether any was set. The clock's second chance."""
        if self._state[pfn] == "free":
            return False
        referenced = [(s, v) for s, v in self._mappers(pfn) if s.get(v) & ACCESSED]
        for s, v in referenced:
            self._set_pte(s, v, s.get(v) & ~ACCESSED)
        return bool(referenced)

    def _hook(self, name: str, pfn: int) -> None:
        """Call a Python policy's ``on_free``, ``on_map`` or ``on_access``. An
        exception it raises waits until the outermost public call completes (the
        first one only; see ``_api``); the operation goes on."""
        if self._py_policy is None:
            return
        self._in_hook = name
        try:
            getattr(self._py_policy, name)(pfn)
        except BaseException as e:
            if self._hook_exc is None:
                self._hook_exc = e
        finally:
            self._in_hook = None

    def _ask_victim(self) -> int | None:
        """A Python policy's ``victim(view)``, checked: None (OutOfMemory) or an
        evictable pfn; anything else raises ``ValueError``. Called before
        anything changes (but the accessed bits it clears through the view); an
        exception it raises, or its answer's ``__index__`` raises, propagates at
        once."""
        view = PolicyView(self)
        self._in_hook = "victim"
        try:
            try:
                pfn = self._py_policy.victim(view)
            finally:
                view._live = False
            if pfn is None:
                return None
            checked = _as_pfn(pfn, self._frames)   # its __index__ is the policy's code
        finally:
            self._in_hook = None
        if checked is None or not self._evictable(checked):
            raise ValueError(
                f"{type(self._py_policy).__name__}.victim() returned {pfn!r}: not an "
                f"evictable frame (an int in [0, {self._frames}), in use, not held by "
                "the access in progress, and swap for it if it needs a new slot)")
        return checked

    def _reclaim(self, proc, fault_addr: int, access: str) -> None:
        """Free one frame by the machine's policy, or raise OutOfMemory."""
        oom = OutOfMemory(fault_addr, access, proc.pid)
        if self._policy == "opt" and self._future is None:
            raise ValueError("opt needs the future: use Machine.replay")
        if self._py_policy is not None:
            victim = self._ask_victim()
            if victim is None:
                raise oom
            return self._evict(proc, victim)
        if self._policy == "clock":
            for _ in range(2 * self._frames):
                pfn = self._hand
                self._hand = (self._hand + 1) % self._frames
                if not self._evictable(pfn):
                    continue
                if self._clear_young(pfn):     # second chance
                    continue
                return self._evict(proc, pfn)
            raise oom
        candidates = [pfn for pfn in range(self._frames) if self._evictable(pfn)]
        if not candidates:
            raise oom
        if self._policy == "fifo":
            victim = min(candidates, key=lambda pfn: self._loaded[pfn])
        elif self._policy == "lru":
            victim = min(candidates, key=lambda pfn: self._used[pfn])
        elif self._policy == "mru":       # the most recently used: a loop's friend
            victim = max(candidates, key=lambda pfn: self._used[pfn])
        elif self._policy == "random":
            victim = candidates[self._rng.next() % len(candidates)]
        else:  # opt: the page used again farthest in the future (never: first)
            victim = max(candidates, key=lambda pfn: self._future.get(pfn, _NEVER))
        self._evict(proc, victim)

    def _evict(self, proc, pfn: int) -> None:
        """Turn every PTE of ``pfn`` into a swap entry (anon) or 0 (file, shmem).

        Events: ``evictions`` then (if the page is written) ``swap_outs``, both
        naming the victim page (its lowest mapper) and the slot it goes to.
        """
        mappers = self._mappers(pfn)
        pid, vaddr = self._lowest_mapper(mappers)
        state = self._state[pfn]
        written = False
        if state == "file":
            new, slot = 0, -1             # clean: the image still has it
        elif state == "anon" and pfn in self._frame_slot:
            # Page out only if needed: the slot holds these bytes unless a
            # mapping wrote them since; then write back to that same slot.
            slot = self._frame_slot[pfn]
            if any(s.get(vpn) & DIRTY for s, vpn in mappers):
                self._slot_data[slot] = bytes(self._mem[self._page(pfn)])
                written = True
            new = SWAP | (slot << PFN_SHIFT)
        else:
            slot = self._free_slot()
            self._slot_data[slot] = bytes(self._mem[self._page(pfn)])
            written = True
            if state == "shmem":
                obj, idx = self._rmap[pfn]
                del obj.frames[idx]
                obj.slots[idx] = slot
                self._slot_count[slot] = 1    # the object's reference
                new = 0
            else:
                new = SWAP | (slot << PFN_SHIFT)
        for s, vpn in mappers:
            self._set_pte(s, vpn, new)
            if new:
                self._slot_count[slot] += 1
        self._ref[pfn] = 0
        self._count(proc, "evictions")
        self._record("evictions", pid, vaddr, pfn, slot)
        if written:
            self._count(proc, "swap_outs")
            self._record("swap_outs", pid, vaddr, pfn, slot)
        self._free_frame(pfn)

    # ------------------------------------------------------------------ an access

    def _access(self, proc, addr: int, n: int, kind: str, data=None):
        """Checks for every page, then touches, then copies (semantics.md section 5)."""
        if n == 0:
            return b""
        space, shift, ps = proc._as, self._shift, self._page_size
        first, last = addr >> shift, (addr + n - 1) >> shift
        vmas = self._check_pages(proc, addr, n, kind)
        pfns = []
        try:
            for vpn, vma in zip(range(first, last + 1), vmas):
                at = addr if vpn == first else vpn << shift
                pfn = self._touch(proc, space, vma, vpn, kind, at)
                if pfn != self._zero_pfn:
                    self._pinned.add(pfn)
                pfns.append(pfn)
        finally:
            self._pinned.clear()
        # Copy the bytes, page by page.
        out, pos = [], 0
        for i, pfn in enumerate(pfns):
            lo = (addr - (first << shift)) if i == 0 else 0
            hi = min(ps, lo + n - pos)
            base = pfn * ps
            if kind == "write":
                self._mem[base + lo:base + hi] = data[pos:pos + hi - lo]
            else:
                out.append(bytes(self._mem[base + lo:base + hi]))
            pos += hi - lo
        self._count(proc, {"read": "reads", "write": "writes", "execute": "fetches"}[kind])
        return b"".join(out)

    def _check_pages(self, proc, addr: int, n: int, kind: str) -> list:
        """Rules 1 and 2 for every page of an access, before anything changes;
        returns the mapping of each page."""
        space, shift = proc._as, self._shift
        first, last = addr >> shift, (addr + n - 1) >> shift
        vmas = []
        for vpn in range(first, last + 1):
            at = addr if vpn == first else vpn << shift
            vma = space.vmas.find(vpn) if vpn < self._max_vpn else None
            if vma is None:
                self._fault_event(proc, "segv", at)
                raise SegmentationFault(at, kind, proc.pid)
            if not vma.prot & _NEEDS[kind]:
                self._fault_event(proc, "protection", at)
                raise ProtectionFault(at, kind, proc.pid)
            vmas.append(vma)
        return vmas

    # ------------------------------------------------------------------ trace replay

    @_api
    def replay(self, trace, process=None) -> dict:
        """Run a ``pymmu.traces.Trace`` (or an iterable of them); returns the counters it added.

        Each record is one access (lackey M is one write); every page a record
        covers is touched in order as an independent reference, with nothing
        pinned. Without ``process`` a fresh process with one rwx mapping over the
        whole address space runs it and exits. An iterable of Traces runs as
        their concatenation (not with opt, which needs the whole future). A
        failing record raises with ``.index`` set (its position in the
        concatenation); earlier records stay applied. A record with a kind code
        over 3 or a size of 0 raises ``TraceError``.
        """
        from pymmu.traces import replay_parts

        parts = replay_parts(trace, single=self._policy == "opt")
        if process is not None:
            if not isinstance(process, Process) or process._m is not self:
                raise ValueError("process must be a Process of this machine")
            process._running()
            proc = process
        else:
            proc = self.spawn()
            proc.mmap(1 << self._va_bits, "rwx", addr=0)
        added = dict.fromkeys(STAT_NAMES, 0)   # part by part: not what runs between
        offset = 0
        try:
            for part in parts:
                before = dict(self._stats)
                done = self._replay_part(proc, part, offset)
                for k in STAT_NAMES:
                    added[k] += self._stats[k] - before[k]
                if not done:
                    break                 # a hook raised: _api raises it at the end
                offset += len(part)
        finally:
            self._future = None
            if process is None:
                proc.exit()
        return added

    # The simulated time of the reference under way inside run (the events'
    # t_ns, DESIGN.md section 11); 0 elsewhere. A class default, so that
    # machines made before run existed (snapshots) read 0 too.
    _t_ns = 0

    @_api
    def run(self, jobs, *, quantum=10_000, cost=None, load_control=None):
        """Run jobs on one CPU in simulated time (DESIGN.md section 12).

        The readable model of ``pymmu.Machine.run``: ``pymmu.reference_run``
        follows docs/semantics.md ("Many processes in time") rule by rule.

        Parameters
        ----------
        jobs : sequence of pymmu.Job
            One per process, in order (a bare Trace stands for ``Job(trace)``).
        quantum : int
            Page references per time slice.
        cost : pymmu.Cost, optional
            Nanoseconds of each event; None means ``pymmu.Cost()``.
        load_control : pymmu.WorkingSet, optional
            Working-set load control.

        Returns
        -------
        pymmu.RunResult
        """
        from pymmu.reference_run import run

        return run(self, jobs, quantum=quantum, cost=cost, load_control=load_control)

    def _replay_part(self, proc, trace, offset: int) -> bool:
        """Replay one Trace whose first record is record ``offset`` of the whole.

        Returns False when it stopped after a record during which a policy hook
        raised (the exception, its ``.index`` set, waits in ``_hook_exc``).
        """
        from pymmu.traces import bad_record_error, first_bad_record

        shift = self._shift
        records = list(zip(trace.addr.tolist(), trace.kind.tolist(), trace.size.tolist()))
        bad = first_bad_record(trace)
        if bad is not None:
            records = records[:bad]
        if self._policy == "opt":
            # Belady needs the future: the next position of every page reference
            # (of the records that will run).
            run = trace if bad is None else trace[:bad]
            next_use = run.next_use(self._page_size).tolist()
            self._future = {}
        pos = 0
        for index, (addr, code, size) in enumerate(records):
            kind = _TRACE_ACCESS[code]
            if kind == "write" and proc._lender is not None and self._strict_vfork:
                # a vfork child's STORE or MODIFY writes into its parent, as write does
                e = ProcessStateError(f"process {proc.pid} is a vfork child: trace record "
                                      f"{offset + index} writes (strict_vfork)")
                e.index = offset + index
                raise e
            try:
                vmas = self._check_pages(proc, addr, size, kind)
                for i, vma in enumerate(vmas):
                    vpn = (addr >> shift) + i
                    at = addr if i == 0 else vpn << shift
                    pfn = self._touch(proc, proc._as, vma, vpn, kind, at)
                    if self._future is not None and pfn != self._zero_pfn:
                        self._future[pfn] = next_use[pos]
                    pos += 1
            except (MemoryFault, OutOfMemory) as e:
                e.index = offset + index
                raise
            except Exception as e:        # from a Python policy's victim()
                _set_index(e, offset + index)
                raise
            self._count(proc, {"read": "reads", "write": "writes",
                               "execute": "fetches"}[kind])
            if kind == "write" and proc._lender is not None:
                self._count(proc, "vfork_child_writes")
            if self._hook_exc is not None:
                _set_index(self._hook_exc, offset + index)
                return False
        if bad is not None:
            raise bad_record_error(trace, bad, offset)
        return True

    def _touch(self, proc, space, vma, vpn, kind, at) -> int:
        """Make one page accessible for ``kind``; returns the frame it maps.

        One page reference: ``m.references`` counts it before anything else, so
        every event it causes carries it as ``seq``.
        """
        self._references += 1
        pte = space.get(vpn)
        need = _ALLOWS[kind]
        if self._tlb:
            e = self._tlb[vpn % len(self._tlb)]
            if e is not None and e[0] == space.asid and e[1] == vpn:
                self._count(proc, "tlb_hits")
            else:
                self._count(proc, "tlb_misses")
        try:
            while not (pte & PRESENT and pte & need):
                pte = self._fault(proc, space, vma, vpn, pte, kind, at)
        except OutOfMemory:
            self._fault_event(proc, "oom", at)
            raise
        pte |= ACCESSED | (DIRTY if kind == "write" else 0)
        space.set(vpn, pte)               # setting A/D keeps the TLB entry valid
        if self._tlb:
            self._tlb[vpn % len(self._tlb)] = (space.asid, vpn, pte & ~(ACCESSED | DIRTY))
        pfn = pte >> PFN_SHIFT
        if pfn != self._zero_pfn:
            self._used[pfn] = self._stamp()
            if self._wants_access:
                self._hook("on_access", pfn)
        return pfn

    def _fault(self, proc, space, vma, vpn, pte, kind, at) -> int:
        """Resolve one step of a fault; returns the new PTE (already installed)."""
        writable = vma.prot & PROT_WRITE
        ro_flags = COW if writable else 0     # how a private read-only page is mapped
        family = space.family
        if pte & PRESENT:                     # a write-protect fault (rule 4)
            old = pte >> PFN_SHIFT
            if pte & ZERO:
                pfn = self._alloc(proc, True, at, kind, "anon", (family, vpn))
                self._count(proc, "minor_faults")
                self._event(proc, "zero_fills", vpn, pfn)
                new = self._make_pte(vma, pfn, WRITABLE | DIRTY)
            elif self._ref[old] == 1:
                self._count(proc, "minor_faults")
                self._event(proc, "cow_reuses", vpn, old)
                self._state[old] = "anon"     # a file page written is private now
                if old in self._frame_slot:   # others keep the slot and its bytes
                    self._uncache(old)
                new = (pte | WRITABLE) & ~COW
                self._set_pte(space, vpn, new)
                return new
            else:
                self._pinned.add(old)         # the source must survive the allocation
                try:
                    pfn = self._alloc(proc, False, at, kind, "anon", (family, vpn))
                finally:
                    self._pinned.discard(old)
                self._mem[self._page(pfn)] = self._mem[self._page(old)]
                self._count(proc, "minor_faults")
                self._event(proc, "cow_copies", vpn, pfn)
                new = self._make_pte(vma, pfn, WRITABLE)
            self._set_pte(space, vpn, new)
            self._unref_frame(old)
            self._ref[pfn] += 1
            return new
        if pte & SWAP:                        # rule 6: a private page in swap
            slot = pte >> PFN_SHIFT
            pfn = self._swap_cache.get(slot)
            if pfn is not None:
                self._count(proc, "minor_faults")
                self._event(proc, "swap_cache_hits", vpn, pfn, slot)
                flags = ro_flags
            else:
                pfn = self._alloc(proc, False, at, kind, "anon", (family, vpn))
                self._mem[self._page(pfn)] = self._slot_data[slot]
                self._count(proc, "major_faults")
                self._event(proc, "swap_ins", vpn, pfn, slot)
                if kind != "write" or self._slot_count[slot] > 1:
                    # Keep the slot with the frame in the swap cache: a clean
                    # page evicted again needs no write (rule 6).
                    self._swap_cache[slot] = pfn
                    self._frame_slot[pfn] = slot
                flags = (WRITABLE if writable else 0) if self._slot_count[slot] == 1 \
                    else ro_flags
            new = self._make_pte(vma, pfn, flags)
            self._set_pte(space, vpn, new)
            self._ref[pfn] += 1
            self._put_slot(slot)
            return new
        if vma.kind == "shared":              # the object's page, shared by all
            obj, idx = vma.obj, vma.pgoff + vpn - vma.start
            if idx in obj.frames:
                pfn = obj.frames[idx]
                self._count(proc, "minor_faults")
            elif idx in obj.slots:
                pfn = self._alloc(proc, False, at, kind, "shmem", (obj, idx))
                slot = obj.slots.pop(idx)
                self._mem[self._page(pfn)] = self._slot_data[slot]
                self._put_slot(slot)
                self._count(proc, "major_faults")
                self._event(proc, "swap_ins", vpn, pfn, slot)
            else:
                pfn = self._alloc(proc, True, at, kind, "shmem", (obj, idx))
                self._count(proc, "minor_faults")
                self._event(proc, "zero_fills", vpn, pfn)
            obj.frames[idx] = pfn
            new = self._make_pte(vma, pfn, SHARED | (WRITABLE if writable else 0))
        elif vma.kind == "file" and vma.obj.layout.page(vpn) is not None:
            write = kind == "write"
            pfn = self._alloc(proc, False, at, kind, "anon" if write else "file",
                              (family, vpn))
            self._mem[self._page(pfn)] = vma.obj.layout.page(vpn).tobytes()
            self._count(proc, "major_faults")
            self._event(proc, "file_reads", vpn, pfn)
            new = self._make_pte(vma, pfn, WRITABLE | DIRTY if write else ro_flags)
        elif kind == "write" or not self._zero_page_on:
            pfn = self._alloc(proc, True, at, kind, "anon", (family, vpn))
            self._count(proc, "minor_faults")
            self._event(proc, "zero_fills", vpn, pfn)
            new = self._make_pte(vma, pfn, WRITABLE if writable else 0)
        else:
            pfn = self._zero_pfn
            self._count(proc, "minor_faults")
            self._event(proc, "zero_page_maps", vpn, pfn)
            new = self._make_pte(vma, pfn, ZERO)
        self._set_pte(space, vpn, new)
        self._ref[pfn] += 1
        return new

    # ------------------------------------------------------------------ address spaces

    def _release_objects(self, vmas) -> None:
        """Free shared objects that no mapping in any address space refers to."""
        for obj in {id(v.obj): v.obj for v in vmas if v.kind == "shared"}.values():
            if any(v.obj is obj for s in self._spaces.values() for v in s.vmas):
                continue
            for idx in sorted(obj.frames):     # on_free in page order
                self._free_frame(obj.frames[idx])
            for slot in obj.slots.values():
                self._put_slot(slot)
            obj.frames.clear()
            obj.slots.clear()

    def _unmap(self, space, lo: int, hi: int) -> None:
        for vpn, pte in list(space.entries(lo, hi)):
            self._drop_pte(space, vpn, pte)
        self._release_objects(space.vmas.remove(lo, hi))

    def _destroy(self, space) -> None:
        """Drop every PTE and mapping of an address space, then the space itself."""
        for vpn, pte in list(space.entries()):
            self._drop_pte(space, vpn, pte)
        self._tlb_flush(space.asid)
        del self._spaces[space.asid]
        self._release_objects(list(space.vmas))

    def _fork_space(self, parent: _AddressSpace) -> _AddressSpace:
        """The child's page table is a node-for-node copy of the parent's tree
        (empty nodes included), with the COW rules applied to the entries."""
        child = self._new_space(parent.family)
        for v in parent.vmas:
            child.vmas.insert(v)

        def copy(src: dict, dst: dict, level: int, base: int) -> None:
            span = 1 << (parent.bits * (parent.levels - 1 - level))
            for i in sorted(src):
                if level < parent.levels - 1:
                    dst[i] = {}
                    child.nodes += 1
                    copy(src[i], dst[i], level + 1, base + i * span)
                    continue
                pte = src[i]
                if pte & PRESENT:
                    self._ref[pte >> PFN_SHIFT] += 1
                    if not pte & (ZERO | SHARED):
                        if parent.vmas.find(base + i).prot & PROT_WRITE:
                            pte = src[i] = (pte & ~WRITABLE) | COW
                        pte &= ~ACCESSED       # the child has not used it yet
                else:
                    self._slot_count[pte >> PFN_SHIFT] += 1
                dst[i] = pte

        copy(parent.root, child.root, 0, 0)
        self._tlb_flush(parent.asid)
        return child

    # ------------------------------------------------------------------ invariants

    @_api
    def check(self) -> None:
        """Raise ``InvariantError`` naming the first broken invariant."""
        def fail(msg):
            raise InvariantError(msg)

        ps, nf = self._page_size, self._frames
        ref = [0] * (nf + 1)
        slots = [0] * self._swap_slots
        for s in sorted(self._spaces.values(), key=lambda s: s.asid):
            why = s.vmas.check(self._max_vpn)
            if why:
                fail(f"address space {s.asid}: {why}")
            for vpn, pte in s.entries():
                vma = s.vmas.find(vpn)
                where = f"address space {s.asid} page {vpn << self._shift:#x}"
                if vma is None:
                    fail(f"PTE outside any mapping at {where}")
                if pte & PRESENT:
                    pfn = pte >> PFN_SHIFT
                    if pfn > nf:
                        fail(f"PTE maps a frame out of range at {where}")
                    ref[pfn] += 1
                    if not pte & USER or bool(pte & READABLE) != bool(vma.prot & PROT_READ) \
                            or bool(pte & EXECUTABLE) != bool(vma.prot & PROT_EXEC) \
                            or (pte & WRITABLE and not vma.prot & PROT_WRITE) or pte & SWAP:
                        fail(f"PTE permission bits disagree with the mapping at {where}")
                    if bool(pte & ZERO) != (pfn == nf) or bool(pte & SHARED) != vma.shared:
                        fail(f"PTE zero/shared bits disagree with the mapping at {where}")
                    if pte & ZERO and pte & (WRITABLE | COW):
                        fail(f"zero-page PTE writable or cow at {where}")
                    if vma.shared:
                        idx = vma.pgoff + vpn - vma.start
                        if pte & COW or vma.obj.frames.get(idx) != pfn:
                            fail(f"shared PTE does not map its object's page at {where}")
                    elif not pte & ZERO:
                        cow_rule = (bool(pte & WRITABLE) != bool(pte & COW)
                                    if vma.prot & PROT_WRITE else not pte & (WRITABLE | COW))
                        if not cow_rule:
                            fail(f"COW/WRITABLE rule broken at {where}")
                        if self._state[pfn] not in ("anon", "file") \
                                or self._rmap[pfn] != (s.family, vpn):
                            fail(f"reverse map of frame {pfn} misses {where}")
                        if self._state[pfn] == "file" and pte & WRITABLE:
                            fail(f"file frame {pfn} mapped writable at {where}")
                elif pte & SWAP:
                    if pte & ~(SWAP | ((_M64 >> PFN_SHIFT) << PFN_SHIFT)) or vma.shared:
                        fail(f"malformed swap entry at {where}")
                    slot = pte >> PFN_SHIFT
                    if slot >= self._swap_slots:
                        fail(f"swap entry names slot {slot} out of range at {where}")
                    slots[slot] += 1
                else:
                    fail(f"non-present PTE that is not a swap entry at {where}")
        shm = {}
        for s in self._spaces.values():
            for v in s.vmas:
                if v.kind == "shared":
                    shm[id(v.obj)] = v.obj
        owned = {}
        for obj in shm.values():
            for idx, pfn in obj.frames.items():
                owned[pfn] = (obj, idx)
            for slot in obj.slots.values():
                slots[slot] += 1
        if ref != self._ref:
            pfn = next(i for i in range(nf + 1) if ref[i] != self._ref[i])
            fail(f"refcount of frame {pfn} is {self._ref[pfn]} but {ref[pfn]} PTEs map it")
        if self._pool & self._dirty:
            fail("a frame is in both the zero pool and the dirty set")
        free = {pfn for pfn in range(nf) if self._state[pfn] == "free"}
        if free != self._pool | self._dirty:
            fail("free sets do not match the free frames")
        for pfn in range(nf):
            st = self._state[pfn]
            if st == "free" and ref[pfn]:
                fail(f"free frame {pfn} is mapped")
            if st in ("anon", "file") and not ref[pfn]:
                fail(f"frame {pfn} is in use but nothing maps it")
            if (st == "shmem") != (pfn in owned) or (st == "shmem" and owned[pfn] != self._rmap[pfn]):
                fail(f"frame {pfn} and its shared object disagree")
            if st != "free" and len(self._mappers(pfn)) != ref[pfn]:
                fail(f"reverse map of frame {pfn} does not find every PTE")
        if any(self._mem[self._page(pfn)].count(0) != ps for pfn in self._pool):
            fail("a zero-pool frame is not all zero")
        if self._mem[self._page(nf)].count(0) != ps:
            fail("the zero page is not all zero")
        for i, e in enumerate(self._tlb):
            if e is None:
                continue
            s = self._spaces.get(e[0])
            if i != e[1] % len(self._tlb) or s is None \
                    or (s.get(e[1]) & ~(ACCESSED | DIRTY)) != e[2] or not e[2] & PRESENT:
                fail(f"TLB entry {i} disagrees with its PTE")
        if slots != self._slot_count:
            slot = next(i for i in range(self._swap_slots) if slots[i] != self._slot_count[i])
            fail(f"swap slot {slot} count is {self._slot_count[slot]} but {slots[slot]} "
                 "references name it")
        if set(self._slot_data) != {i for i in range(self._swap_slots)
                                    if not self._slot_is_free(i)}:
            fail("swap slot data does not match the used slots")
        for slot, pfn in self._swap_cache.items():
            clean = not any(s.get(vpn) & DIRTY for s, vpn in self._mappers(pfn))
            if self._frame_slot.get(pfn) != slot or self._state[pfn] != "anon" \
                    or (clean and self._slot_data[slot] != bytes(self._mem[self._page(pfn)])):
                fail(f"swap cache entry for slot {slot} is inconsistent")
        if len(self._frame_slot) != len(self._swap_cache):
            fail("swap cache maps are out of sync")
        if self.frames_free != len(free):
            fail("frames_free does not count the free frames")


class Process:
    """A process: an address space plus a place in the process tree.

    Made by ``Machine.spawn``, ``fork`` or ``vfork``; see DESIGN.md section 5.
    """

    def __init__(self, machine: Machine, pid: int, ppid: int):
        self._m = machine
        self.pid = pid
        self.ppid = ppid
        self.state = "running"
        self._as: _AddressSpace | None = None
        self._lender: Process | None = None    # the vfork parent whose space we borrow
        self._status = None
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._children = Children()

    def __repr__(self) -> str:
        return f"<reference.Process pid={self.pid} ppid={self.ppid} {self.state}>"

    def __copy__(self):
        raise TypeError("copy.copy of a Process would share its machine's state: "
                        "use copy.deepcopy or pickle")

    # ------------------------------------------------------------------ helpers

    def _running(self) -> None:
        if self.state != "running":
            raise ProcessStateError(f"process {self.pid} is {self.state}")

    def _range(self, addr, length) -> tuple[int, int]:
        """Validate ``(addr, length)`` of munmap/mprotect; returns pages [lo, hi)."""
        m = self._m
        addr = nonneg_int(addr, "addr")
        length = positive_int(length, "length")
        if addr & (m._page_size - 1):
            raise ValueError(f"addr {addr:#x} is not page-aligned")
        lo, hi = addr >> m._shift, -(-(addr + length) // m._page_size)
        if hi > m._max_vpn:
            raise ValueError("range goes beyond the address space")
        return lo, hi

    def _release(self) -> None:
        """Give up the address space: drop it, or hand a borrowed one back."""
        m = self._m
        m._tlb_flush(self._as.asid)
        if self._lender is not None:
            self._lender.state = "running"
            self._lender = None
        else:
            m._destroy(self._as)
        self._as = None

    # ------------------------------------------------------------------ mappings

    @_api
    def mmap(self, length, prot="rw", *, addr=None, shared=False) -> int:
        """Map ``length`` bytes, rounded up to whole pages.

        Parameters
        ----------
        length : int
            Bytes, > 0.
        prot : str or int
            ``"rw"``, ``"r-x"``, ... or PROT_ flags; w implies r.
        addr : int, optional
            A page-aligned free address (MAP_FIXED_NOREPLACE); None picks the
            lowest free range at or above MMAP_MIN.
        shared : bool
            Back the mapping with a new shared memory object.

        Returns
        -------
        int
            The base address. No page is touched: PTEs appear on first access.
        """
        self._running()
        m = self._m
        length = positive_int(length, "length")
        prot = parse_prot(prot)
        npages = -(-length // m._page_size)
        space = self._as
        if addr is None:
            start = space.vmas.find_free(npages, MMAP_MIN >> m._shift, m._max_vpn)
            if start is None:
                raise ValueError(f"no free range of {npages} pages")
        else:
            addr = nonneg_int(addr, "addr")
            if addr & (m._page_size - 1):
                raise ValueError(f"addr {addr:#x} is not page-aligned")
            start = addr >> m._shift
            if start + npages > m._max_vpn:
                raise ValueError("mapping goes beyond the address space")
            if not space.vmas.is_free(start, start + npages):
                raise ValueError(f"range at {addr:#x} overlaps a mapping")
        if shared:
            vma = Vma(start, start + npages, prot, "shared", _ShmObject(npages), 0)
        else:
            vma = Vma(start, start + npages, prot, "anon")
        space.vmas.insert(vma)
        return start << m._shift

    @_api
    def munmap(self, addr, length) -> None:
        """Unmap whatever is mapped in the range (holes are fine)."""
        self._running()
        lo, hi = self._range(addr, length)
        self._m._unmap(self._as, lo, hi)

    @_api
    def mprotect(self, addr, length, prot) -> None:
        """Change the protection of a fully mapped range, rewriting present PTEs."""
        self._running()
        m, space = self._m, self._as
        lo, hi = self._range(addr, length)
        prot = parse_prot(prot)
        if not space.vmas.covers(lo, hi):
            raise ValueError("mprotect range is not entirely mapped")
        space.vmas.protect(lo, hi, prot)
        for vpn, pte in list(space.entries(lo, hi)):
            if not pte & PRESENT:
                continue              # swap entries carry no permission bits
            pte &= ~(READABLE | EXECUTABLE)
            pte |= (READABLE if prot & PROT_READ else 0) | (EXECUTABLE if prot & PROT_EXEC else 0)
            if not prot & PROT_WRITE:
                pte &= ~(WRITABLE | COW)
            elif pte & SHARED:
                pte |= WRITABLE
            elif not pte & (ZERO | WRITABLE):
                pte |= COW
            space.set(vpn, pte)
        m._tlb_flush(space.asid, lo, hi)

    # ------------------------------------------------------------------ accesses

    def _access_args(self, addr, n):
        addr = as_int(addr, "addr")
        if addr < 0:
            raise ValueError(f"addr must not be negative, got {addr}")
        return addr, nonneg_int(n, "n")

    @_api
    def read(self, addr, n) -> bytes:
        """Read ``n`` bytes at ``addr`` (read access).

        Raises
        ------
        SegmentationFault, ProtectionFault
            Before anything changes; ``.addr`` is ``addr`` for the first page,
            the page start for later ones.
        OutOfMemory
            A frame was needed and none could be freed; pages already faulted
            in by this call stay resident, nothing is read.
        """
        self._running()
        addr, n = self._access_args(addr, n)
        return self._m._access(self, addr, n, "read")

    @_api
    def fetch(self, addr, n) -> bytes:
        """Read ``n`` bytes as instruction fetches (execute access)."""
        self._running()
        addr, n = self._access_args(addr, n)
        return self._m._access(self, addr, n, "execute")

    @_api
    def write(self, addr, data) -> None:
        """Write any bytes-like object at ``addr`` (write access).

        Errors as for ``read``. A vfork child writes into its parent's memory
        (counted as ``vfork_child_writes``), or raises ProcessStateError under
        ``strict_vfork``.
        """
        self._running()
        m = self._m
        if self._lender is not None and m._strict_vfork:
            raise ProcessStateError(f"process {self.pid} is a vfork child (strict_vfork)")
        addr = as_int(addr, "addr")
        if addr < 0:
            raise ValueError(f"addr must not be negative, got {addr}")
        data = as_buffer(data)
        if len(data) == 0:
            return
        m._access(self, addr, len(data), "write", data)
        if self._lender is not None:
            m._count(self, "vfork_child_writes")

    # ------------------------------------------------------------------ processes

    @_api
    def fork(self) -> "Process":
        """A child with a copy-on-write copy of this address space."""
        self._running()
        m = self._m
        child = m._new_process(self.pid)
        child._as = m._fork_space(self._as)
        m._count(self, "forks")
        return child

    @_api
    def vfork(self) -> "Process":
        """A child that borrows this address space; this process is suspended."""
        self._running()
        m = self._m
        child = m._new_process(self.pid)
        child._as, child._lender = self._as, self
        self.state = "suspended"
        m._count(self, "vforks")
        return child

    @_api
    def exec(self, image) -> None:
        """Replace the address space with a fresh one built from ``image``."""
        self._running()
        if not isinstance(image, Image):
            raise TypeError(f"exec needs a pymmu.Image, not {type(image).__name__}")
        m = self._m
        layout = image.layout(m._page_size)
        stack = -(-image.stack_size // m._page_size)
        seg_end = max((r[1] for r in layout.runs), default=0)
        if seg_end > m._max_vpn:
            raise ValueError("image segment beyond the address space")
        if stack and m._max_vpn - stack < seg_end:
            raise ValueError("image stack overlaps a segment (or the address space is too small)")
        space = m._new_space(m._new_family())
        backing = _FileBacking(layout, image.name)
        for start, end, prot in layout.runs:
            space.vmas.insert(Vma(start, end, prot, "file", backing))
        if stack:
            space.vmas.insert(Vma(m._max_vpn - stack, m._max_vpn,
                                  PROT_READ | PROT_WRITE, "stack"))
        self._release()
        self._as = space
        m._count(self, "execs")

    @_api
    def exit(self, status=0) -> None:
        """Release the address space; become a zombie (or exited if parentless)."""
        self._running()
        status = as_int(status, "status")
        m = self._m
        self._release()
        for child in self._children:
            if child.state == "zombie":
                child.state = "exited"        # reaped: keeps its ppid, like a waited child
                m._forget(child)
            else:
                child.ppid = 0                # orphans are reaped when they exit
        self._children.clear()
        self._status = status
        self.state = "exited" if self.ppid == 0 else "zombie"
        if self.ppid == 0:
            m._forget(self)
        else:
            m._procs[self.ppid]._children.exited(self.pid)

    @_api
    def wait(self, child=None) -> int:
        """Reap a zombie child (lowest pid if None); returns its exit status."""
        self._running()
        m = self._m
        if child is None:
            pid = self._children.lowest_exited()
            if pid is None:
                raise ProcessStateError(f"process {self.pid} has no exited child")
        else:
            if isinstance(child, Process):
                if child._m is not m:
                    raise ProcessStateError(f"child {child.pid} is a process of another "
                                            f"Machine, not a child of process {self.pid}")
                target = child if self._children.get(child.pid) is child else None
            else:
                target = self._children.get(as_int(child, "child"))
            if target is None or target.state != "zombie":
                raise ProcessStateError(f"no exited child {getattr(child, 'pid', child)} "
                                        f"of process {self.pid} to wait for")
            pid = target.pid
        target = self._children.reap(pid)
        target.state = "exited"
        m._forget(target)
        return target._status

    @_api
    def clear_accessed(self) -> int:
        """Clear the accessed bit of every present PTE of this address space;
        returns how many were set. Also drops this space's TLB entries, so the
        next touch of any page misses the TLB (a working-set estimator's tool).

        Not introspection: it changes PTEs, so a suspended (vfork parent),
        zombie or exited process raises ``ProcessStateError``. A vfork child
        clears the bits of the space it borrows.
        """
        self._running()
        m, space = self._m, self._as
        cleared = 0
        for vpn, pte in list(space.entries()):
            if pte & PRESENT and pte & ACCESSED:
                space.set(vpn, pte & ~ACCESSED)
                cleared += 1
        m._tlb_flush(space.asid)
        return cleared

    # ------------------------------------------------------------------ introspection

    def _pte_at(self, addr) -> tuple[int, int]:
        addr = as_int(addr, "addr")
        if addr < 0:
            raise ValueError(f"addr must not be negative, got {addr}")
        m = self._m
        vpn = addr >> m._shift
        if self._as is None or vpn >= m._max_vpn:
            return addr, 0
        return addr, self._as.get(vpn)

    @_api
    def translate(self, addr) -> int | None:
        """Physical address of ``addr``, or None if its page is not present."""
        addr, pte = self._pte_at(addr)
        if not pte & PRESENT:
            return None
        return ((pte >> PFN_SHIFT) << self._m._shift) | (addr & (self._m._page_size - 1))

    @_api
    def pte(self, addr) -> int:
        """The raw PTE of the page holding ``addr`` (0 if none)."""
        return self._pte_at(addr)[1]

    @_api
    def page_table(self) -> np.ndarray:
        """One row per existing PTE (present or swap entry), sorted by address."""
        rows = list(self._as.entries()) if self._as is not None else []
        m = self._m
        return page_table_rows(
            [vpn << m._shift for vpn, _ in rows], [pte for _, pte in rows],
            [m._ref[pte >> PFN_SHIFT] if pte & PRESENT else 0 for _, pte in rows])

    @_api
    def maps(self) -> list:
        """The mappings, like /proc/PID/maps."""
        if self._as is None:
            return []
        names = {"file": lambda v: v.obj.name, "stack": lambda v: "[stack]"}
        return [mapping_of(v, self._m._shift, names.get(v.kind, lambda v: "")(v))
                for v in self._as.vmas]

    def _resident(self) -> list[int]:
        """Frames mapped by this address space (the zero page does not count)."""
        if self._as is None:
            return []
        return [pte >> PFN_SHIFT for _, pte in self._as.entries()
                if pte & PRESENT and not pte & ZERO]

    @property
    @_api
    def rss(self) -> int:
        return len(self._resident()) * self._m._page_size

    @property
    @_api
    def pss(self) -> int:
        m = self._m
        return int(sum((Fraction(m._page_size, m._ref[pfn]) for pfn in self._resident()),
                       Fraction(0)))

    @property
    @_api
    def uss(self) -> int:
        m = self._m
        return sum(m._page_size for pfn in self._resident() if m._ref[pfn] == 1)

    @property
    @_api
    def stats(self) -> dict:
        return dict(self._stats)
