"""Memory the core keeps beside page data (DESIGN.md section 9: at most 16 bytes per
frame and 8 per mapped PTE), tracked as numbers so that asv shows a change in layout.
"""
from .common import machine_class, resident

POLICIES = ["clock", "fifo", "lru", "random", "opt"]


def _core_memory(m):
    core = getattr(m, "_core", None)
    try:
        from pymmu._core import Core
        from pymmu._introspect import memory
    except ImportError:
        Core = memory = None
    if memory is None or not isinstance(core, Core):
        # asv's way of skipping: the implementation under test has no core
        raise NotImplementedError("the implementation has no core memory accounting")
    return memory(core)


class MetadataPerFrame:
    """Bytes per frame beyond the page itself: the frame record and policy state."""

    params = [POLICIES]
    param_names = ["policy"]
    unit = "bytes"

    def setup(self, policy):
        self.memory = _core_memory(machine_class()(4096, policy=policy))

    def track_bytes_per_frame(self, policy):
        return self.memory["frame"]


class MetadataPerPte:
    """Bytes per mapped PTE, and page-table node bytes per resident page."""

    params = [[64, 16384]]
    param_names = ["pages"]
    unit = "bytes"

    def setup(self, pages):
        m, _, _ = resident(pages)
        self.memory = _core_memory(m)
        self.pages = pages

    def track_bytes_per_pte(self, pages):
        return self.memory["pte"]

    def track_table_node_bytes_per_page(self, pages):
        return self.memory["nodes"] / self.pages
