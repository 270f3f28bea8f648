"""Server-side charts: small inline SVG made from numbers (no chart library, no script).

Each function returns markup safe to put in a page: every label is escaped, every number
is formatted by the code here. The charts are images for people; the numbers are also in
the page's tables and in the ``<title>`` of each bar or point (a tooltip and a text
alternative).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from markupsafe import Markup, escape

__all__ = ["bar_chart", "line_chart"]

_WIDTH: Final = 480
_HEIGHT: Final = 140
_PAD: Final = 22


def _frame(*, title: str, body: str, width: int, height: int) -> Markup:
    label = escape(title)
    return Markup(  # noqa: S704  # labels escaped above, numbers formatted here
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{label}</title>"
        f'<line class="axis" x1="{_PAD}" y1="{height - _PAD}" x2="{width - 4}" '
        f'y2="{height - _PAD}"/>{body}</svg>'
    )


def bar_chart(
    series: Sequence[tuple[str, float]], *, title: str, width: int = _WIDTH, height: int = _HEIGHT
) -> Markup:
    """Bars of ``(label, value)``; the first and last labels under the axis.

    Args:
        series: The bars, in order.
        title: What the chart shows (its accessible name).
        width: Pixels.
        height: Pixels.
    """
    top = max((v for _, v in series), default=0) or 1
    plot_h = height - 2 * _PAD
    step = (width - _PAD - 4) / max(len(series), 1)
    parts = [f'<text class="tick" x="2" y="{_PAD - 6}">{_number(top)}</text>']
    for i, (label, value) in enumerate(series):
        h = plot_h * value / top
        x = _PAD + i * step
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{height - _PAD - h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {_number(value)}</title></rect>"
        )
    parts += _end_labels(series, width=width, height=height)
    return _frame(title=title, body="".join(parts), width=width, height=height)


def line_chart(
    series: Sequence[tuple[str, float]], *, title: str, width: int = _WIDTH, height: int = _HEIGHT
) -> Markup:
    """A polyline through ``(label, value)`` points, scaled between their minimum and maximum."""
    values = [v for _, v in series]
    low, high = min(values, default=0.0), max(values, default=0.0)
    span = (high - low) or 1.0
    plot_h = height - 2 * _PAD
    step = (width - _PAD - 8) / max(len(series) - 1, 1)
    points, dots = [], []
    for i, (label, value) in enumerate(series):
        x, y = _PAD + i * step, height - _PAD - plot_h * (value - low) / span
        points.append(f"{x:.1f},{y:.1f}")
        dots.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2">'
            f"<title>{escape(label)}: {_number(value)}</title></circle>"
        )
    body = [
        f'<text class="tick" x="2" y="{_PAD - 6}">{_number(high)}</text>',
        f'<text class="tick" x="2" y="{height - _PAD - 4}">{_number(low)}</text>',
        f'<polyline class="line" points="{" ".join(points)}"/>',
        *dots,
        *_end_labels(series, width=width, height=height),
    ]
    return _frame(title=title, body="".join(body), width=width, height=height)


def _end_labels(series: Sequence[tuple[str, float]], *, width: int, height: int) -> list[str]:
    if not series:
        return [f'<text class="tick" x="{_PAD}" y="{height / 2:.0f}">no data</text>']
    first, last = escape(series[0][0]), escape(series[-1][0])
    return [
        f'<text class="tick" x="{_PAD}" y="{height - 6}">{first}</text>',
        f'<text class="tick end" x="{width - 4}" y="{height - 6}">{last}</text>',
    ]


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
