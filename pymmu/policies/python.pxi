# A replacement policy written in Python (pymmu.Policy, pymmu/policy.py), one unit
# of the core's replacement-policy interface (docs/architecture.md): its victim()
# and its hooks (on_map, on_free, on_access) are called with the GIL; the first
# exception a hook raises is kept and raised once the operation completes
# (Core._hook_check). PolicyView is what victim() sees of the frames. Included in
# pymmu/_core.pyx.

from operator import index as _index

# The hooks (python_hook's which).
cdef enum:
    HOOK_MAP = 0
    HOOK_FREE = 1
    HOOK_ACCESS = 2


cdef int64_t python_victim(Core self) noexcept nogil:
    """Ask the policy for a victim: its pfn, -1 for None (OutOfMemory), or
    -2 with ``victim_error`` set (an exception, or an answer that is not an
    evictable frame). Nothing has changed when it is called."""
    with gil:
        return _ask_victim(self)


cdef int64_t _ask_victim(Core self) noexcept:
    """python_victim's call, with the GIL: whatever goes wrong, in victim()
    or after it (its answer's ``__index__``, even its ``__repr__`` in the
    error message), is kept as ``victim_error`` and raised by the operation,
    which changes nothing. Nothing may escape: an exception leaving this
    noexcept function would be printed and dropped, and the caller would
    evict frame 0 unchecked."""
    try:
        return _victim_checked(self)
    except BaseException as e:
        self.victim_error = e
        return -2


cdef int64_t _victim_checked(Core self) except -2:
    """The policy's answer as an evictable pfn, or -1 for None; raises what
    victim() or the conversion of its answer raised, or ValueError."""
    cdef PolicyView view
    cdef int64_t pfn
    self.in_hook += 1                   # the answer's __index__ is the policy's code too
    try:
        view = PolicyView(self)
        try:
            choice = self.pypolicy.victim(view)
        finally:
            view.live = False           # a view is valid during its call only
        if choice is None:
            return -1
        pfn = _as_pfn(choice)
    finally:
        self.in_hook -= 1
    if pfn < 0 or pfn >= self.frames or not self._evictable(pfn):
        raise ValueError(
            f"{type(self.pypolicy).__name__}.victim() returned {choice!r}: not an "
            f"evictable frame (0 <= pfn < {self.frames}, in use, not pinned, "
            "and swap for it if it needs a slot)")
    return pfn


cdef void python_hook(Core self, int which, int64_t pfn) noexcept nogil:
    """Call on_map, on_free or on_access; the first exception is kept and
    raised once the operation completes (``_hook_check``)."""
    with gil:
        self.in_hook += 1
        try:
            if which == HOOK_MAP:
                self.pypolicy.on_map(pfn)
            elif which == HOOK_FREE:
                self.pypolicy.on_free(pfn)
            else:
                self.pypolicy.on_access(pfn)
        except BaseException as e:
            if not self.hook_failed:     # the first one is raised
                self.hook_error = e
                self.hook_failed = True
        finally:
            self.in_hook -= 1


cdef int64_t _as_pfn(object value) except? -2:
    """``value`` as a frame number, or -1 when it is none: the rule of
    ``operator.index`` (an int, a numpy integer, any object with
    ``__index__``), but not a bool, and in [0, 2**62).

    A type without ``__index__`` (float, str, numpy.bool_, ...) is no frame
    number (-1: the caller's ValueError). An exception its ``__index__``
    raises, or a non-int it returns (TypeError), propagates: it is the
    policy's own error, raised as it is (docs/api.md, "pymmu.Policy").
    """
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        return -1
    value = _index(value)
    return value if 0 <= value < (<int64_t>1) << 62 else -1


@cython.final
cdef class PolicyView:
    """What a Python policy's ``victim(view)`` sees of the machine's frames.

    Valid only during the call; every method takes a pfn in [0, frames).
    """

    cdef Core _c
    cdef readonly int64_t frames
    cdef bint live                     # its victim() call is running

    def __cinit__(self, Core core):
        self._c = core
        self.frames = core.frames
        self.live = True

    cdef int64_t _pfn(self, object value) except -1:
        cdef int64_t pfn
        if not self.live:
            raise RuntimeError("a policy view is valid only during its victim() call")
        pfn = _as_pfn(value)
        if pfn < 0 or pfn >= self.frames:
            raise ValueError(f"pfn must be an int in [0, {self.frames}), not {value!r}")
        return pfn

    def evictable(self, pfn) -> bool:
        """Whether ``pfn`` may be the victim: in use, not pinned by the access in
        progress, and swap for it if it needs a new slot."""
        return self._c._evictable(self._pfn(pfn))

    def accessed(self, pfn) -> bool:
        """Whether any PTE that maps ``pfn`` has its accessed bit set."""
        return self._c._rmap_bits(self._pfn(pfn), PTE_ACCESSED)

    def dirty(self, pfn) -> bool:
        """Whether any PTE that maps ``pfn`` has its dirty bit set."""
        return self._c._rmap_bits(self._pfn(pfn), PTE_DIRTY)

    def clear_accessed(self, pfn) -> bool:
        """Test and clear: clear the accessed bit of every PTE that maps ``pfn``
        (dropping their TLB entries, as the built-in clock does); whether any
        was set."""
        cdef int64_t f = self._pfn(pfn)
        if self._c.fm[f].state == F_FREE:
            return False
        return self._c._rmap(f, RMAP_YOUNG, 0) > 0


# The unit's operations: the hooks, when the policy has them (set_policy).

cdef void python_map(Core c, int64_t pfn) noexcept nogil:
    if unlikely(c.py_hooks):
        python_hook(c, HOOK_MAP, pfn)


cdef void python_use(Core c, int64_t pfn, int64_t ref) noexcept nogil:
    if unlikely(c.py_access):          # (only a policy that sets wants_access)
        python_hook(c, HOOK_ACCESS, pfn)


cdef void python_unmap(Core c, int64_t pfn) noexcept nogil:
    if unlikely(c.py_hooks):
        python_hook(c, HOOK_FREE, pfn)


cdef policy_ops_t python_unit
python_unit.init = unit_init_nothing
python_unit.free = unit_free
python_unit.on_map = python_map
python_unit.on_use = python_use
python_unit.on_unmap = python_unmap
python_unit.victim = python_victim
python_unit.begin = NULL
python_unit.end = NULL
python_unit.ahead = NULL
python_unit.state = unit_stateless
python_unit.restore = unit_restore_nothing
python_unit.check = unit_sound
python_unit.nbytes = unit_nbytes_none
python_unit.hand = unit_no_hand
