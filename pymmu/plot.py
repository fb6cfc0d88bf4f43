"""Miss-ratio curves of a :func:`pymmu.sweep`, drawn with matplotlib.

The curves show the fault rate (the miss ratio) by default, or any counter of
the sweep's rows (``key="evictions"``...), on a linear or logarithmic y axis.

matplotlib (the ``plot`` extra) is imported when a chart is drawn, not when
this module is imported; without it :func:`miss_ratio_curves` raises an
``ImportError`` that says what to install. Files are written with the
non-interactive Agg backend, so no display is needed.
"""
from __future__ import annotations

import math
import os

__all__ = ["miss_ratio_curves"]

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
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        fig.savefig(os.fspath(path))
    return fig
