"""Per-call access: 8-byte ``p.read`` / ``p.write`` on resident pages at random addresses.

Each timed call makes ``CALLS`` accesses (divide by ``CALLS`` for the time per call),
so that the loop, not the timer, dominates. ``Bytearray`` is the same loop over a
``bytearray`` of the same size: DESIGN.md section 9 wants pymmu within 1.5x of it.
"""
import random

from .common import DATA8, PAGE, resident

CALLS = 1000
PAGES = [16, 1024, 16384]


def random_offsets(pages, calls=CALLS, seed=0):
    """8-byte aligned offsets, uniform over ``pages`` pages (never crossing a page)."""
    rng = random.Random(seed)
    return [rng.randrange(pages * PAGE // 8) * 8 for _ in range(calls)]


class Access:
    """pymmu: CALLS random 8-byte accesses to resident, writable pages."""

    params = [PAGES]
    param_names = ["pages"]

    def setup(self, pages):
        self.m, self.p, base = resident(pages)
        self.addrs = [base + o for o in random_offsets(pages)]

    def time_read(self, pages):
        read = self.p.read
        for a in self.addrs:
            read(a, 8)

    def time_write(self, pages):
        write, data = self.p.write, DATA8
        for a in self.addrs:
            write(a, data)


class Bytearray:
    """Baseline: the same CALLS accesses as bytearray slice reads and assignments."""

    params = [PAGES]
    param_names = ["pages"]

    def setup(self, pages):
        self.buf = bytearray(pages * PAGE)
        self.buf[::PAGE] = b"\x01" * pages
        self.offs = random_offsets(pages)

    def time_slice_read(self, pages):
        buf = self.buf
        for a in self.offs:
            buf[a:a + 8]

    def time_slice_write(self, pages):
        buf, data = self.buf, DATA8
        for a in self.offs:
            buf[a:a + 8] = data
