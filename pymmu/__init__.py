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

# The typed core is compiled (setup.py builds these from pymmu/*.pyx). In a source
# tree where it was never built, the imports below would fail with a bare "No
# module named 'pymmu._ptebits'"; say what to do instead. Any other ImportError
# (numpy missing, a stale build) propagates unchanged.
_COMPILED = ("pymmu._ptebits", "pymmu._core", "pymmu._introspect", "pymmu._invariants",
             "pymmu._tracefile", "pymmu._run")


def _require_compiled_core() -> None:
    import importlib
    import os

    for name in _COMPILED:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name not in _COMPILED:
                raise
            raise ImportError(
                f"pymmu's compiled core is missing: {e.name} is not built (for this "
                f"Python) in {os.path.dirname(__file__)}. Build it with `pip install .`; "
                "in a source checkout, `pip install -e .` or `python setup.py "
                "build_ext --inplace`. If pymmu is already installed, Python found this "
                "unbuilt source folder first: run it from another directory.",
                name=e.name,
            ) from e


_require_compiled_core()
del _require_compiled_core

from pymmu.tables import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
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
from pymmu import events, traces
from pymmu.introspect import show
from pymmu.policy import Policy
from pymmu.core import get_include
from pymmu.machine import Machine, Process
from pymmu.simulate import sweep
from pymmu.thrashing import thrash
from pymmu.run import Cost, Job, RunResult, WorkingSet

__version__ = "0.1.0"

__all__ = [
    "Machine", "Process", "Image", "Segment", "Mapping", "pte", "traces", "events", "show", "Policy", "get_include",
    "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC",
    "MMUError", "MemoryFault", "SegmentationFault", "ProtectionFault",
    "OutOfMemory", "ProcessStateError", "InvariantError", "TraceError",
    "sweep", "thrash", "Job", "Cost", "WorkingSet", "RunResult",
]
