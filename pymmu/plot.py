"""Charts drawn with matplotlib: the miss-ratio curves of a :func:`pymmu.sweep`
and Denning's curve of a :func:`pymmu.thrash`.

The miss-ratio curves show the fault rate (the miss ratio) by default, or any
counter of the sweep's rows (``key="evictions"``...), on a linear or
logarithmic y axis. Denning's curve shows CPU utilization against the degree
of multiprogramming, one line per load-control setting.

matplotlib (the ``plot`` extra) is imported when a chart is drawn, not when
this module is imported; without it each function raises an
``ImportError`` that says what to install. Files are written with the
non-interactive Agg backend, so no display is needed.
"""
from __future__ import annotations

import math
import os

__all__ = ["denning_curves", "miss_ratio_curves"]

_MARKERS = "osD^vP*X"


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'pymmu[plot]' "
                          "(or matplotlib)") from e


def _page_size_text(page_size: int) -> str:
    return f"{page_size // 1024} KiB" if page_size >= 1024 else f"{page_size} B"


def _y_label(key: str) -> str:
    if key == "fault_rate":
        return "miss ratio (faults / page references)"
    if key == "faults":
        return "faults (minor + major)"
    return key


def miss_ratio_curves(result, path=None, *, title: str | None = None,
                      key: str = "fault_rate", log_y: bool = False):
    """Draw one curve per policy: x frames (log2 scale), y the miss ratio or a counter.

    Parameters
    ----------
    result : pymmu.simulate.SweepResult
        What :func:`pymmu.sweep` returned.
    path : str or os.PathLike, optional
        Write the chart there (the format follows the extension: .png, .svg,
        .pdf...) and close it.
    title : str, optional
        Default: "Miss-ratio curves: NAME" (or "KEY by frames: NAME" for a
        counter) with the trace's name, and its access, reference and
        distinct page counts underneath.
    key : str
        What the y axis shows: "fault_rate" (the miss ratio, in percent; the
        default) or a key of the rows, such as "faults" or "evictions".
    log_y : bool
        Logarithmic y axis. It is symmetric-log (``symlog``), linear below the
        power of ten under the smallest nonzero value, so cells whose value is
        0 (no evictions once every page fits) stay on the chart instead of
        breaking the scale.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        NullLocator,
        PercentFormatter,
    )

    fig = Figure(figsize=(8, 5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    frames = list(result.frames)
    values = result.matrix(key)
    for j, policy in enumerate(result.policies):
        ax.plot(frames, values[:, j], marker=_MARKERS[j % len(_MARKERS)], markersize=5,
                linewidth=1.6, label=policy)
    if len(frames) > 1:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(frames))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel(f"frames ({_page_size_text(result.page_size)} pages)")
    ax.set_ylabel(_y_label(key))
    if log_y:
        # Linear from 0 to the power of ten at or below the smallest nonzero value,
        # logarithmic above: every nonzero cell is on the log part, 0 at the bottom.
        positive = values[values > 0]
        low = float(positive.min()) if positive.size else 1.0
        ax.set_yscale("symlog", linthresh=10.0 ** math.floor(math.log10(low)))
    if key == "fault_rate" and not log_y:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif key == "fault_rate":
        # PercentFormatter picks its decimals from the whole range, which a log
        # axis spans over decades: 0.01 % would print as 0 %.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{100 * y:.3g} %"))
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.set_ylim(bottom=0)
    ax.grid(True, which="major", alpha=0.35)
    if result.rows:
        first = result.rows[0]
        distinct = first["distinct_pages"]
        if distinct and frames[0] <= distinct <= frames[-1] * 2:
            ax.axvline(distinct, color="0.5", linestyle=":", linewidth=1)
            ax.annotate(f"{distinct} distinct pages", xy=(distinct, 1),
                        xycoords=("data", "axes fraction"), xytext=(-4, -4), textcoords="offset points", ha="right", va="top",
                        fontsize=8, color="0.35", rotation=90)
    if title is None:
        name = result.name or "trace"
        title = (f"Miss-ratio curves: {name}" if key == "fault_rate"
                 else f"{_y_label(key)} by frames: {name}")
        if result.rows:
            r = result.rows[0]
            title += (f"\n{r['records']:,} accesses, {r['references']:,} page references, "
                      f"{r['distinct_pages']:,} distinct pages")
    ax.set_title(title, fontsize=11)
    ax.legend(title="policy")
    return _saved(fig, path)


def denning_curves(result, path=None, *, title: str | None = None):
    """Draw Denning's curve: CPU utilization against the degree of
    multiprogramming, one line per load-control setting.

    A dotted vertical line marks the first degree whose jobs' pages exceed
    the frames (where thrashing can start).

    Parameters
    ----------
    result : pymmu.thrashing.ThrashResult
        What :func:`pymmu.thrash` returned.
    path : str or os.PathLike, optional
        Write the chart there (the format follows the extension) and close it.
    title : str, optional
        Default: "Thrashing: NAMES" with the machine and the model underneath.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, PercentFormatter

    fig = Figure(figsize=(8, 5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    degrees = list(result.degrees)
    values = result.matrix("utilization")
    for j, w in enumerate(result.windows):
        label = ("without load control" if not w
                 else f"working-set load control (window {w:,})")
        ax.plot(degrees, values[:, j], marker=_MARKERS[j % len(_MARKERS)], markersize=5,
                linewidth=1.8, label=label)
    ax.xaxis.set_major_locator(FixedLocator(degrees))
    ax.set_xlim(degrees[0] - 0.3, degrees[-1] + 0.3)
    ax.set_xlabel("degree of multiprogramming (jobs)")
    ax.set_ylabel("CPU utilization")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    ax.grid(True, which="major", alpha=0.35)
    d = result.thrashing_degree()
    if d is not None:
        ax.axvline(d - 0.5, color="0.5", linestyle=":", linewidth=1)
        ax.annotate(f"pages > {result.frames:,} frames", xy=(d - 0.5, 0.02),
                    xycoords=("data", "axes fraction"), xytext=(4, 4),
                    textcoords="offset points", ha="left", va="bottom", fontsize=8,
                    color="0.35")
    if title is None:
        p = result.params
        names = ", ".join(dict.fromkeys(result.names))
        records = f"first {p['records']:,} records" if p["records"] else "whole traces"
        title = (f"Thrashing: {names}\n{result.frames:,} frames, {p['policy']}; "
                 f"{records} x {p['repeat']}; I/O {p['io_ns']:,} ns every "
                 f"{p['io_every']:,} refs; disk {p['cost']['disk_read']:,} ns")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best")
    return _saved(fig, path)


def _saved(fig, path):
    """Write ``fig`` to ``path`` (when given) through the Agg canvas, which needs
    no display; returns ``fig``."""
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        fig.savefig(os.fspath(path))
    return fig
