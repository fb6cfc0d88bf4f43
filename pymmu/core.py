"""pymmu's C-level API for simulators written in Cython: the module behind ``core.pxd``.

``from pymmu.core cimport ProcessCore, PYMMU_OK`` gives a Cython module direct,
GIL-free calls into a process's memory (``read_into``, ``fetch_into``,
``write_from``, ``translate``) with the semantics and counters of ``p.read``,
``p.fetch`` and ``p.write``, and ``raise_status`` to turn a status into the
exception the Python API raises. ``pymmu.Process`` is a ``ProcessCore``.
docs/cython.md has a worked example; tests/test_cython_api.py builds one.

At run time this module names the status codes and says where the headers are.
"""
from __future__ import annotations

import os

__all__ = ["get_include", "PYMMU_OK", "PYMMU_SEGV", "PYMMU_PROT", "PYMMU_OOM",
           "PYMMU_BUSY", "PYMMU_HOOK", "PYMMU_STATE"]

#: Statuses of the C API (pymmu/_core.pxd's ST_* values).
PYMMU_OK = 0
PYMMU_SEGV = 1          # SegmentationFault
PYMMU_PROT = 2          # ProtectionFault
PYMMU_OOM = 3           # OutOfMemory
PYMMU_HOOK = 7          # a Python policy's hook raised (see raise_status)
PYMMU_BUSY = 9          # the machine is busy: nothing was done
PYMMU_STATE = 10        # ProcessStateError: not running, or a strict vfork child's write


def get_include() -> str:
    """The directory to compile against pymmu: it holds ``pymmu/*.pxd`` (give it to
    Cython's include path) and ``pymmu/include/*.h`` (give it to the C compiler).

    >>> import os, pymmu
    >>> os.path.isfile(os.path.join(pymmu.get_include(), "pymmu", "core.pxd"))
    True
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
