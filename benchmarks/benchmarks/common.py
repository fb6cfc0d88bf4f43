"""What the asv modules share: the implementation under test, resident-page setup and
the shipped ls trace.

The suite measures ``pymmu.Machine``. ``PYMMU_BENCH_IMPL`` may name another class with
the same API (``reference`` for ``pymmu.reference.Machine``, or ``module:Class``), the
way ``compare.py --impl`` does, to exercise the suite itself.
"""
import functools
import importlib
import os

PAGE = 4096
DATA8 = b"\xa5" * 8


def machine_class():
    spec = os.environ.get("PYMMU_BENCH_IMPL", "core")
    if spec == "core":
        import pymmu
        return pymmu.Machine
    if spec == "reference":
        from pymmu import reference
        return reference.Machine
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "Machine")


def resident(pages, page_size=PAGE, frames=None):
    """A machine whose one process has ``pages`` private pages, each written once so
    that it is resident and writable. Returns (machine, process, base address)."""
    m = machine_class()(frames or pages, page_size=page_size)
    p = m.spawn()
    base = p.mmap(pages * page_size)
    write = p.write
    for a in range(base, base + pages * page_size, page_size):
        write(a, b"\x01")
    return m, p, base


@functools.lru_cache(maxsize=2)
def lackey_trace(records):
    """(Trace, distinct 4 KiB pages) of the ls sample, or its first ``records`` records."""
    from pymmu.traces import read_lackey, sample
    trace = read_lackey(sample("ls"))
    if records is not None:
        trace = trace[:records]
    return trace, trace.distinct_pages(PAGE)
