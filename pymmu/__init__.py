"""pymmu: a virtual-memory emulator with a typed Cython core.

>>> import pymmu
>>> m = pymmu.Machine(frames=8)
>>> p = m.spawn()
>>> a = p.mmap(3 * m.page_size)
>>> p.write(a, b"hello")
>>> child = p.fork()
>>> child.read(a, 5)
b'hello'
>>> m.refcount(p.translate(a) // m.page_size)
2
"""
from pymmu._args import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
from pymmu.errors import (
    InvariantError,
    MemoryFault,
    MMUError,
    OutOfMemory,
    ProcessStateError,
    ProtectionFault,
    SegmentationFault,
    TraceError,
)
from pymmu.image import Image, Segment
from pymmu.vmas import Mapping
from pymmu import pte
from pymmu import traces
from pymmu.machine import Machine, Process
from pymmu.simulate import sweep

__version__ = "0.1.0"

__all__ = [
    "Machine", "Process", "Image", "Segment", "Mapping", "pte", "traces",
    "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC",
    "MMUError", "MemoryFault", "SegmentationFault", "ProtectionFault",
    "OutOfMemory", "ProcessStateError", "InvariantError", "TraceError",
    "sweep",
]
