"""Snapshots of a core (``pickle``, ``copy.deepcopy``): its state as plain
position-independent data, and a core rebuilt from it and checked before
anything uses it. Cold code, in a unit of its own: functions of a ``Core`` read
and written through ``pymmu/_core.pxd``; ``Core.__reduce__`` and
``_core._restore_core`` (the name pickles keep) call them."""
import heapq

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, uintptr_t
from libc.string cimport memcpy

cimport numpy as cnp
import numpy as np

from pymmu._core cimport *
from pymmu._pte cimport *

cnp.import_array()


def restore(tuple config, dict state):
    """A core in the state ``state(core)`` gave. A state that breaks the
    machine's bounds or invariants (a damaged or crafted snapshot) raises
    ValueError, before anything uses it."""
    from pymmu._core import Core as _Core
    from pymmu._invariants import check_restored

    cdef Core c = _Core(*config)
    try:
        load(c, state)
    except (TypeError, OverflowError, KeyError, IndexError) as e:   # a value of a wrong type
        raise ValueError(f"snapshot: {e}") from e
    problem = check_restored(c)
    if problem is not None:
        raise ValueError(f"snapshot: {problem}")
    return c


def held_state(Core self, dict memo=None):
    """``state(self)``, taken while the machine is held (busy): another thread's
    operation is refused during the dump instead of tearing it. With a deepcopy
    ``memo``, the frame, swap and counter arrays are copied in the hold too (by
    the memo: the Machine shares its counter array with the core). RuntimeError
    if the machine is busy (a replay in another thread) or inside a policy hook."""
    import copy

    self._take_hold()
    try:
        config, st = state(self)
        if memo is not None:
            for name in ("mem", "swap", "stats"):
                st[name] = copy.deepcopy(st[name], memo)
    finally:
        hold_give(&self.hold)
    return config, st


def state(Core self):
    """``(config, state)`` of a core: every byte and bit of machine state,
    position-independent (page tables as node lists, the TLB as tags; the
    page-walk cache, a pure cache, starts empty). ``restore`` inverts it."""
    config = (self.frames, self.page_size, self.swap_slots, self.policy, self.va_bits,
              self.zero_pool_target, self.zero_page_on, self.tlb.n, self.seed)
    cdef int64_t mm, n = self.mm_next
    trees = [_dump_tree(self, mm) for mm in range(n)]
    state = {
        "mem": self.mem_array, "swap": self.swap_array, "stats": self.stats_array,
        "fm": _bytes(<char *>self.fm, (self.frames + 1) * sizeof(frame_t)),
        "sl": _bytes(<char *>self.sl, max(self.swap_slots, 1) * sizeof(slot_t)),
        "heaps": (self.pool.root, self.pool.count, self.dirty.root, self.dirty.count),
        "scalars": (self.zero_refs, self.references),
        "mm_free": list(self.mm_free),
        "mm": (_bytes(<char *>self.rm.family, n * sizeof(int64_t)),
               _bytes(<char *>self.rm.next, n * sizeof(int64_t)),
               _bytes(<char *>self.rm.head, n * sizeof(int64_t)),
               _bytes(<char *>self.mm_pid, n * sizeof(int64_t))),
        "vmas": self.vma_keep[:n], "trees": trees,
        "objects": ([(self.omap[i].npages, self.obj_base[i], *self.obj_items(i))
                     if self.obj_live[i] else None
                     for i in range(self.obj_next)], self.images),
        "tlb": _dump_tlb(self) if self.tlb.n else None,
        "policy": self.pypolicy,
    }
    state.update(self.pol.state(self))      # the policy unit's own keys
    return config, state


def spaces(Core self):
    """The live address spaces, ``{mm: (mapping table, pid)}``: a copy of the
    table the core keeps (``Core.set_vmas``) and the pid the space was made
    for, for the restore check of a ``Machine`` (its Python-level mappings
    and processes must agree with them)."""
    cdef int64_t mm
    out = {}
    for mm in range(1, self.mm_next):
        if self._live(mm):
            rows = self.vma_keep[mm]
            out[mm] = (np.zeros((0, V_NCOLS), np.int64) if rows is None else rows.copy(),
                       self.mm_pid[mm])
    return out


cdef bytes _bytes(char *p, size_t n):
    return p[:n] if n else b""


cdef tuple _dump_tlb(Core self):
    """The TLB's tags as two byte strings, its entries' mm (int64) and vpn
    (uint64); the cached PTE addresses are found again on load."""
    cdef int64_t i
    mms = np.empty(self.tlb.n, np.int64)
    vpns = np.empty(self.tlb.n, np.uint64)
    for i in range(self.tlb.n):
        mms[i] = self.tlb.e[i].mm
        vpns[i] = self.tlb.e[i].vpn
    return mms.tobytes(), vpns.tobytes()


cdef object _dump_tree(Core self, int64_t mm):
    """``mm``'s page table as one uint64 array of its nodes in preorder, each
    child pointer replaced by 1 + the child's index (None without a root)."""
    if self.pt.root[mm] == NULL:
        return None
    nodes = []
    _dump_node(self, self.pt.root[mm], 0, nodes)
    return np.concatenate(nodes)


cdef int64_t _dump_node(Core self, uint64_t *node, int level, list nodes) except -1:
    cdef int64_t i, count = (<int64_t>1) << self.bits, me = len(nodes)
    cdef cnp.uint64_t[::1] row
    out = np.empty(count, np.uint64)
    row = out
    nodes.append(out)
    for i in range(count):
        row[i] = node[i]
        if level < self.levels - 1 and node[i]:
            row[i] = 1 + _dump_node(self, <uint64_t *><uintptr_t>node[i], level + 1, nodes)
    return me


cdef uint64_t *_load_node(Core self, const uint64_t[::1] flat, int64_t index, int level,
                          uint8_t[::1] used) except NULL:
    """Node ``index`` of a dumped tree, and its children; each node of the
    dump is used once (``used``): a tree, never a graph that multiplies."""
    cdef int64_t i, at, count = (<int64_t>1) << self.bits
    cdef uint64_t *node
    cdef uint64_t *child
    cdef uint64_t v
    if index < 0 or index >= used.shape[0] or used[index]:
        raise ValueError("snapshot: a page-table node index is out of range or reused")
    used[index] = 1
    node = pt_new_node(&self.pt)
    if node == NULL:
        raise MemoryError("out of memory for a page table")
    try:
        for i in range(count):
            v = flat[index * count + i]
            if level < self.levels - 1 and v:
                at = <int64_t>(v - 1) if v - 1 < <uint64_t>used.shape[0] else -1
                child = _load_node(self, flat, at, level + 1, used)
                node[i] = <uint64_t><uintptr_t>child
            else:
                node[i] = v
    except BaseException:
        pt_free_tree(&self.pt, node, level)     # (its children made so far too)
        raise
    return node


def load(Core self, dict state):
    """Overwrite a fresh core (made with the same config) with ``state``."""
    cdef int64_t i, n, mm, count = (<int64_t>1) << self.bits
    cdef cnp.ndarray rows
    mem, swap, stats = state["mem"], state["swap"], state["stats"]
    for name, arr, like in (("mem", mem, self.mem_array), ("swap", swap, self.swap_array),
                            ("stats", stats, self.stats_array)):
        if (not isinstance(arr, np.ndarray) or arr.dtype != like.dtype
                or arr.shape != like.shape or not arr.flags.c_contiguous
                or not arr.flags.writeable):
            raise ValueError(f"snapshot: {name} is not a {like.shape} {like.dtype} array")
    self.mem_array, self.mem = mem, mem
    self.swap_array, self.swapmem = swap, swap
    self.stats_array, self.stats = stats, stats
    _copy_in(<char *>self.fm, state["fm"], (self.frames + 1) * sizeof(frame_t))
    _copy_in(<char *>self.sl, state["sl"], max(self.swap_slots, 1) * sizeof(slot_t))
    self.pol.restore(self, state)           # the policy unit's own keys
    self.pool.root, self.pool.count, self.dirty.root, self.dirty.count = state["heaps"]
    scalars = state["scalars"]
    # (before the policy unit, the clock hand and the random state were in it too)
    self.zero_refs, self.references = scalars if len(scalars) == 2 else scalars[1::2]
    # free swap slots: exactly those no PTE, object page or cached frame holds
    for i in range(self.swap_slots):
        if self.sl[i].count != 0 or self.sl[i].cache != -1:
            lowset_remove(&self.free_slots, i)
    vmas, trees = state["vmas"], state["trees"]
    n = len(trees)
    if len(vmas) != n or n < 1:
        raise ValueError("snapshot: address spaces do not match")
    if n > self.mm_cap:
        self._grow_mm(max(n, 2 * self.mm_cap))
    self.vma_keep = list(vmas) + [None] * (self.mm_cap - n)
    self.mm_next = n
    family, fnext, head, pids = state["mm"]
    _copy_in(<char *>self.rm.family, family, n * sizeof(int64_t))
    _copy_in(<char *>self.rm.next, fnext, n * sizeof(int64_t))
    _copy_in(<char *>self.rm.head, head, n * sizeof(int64_t))
    # the prev links are not kept (snapshots older than them restore alike):
    # derived from the heads and next links; a broken list is check_restored's
    rmap_relink(&self.rm, n)
    _copy_in(<char *>self.mm_pid, pids, n * sizeof(int64_t))
    self.mm_free = sorted(int(x) for x in state["mm_free"])     # (sorted: a heap)
    if any(not 0 < x < n or self.rm.family[x] != -2 for x in self.mm_free):
        raise ValueError("snapshot: a free address-space id is not free")
    if len(set(self.mm_free)) != len(self.mm_free):
        # mm_new would hand the id out twice: two processes in one space
        raise ValueError("snapshot: an address-space id is listed twice as free")
    for mm in range(n):
        rows = vmas[mm]
        if rows is None:
            self.vma_rows[mm] = 0
            self.vma_count[mm] = 0
        else:
            if rows.dtype != np.int64 or rows.ndim != 2 or rows.shape[1] != V_NCOLS \
                    or not rows.flags.c_contiguous:
                raise ValueError("snapshot: a mapping table has the wrong shape")
            self.vma_rows[mm] = <int64_t><uintptr_t>cnp.PyArray_DATA(rows)
            self.vma_count[mm] = rows.shape[0]
        if mm == 0:
            continue
        # mm_new made no root for the spaces of a fresh core: build each tree
        flat = trees[mm]
        if flat is None:
            continue
        flat = np.ascontiguousarray(flat, np.uint64)
        if flat.ndim != 1 or flat.shape[0] % count:
            raise ValueError("snapshot: a page table has the wrong size")
        self.pt.root[mm] = _load_node(self, flat, 0, 0,
                                           np.zeros(flat.shape[0] // count, np.uint8))
    objects, images = state["objects"]
    _load_objects(self, list(objects))
    images = list(images)
    while self.img_cap < len(images):
        self._grow_img(2 * self.img_cap)
    for img, entry in enumerate(images):    # the same ids, the free ones too
        if entry is None:
            self.images.append(None)
            heapq.heappush(self.img_free, img)
        else:
            self._image_put(img, entry[0], entry[1])
    if self.tlb.n:
        tlb_mm, tlb_vpn = state["tlb"]
        mms = np.zeros(self.tlb.n, np.int64)
        vpns = np.zeros(self.tlb.n, np.uint64)
        _copy_in(<char *>cnp.PyArray_DATA(mms), tlb_mm, self.tlb.n * sizeof(int64_t))
        _copy_in(<char *>cnp.PyArray_DATA(vpns), tlb_vpn, self.tlb.n * sizeof(uint64_t))
        for i in range(self.tlb.n):
            self.tlb.e[i].mm = mms[i]
            self.tlb.e[i].vpn = vpns[i]
        for i in range(self.tlb.n):
            if self.tlb.e[i].mm:
                if not 0 < self.tlb.e[i].mm < n:
                    raise ValueError("snapshot: a TLB entry names no address space")
                self.tlb.e[i].pte = pt_walk(&self.pt, self.tlb.e[i].mm, self.tlb.e[i].vpn,
                                            False)
                if self.tlb.e[i].pte == NULL:
                    raise ValueError("snapshot: a TLB entry caches no PTE")
    if state["policy"] is not None:
        self.set_policy(state["policy"])
    return 0


cdef int _load_objects(Core self, list objects) except -1:
    """Rebuild the shared objects of a snapshot (``__reduce__``'s rows),
    checking every value against the machine."""
    cdef int64_t i, k, npages, page, v
    while self.obj_cap < len(objects):
        self._grow_obj(2 * self.obj_cap)
    self.obj_free = []
    for i, row in enumerate(objects):
        if row is None:
            self.obj_free.append(i)
            continue
        # (npages, base, pages, values); snapshots of earlier versions also kept the
        # family that made the object, which nothing reads: accepted and dropped
        row = tuple(row)
        if len(row) == 5:
            row = row[:2] + row[3:]
        if len(row) != 4:
            raise ValueError("snapshot: a malformed shared object")
        npages, base, pages, values = row
        if npages < 0 or len(pages) != len(values):
            raise ValueError("snapshot: a malformed shared object")
        objmap_init(&self.omap[i], npages)
        self.obj_base[i] = base
        self.obj_live[i] = 1
        self.obj_next = i + 1
        for page, v in zip(np.asarray(pages, np.int64).tolist(),
                           np.asarray(values, np.int64).tolist()):
            if not 0 <= page < npages or v == -1 or v >= self.frames \
                    or (v <= -2 and -v - 2 >= self.swap_slots):
                raise ValueError("snapshot: a shared object's page is out of range")
            if objmap_set(&self.omap[i], page, v) != 0:
                raise MemoryError()
    self.obj_next = len(objects)
    heapq.heapify(self.obj_free)
    return 0


cdef int _copy_in(char *dst, object src, size_t n) except -1:
    if not isinstance(src, bytes) or len(src) != n:
        raise ValueError("snapshot: a table has the wrong size")
    memcpy(dst, <const char *>src, n)
    return 0

