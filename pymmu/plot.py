"""Miss-ratio curves of a :func:`pymmu.sweep`, drawn with matplotlib.

matplotlib (the ``plot`` extra) is imported when a chart is drawn, not when
this module is imported; without it :func:`miss_ratio_curves` raises an
``ImportError`` that says what to install. Files are written with the
non-interactive Agg backend, so no display is needed.
"""
from __future__ import annotations

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


def miss_ratio_curves(result, path=None, *, title: str | None = None):
    """Draw one miss-ratio curve per policy: x frames (log2 scale), y miss ratio.

    Parameters
    ----------
    result : pymmu.simulate.SweepResult
        What :func:`pymmu.sweep` returned.
    path : str or os.PathLike, optional
        Write the chart there (the format follows the extension: .png, .svg,
        .pdf...) and close it.
    title : str, optional
        Default: "Miss-ratio curves: NAME" with the trace's name, and the page
        size and reference count underneath.

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
    rates = result.matrix("fault_rate")
    for j, policy in enumerate(result.policies):
        ax.plot(frames, rates[:, j], marker=_MARKERS[j % len(_MARKERS)], markersize=5,
                linewidth=1.6, label=policy)
    if len(frames) > 1:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(frames))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel(f"frames ({_page_size_text(result.page_size)} pages)")
    ax.set_ylabel("miss ratio (faults / page references)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
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
        title = f"Miss-ratio curves: {name}"
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
