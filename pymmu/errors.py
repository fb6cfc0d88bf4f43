"""The exceptions pymmu raises.

Every error pymmu raises on purpose is an ``MMUError`` (or a ``TypeError`` /
``ValueError`` for a bad argument). Memory faults carry the faulting address,
the kind of access and the pid, like the ``siginfo`` a real kernel delivers.
"""
from __future__ import annotations

__all__ = [
    "MMUError", "MemoryFault", "SegmentationFault", "ProtectionFault",
    "OutOfMemory", "ProcessStateError", "InvariantError", "TraceError",
]


class MMUError(Exception):
    """Base class of every pymmu error."""


class MemoryFault(MMUError):
    """An access that the MMU and the kernel could not satisfy.

    Attributes
    ----------
    addr : int
        The faulting virtual address.
    access : str
        ``"read"``, ``"write"`` or ``"execute"``.
    pid : int
        The process that made the access.
    index : int or None
        In ``Machine.replay``, the position of the faulting trace record.
    """

    kind = "memory fault"

    def __init__(self, addr: int, access: str, pid: int, index: int | None = None):
        self.addr = addr
        self.access = access
        self.pid = pid
        self.index = index
        super().__init__(addr, access, pid)

    def __str__(self) -> str:
        where = f" (trace record {self.index})" if self.index is not None else ""
        return f"{self.kind}: {self.access} at {self.addr:#x} in pid {self.pid}{where}"


class SegmentationFault(MemoryFault):
    """The address is not inside any mapping (or beyond the address space)."""

    kind = "segmentation fault"


class ProtectionFault(MemoryFault):
    """The mapping exists but its protection forbids the access."""

    kind = "protection fault"


class OutOfMemory(MMUError):
    """A frame was needed and the reclaimer could free none.

    Carries the same ``addr``, ``access`` and ``pid`` as a memory fault.
    """

    def __init__(self, addr: int | None = None, access: str | None = None,
                 pid: int | None = None, index: int | None = None):
        self.addr = addr
        self.access = access
        self.pid = pid
        self.index = index
        super().__init__(addr, access, pid)

    def __str__(self) -> str:
        if self.addr is None:
            return "out of memory: no frame could be freed"
        return (f"out of memory: no frame could be freed for a {self.access} at "
                f"{self.addr:#x} in pid {self.pid}")


class ProcessStateError(MMUError):
    """The process cannot do this in its current state (suspended, zombie, exited)."""


class InvariantError(MMUError):
    """``Machine.check()`` found a broken invariant; the message names it."""


class TraceError(MMUError, ValueError):
    """A trace that cannot be read or replayed.

    A ``ValueError`` too, so code that catches bad input catches it.

    Attributes
    ----------
    path : str or None
        The file, when the trace came from one.
    line : int or None
        The 1-based line of a text trace that is wrong.
    index : int or None
        The position of the bad record in the whole trace (the records before
        it were read, or replayed).
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 index: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.index = index
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.line is not None:
            where.append(f"line {self.line:,}")
        elif self.index is not None:
            where.append(f"record {self.index:,}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def __reduce__(self):
        return (_trace_error, (self.message, self.path, self.line, self.index))


def _trace_error(message, path, line, index) -> TraceError:
    return TraceError(message, path=path, line=line, index=index)
