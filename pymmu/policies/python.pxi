# A replacement policy written in Python (pymmu.Policy, pymmu/policy.py), one unit
# of the core's replacement-policy interface (docs/architecture.md): its victim()
# and its hooks (on_map, on_free, on_access) are called with the GIL; the first
# exception a hook raises is kept and raised once the operation completes
# (Core._hook_check). PolicyView is what victim() sees of the frames. Included in
# pymmu/_core.pyx.

# The hooks (python_hook's which).
cdef enum:
    HOOK_MAP = 0
    HOOK_FREE = 1
    HOOK_ACCESS = 2


cdef int64_t python_victim(Core self) noexcept nogil:
    """Ask the policy for a victim: its pfn, -1 for None (OutOfMemory), or
    -2 with ``victim_error`` set (an exception, or a pfn that is not an
    evictable frame). Nothing has changed when it is called."""
    with gil:
        return _ask_victim(self)


cdef int64_t _ask_victim(Core self) noexcept:
    """python_victim's call, with the GIL."""
    cdef PolicyView view = PolicyView(self)
    cdef int64_t pfn
    self.in_hook += 1
    try:
        choice = self.pypolicy.victim(view)
    except BaseException as e:
        self.victim_error = e
        return -2
    finally:
        self.in_hook -= 1
        view.live = False           # a view is valid during its call only
    if choice is None:
        return -1
    pfn = _as_pfn(choice)
    if pfn < 0 or pfn >= self.frames or not self._evictable(pfn):
        self.victim_error = ValueError(
            f"{type(self.pypolicy).__name__}.victim() returned {choice!r}: not an "
            f"evictable frame (0 <= pfn < {self.frames}, in use, not pinned, "
            "and swap for it if it needs a slot)")
        return -2
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


cdef int64_t _as_pfn(object value):
    """``value`` as a frame number (any integer type but bool), or -1."""
    import operator

    if isinstance(value, bool):
        return -1
    try:
        value = operator.index(value)
    except TypeError:
        return -1
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
        cdef int64_t pfn = _as_pfn(value)
        if not self.live:
            raise RuntimeError("a policy view is valid only during its victim() call")
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
