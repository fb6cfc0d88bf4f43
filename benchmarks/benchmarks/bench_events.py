"""Observing and extending (DESIGN.md section 11): the event log and Python policies.

* ``ReplayEvents``: ``m.replay`` of the ``ls`` sample (``pymmu.traces.sample("ls")``)
  under memory pressure with event recording off, and on (the whole
  ``with m.events() as log: m.replay(trace)`` block, closing it included: that is
  when ``log.array`` is built), and of a cycle over frames + 1 pages, where every
  access evicts, swaps out and faults a page back in (three events per access).
* ``PythonPolicy``: ``m.replay`` of the ``ls`` sample with a second-chance clock
  written in Python (``pymmu/policy.py``'s docstring's) against the built-in
  ``"clock"``; both give the same faults.

Each timed call is one whole replay on a fresh machine (replay changes the machine,
so ``number = 1``: asv runs ``setup`` again before every timed call).
benchmarks/compare.py (``--only events,policy``) times the same paths side by side
and judges their targets (at most 2x per event-producing access; at most 3 us of
overhead per eviction).

``SMOKE`` holds smaller sizes that tests/test_benchmarks.py substitutes to run every
benchmark once quickly.
"""
import functools

import numpy as np

from .common import PAGE, lackey_trace, machine_class

LACKEY_RECORDS = None           # None: the whole ls sample (873,174 records)
CYCLE_RECORDS = 1_000_000       # accesses of the cycle over frames + 1 pages
SMOKE = {"LACKEY_RECORDS": 2_000, "CYCLE_RECORDS": 2_000}


@functools.lru_cache(maxsize=2)
def cycle_trace(records, pages):
    """LOADs of pages 0, 1, ..., pages-1, 0, 1, ... (a miss every time on pages - 1
    frames, whatever the policy)."""
    from pymmu.traces import LOAD, Trace
    page_numbers = np.arange(records, dtype=np.uint64) % np.uint64(pages)
    return Trace(page_numbers << np.uint64(PAGE.bit_length() - 1), kind=LOAD)


def pressure_machine(frames, distinct, policy="clock"):
    """Swap for every page and no shared zero page: every miss takes a frame."""
    return machine_class()(frames, zero_page=False, swap_slots=distinct, policy=policy)


def python_clock():
    """A new instance of the second-chance clock written in Python (one per machine)."""
    from pymmu.policy import Clock

    return Clock()


class ReplayEvents:
    """m.replay of the ls sample on N frames (clock), event recording off and on."""

    params = [[8, 32]]
    param_names = ["frames"]
    number = 1
    timeout = 300

    def setup(self, frames):
        self.trace, distinct = lackey_trace(LACKEY_RECORDS)
        self.m = pressure_machine(frames, distinct)

    def time_replay_events_off(self, frames):
        self.m.replay(self.trace)

    def time_replay_events_on(self, frames):
        with self.m.events():
            self.m.replay(self.trace)

    def peakmem_replay_events_on(self, frames):
        with self.m.events():
            self.m.replay(self.trace)


class ReplayEventsEveryAccess:
    """m.replay of CYCLE_RECORDS accesses cycling over 33 pages on 32 frames: every
    access produces events (eviction, swap-out, swap-in), recording off and on."""

    number = 1
    timeout = 300

    def setup(self):
        frames = 32
        self.trace = cycle_trace(CYCLE_RECORDS, frames + 1)
        self.m = pressure_machine(frames, frames + 1)

    def time_replay_events_off(self):
        self.m.replay(self.trace)

    def time_replay_events_on(self):
        with self.m.events():
            self.m.replay(self.trace)


class PythonPolicy:
    """m.replay of the ls sample on N frames: a clock written in Python
    (``time_replay_python``) vs the built-in "clock" (``time_replay_builtin``)."""

    params = [[8, 32]]
    param_names = ["frames"]
    number = 1
    timeout = 300

    def setup(self, frames):
        self.trace, distinct = lackey_trace(LACKEY_RECORDS)
        self.builtin = pressure_machine(frames, distinct, "clock")
        self.python = pressure_machine(frames, distinct, python_clock())

    def time_replay_builtin(self, frames):
        self.builtin.replay(self.trace)

    def time_replay_python(self, frames):
        self.python.replay(self.trace)
