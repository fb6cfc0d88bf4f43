"""Many processes in time: ``m.run`` (DESIGN.md section 12) against ``m.replay``.

* ``RunOneJob``: one job of the ls sample, resident (frames for every page) and under
  pressure, timed with ``m.run`` and with ``m.replay`` of the same trace: the same
  references and counters (rule 11), so the ratio is the scheduler's cost per
  reference (target: at most 1.5x, judged in compare.py ``--only run``).
* ``RunJobs``: four jobs of the ls sample interleaved under pressure, without and
  with working-set load control (the thrashing the time model exists to show).

Each timed call is one whole run on a fresh machine (``number = 1``: asv runs
``setup`` again before every call). ``SMOKE`` holds the sizes tests/test_benchmarks.py
substitutes to run every benchmark once quickly.
"""
from .common import lackey_trace, machine_class

LACKEY_RECORDS = None           # None: the whole ls sample (873,174 records)
SMOKE = {"LACKEY_RECORDS": 2_000}


def _cost():
    import pymmu
    return pymmu.Cost(switch=0)


class RunOneJob:
    """m.run([Job(ls)]) and m.replay(ls), resident and under pressure (1/8 of the pages)."""

    params = [["resident", "pressure"]]
    param_names = ["memory"]
    number = 1
    timeout = 300

    def setup(self, memory):
        self.trace, distinct = lackey_trace(LACKEY_RECORDS)
        frames = distinct + 64 if memory == "resident" else max(4, distinct // 8)
        self.m = machine_class()(frames, swap_slots=distinct, zero_page=False)

    def time_run(self, memory):
        import pymmu
        self.m.run([pymmu.Job(self.trace)], cost=_cost())

    def time_replay(self, memory):
        self.m.replay(self.trace)

    def peakmem_run(self, memory):
        import pymmu
        self.m.run([pymmu.Job(self.trace)], cost=_cost())


class RunJobs:
    """m.run of four ls jobs on 1/4 of their pages, without and with load control."""

    params = [["none", "ws"]]
    param_names = ["load_control"]
    number = 1
    timeout = 300

    def setup(self, load_control):
        import pymmu
        self.trace, distinct = lackey_trace(LACKEY_RECORDS)
        self.m = machine_class()(max(4, distinct // 4), swap_slots=4 * distinct)
        self.control = pymmu.WorkingSet(10_000) if load_control == "ws" else None

    def time_run(self, load_control):
        import pymmu
        self.m.run([pymmu.Job(self.trace) for _ in range(4)], load_control=self.control)
