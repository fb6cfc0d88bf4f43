"""Trace replay: ``m.replay`` under memory pressure, on resident pages, and on a real trace.

* ``ReplayPressure``: a Zipf(0.9) page trace on a machine whose frames are 1% or 10% of
  the pages it touches, per policy (every miss is a fault, an eviction and a swap-out).
* ``ReplayResident``: random 8-byte loads over pages that are all resident (TLB and
  page-table hits, no faults), the path numpy's gather is compared with in compare.py.
* ``ReplayLackey``: the ``ls`` sample trace shipped with pymmu
  (``pymmu.traces.sample("ls")``).

Each timed call is one whole replay (divide by the records for the time per access).
Replay changes the machine, so the classes set ``number = 1``: asv runs ``setup`` again
before every timed call. benchmarks/compare.py runs the 10-million-access Zipf trace
side by side with libCacheSim, and the resident replay beside numpy's gather.

``SMOKE`` holds smaller sizes that tests/test_benchmarks.py substitutes to run every
benchmark once quickly (reference.py is far too slow for the sizes tracked here).
"""
import functools

import numpy as np

from .common import PAGE, lackey_trace, machine_class, resident

ZIPF_RECORDS = 200_000          # accesses of the Zipf trace
ZIPF_PAGES = 20_000             # pages it draws from
RESIDENT_RECORDS = 1_000_000    # loads of the resident replay
LACKEY_RECORDS = None           # None: the whole lackey trace
SMOKE = {"ZIPF_RECORDS": 2_000, "ZIPF_PAGES": 500, "RESIDENT_RECORDS": 2_000,
         "LACKEY_RECORDS": 2_000}

POLICIES = ["clock", "lru", "fifo", "opt"]


def zipf_pages(records, pages, seed=0, alpha=0.9):
    """Page numbers of ``records`` Zipf(alpha) draws over ``pages`` pages (rank k with
    probability proportional to k**-alpha), ranks scattered by a random permutation.
    The same generator as compare.py's."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(np.arange(1, pages + 1, dtype=np.float64) ** -alpha)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(records), side="right")
    np.minimum(ranks, pages - 1, out=ranks)
    return rng.permutation(pages).astype(np.uint64)[ranks]


@functools.lru_cache(maxsize=4)
def zipf_trace(records, pages):
    """(Trace of LOADs, distinct pages touched), made once per process."""
    from pymmu.traces import LOAD, Trace
    page_numbers = zipf_pages(records, pages)
    distinct = int(np.unique(page_numbers).shape[0])
    return Trace(page_numbers << np.uint64(PAGE.bit_length() - 1), kind=LOAD), distinct


def pressure_machine(frames, distinct, policy):
    """Swap for every page and no shared zero page: every miss takes a frame."""
    return machine_class()(frames, zero_page=False, swap_slots=distinct, policy=policy)


class ReplayPressure:
    """m.replay of a Zipf(0.9) trace (ZIPF_RECORDS accesses over ZIPF_PAGES pages) with
    frames a fraction of the distinct pages, per policy."""

    params = [[0.01, 0.1], POLICIES]
    param_names = ["frames", "policy"]
    number = 1
    timeout = 300

    def setup(self, fraction, policy):
        self.trace, distinct = zipf_trace(ZIPF_RECORDS, ZIPF_PAGES)
        frames = max(1, round(distinct * fraction))
        self.m = pressure_machine(frames, distinct, policy)

    def time_replay(self, fraction, policy):
        self.m.replay(self.trace)

    def peakmem_replay(self, fraction, policy):
        self.m.replay(self.trace)


class ReplayResident:
    """m.replay of RESIDENT_RECORDS random 8-byte loads over N resident pages (64 fit
    the default TLB; 2048 are the 8 MiB table of compare.py's gather comparison)."""

    params = [[64, 2048]]
    param_names = ["pages"]
    number = 1

    def setup(self, pages):
        from pymmu.traces import LOAD, Trace
        self.m, self.p, base = resident(pages)
        rng = np.random.default_rng(0)
        offs = rng.integers(0, pages * PAGE // 8, RESIDENT_RECORDS).astype(np.uint64)
        self.trace = Trace(np.uint64(base) + offs * np.uint64(8), kind=LOAD, size=8)
        self.m.replay(self.trace, process=self.p)          # warm-up: TLB filled

    def time_replay(self, pages):
        self.m.replay(self.trace, process=self.p)

    def peakmem_replay(self, pages):
        self.m.replay(self.trace, process=self.p)


class ReplayLackey:
    """m.replay of the ls sample (873,174 records of /bin/ls, 270 pages) per policy
    and frame count."""

    params = [[32, 128], POLICIES]
    param_names = ["frames", "policy"]
    number = 1
    timeout = 300

    def setup(self, frames, policy):
        self.trace, distinct = lackey_trace(LACKEY_RECORDS)
        self.m = machine_class()(frames, swap_slots=distinct, policy=policy)

    def time_replay(self, frames, policy):
        self.m.replay(self.trace)

    def peakmem_replay(self, frames, policy):
        self.m.replay(self.trace)
