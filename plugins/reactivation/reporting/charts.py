"""Inline SVG charts for the leadership report, drawn in Python.

No JavaScript, no chart library, no external fonts or images: each chart is one
``<svg>`` element that inherits the page's font, with a ``<title>`` and ``<desc>``
(announced by screen readers through ``role="img"`` and ``aria-labelledby``) and
the numbers behind it as a small table, the chart's text alternative. Colours
are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies) and line series also differ by marker shape and dash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999999")
MARKERS = ("circle", "square", "triangle", "diamond")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
WIDTH = 760
AXIS = "#555555"
GRID = "#e3e3e3"

Number = int | float
Formatter = Callable[[Number], str]


@dataclass(frozen=True)
class Chart:
    """One chart: the SVG, a one-sentence summary, and the data as a table (its text alternative)."""

    chart_id: str
    title: str
    summary: str
    svg: Markup
    table_headers: tuple[str, ...]
    table_rows: tuple[tuple[str, ...], ...]


def fmt_count(value: Number | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def fmt_percent(value: Number | None, digits: int = 1) -> str:
    """A share (0.25) as a percentage ("25.0%")."""
    if value is None:
        return "–"
    return f"{value * 100:.{digits}f}%"


def fmt_points(value: Number | None) -> str:
    """A difference of two shares in percentage points, signed ("+3.1 pp")."""
    if value is None:
        return "–"
    return f"{value * 100:+.1f} pp"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def _num(value: float) -> str:
    """A coordinate, short and stable."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, content: str, *, anchor: str = "start", size: int = 12, weight: str = "normal",
          fill: str = "currentColor", extra: str = "") -> str:  # fmt: skip
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{size}" font-weight="{weight}" '
        f'fill="{fill}"{extra}>{escape(content)}</text>'
    )


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart; whole for counts)."""
    if high <= low:
        high = low + 1
    raw_step = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    if integer:
        step = max(1, math.ceil(step))
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.5:
        ticks.append(round(value, 10))
        if value >= high:
            break
        value += step
    return ticks


def _open_svg(chart_id: str, title: str, summary: str, height: float) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {_num(height)}" '
        f'width="{WIDTH}" height="{_num(height)}" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'id="{chart_id}">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(summary)}</desc>',
    ]


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, *, width: float = 1, dash: str = "") -> str:
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" stroke="{stroke}" '
        f'stroke-width="{_num(width)}"{dash_attr}/>'
    )


def _y_axis_label(label: str, center_y: float) -> str:
    rotate = f' transform="rotate(-90 16 {_num(center_y)})"'
    return _text(16, center_y, label, anchor="middle", weight="bold", extra=rotate)


def _marker(shape: str, x: float, y: float, color: str, size: float = 4) -> str:
    if shape == "square":
        side = _num(size * 2)
        return f'<rect x="{_num(x - size)}" y="{_num(y - size)}" width="{side}" height="{side}" fill="{color}"/>'
    if shape == "triangle":
        s = size + 1
        points = f"{_num(x)},{_num(y - s)} {_num(x - s)},{_num(y + size)} {_num(x + s)},{_num(y + size)}"
        return f'<polygon points="{points}" fill="{color}"/>'
    if shape == "diamond":
        s = size + 1
        points = f"{_num(x)},{_num(y - s)} {_num(x + s)},{_num(y)} {_num(x)},{_num(y + s)} {_num(x - s)},{_num(y)}"
        return f'<polygon points="{points}" fill="{color}"/>'
    return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(size)}" fill="{color}"/>'


def _legend(names: Sequence[str], y: float, *, lines: bool) -> list[str]:
    """A legend row (wrapping) at the top of the plot; returns the SVG parts."""
    parts = ['<g class="legend">']
    x, row_y = 16.0, y
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        label_width = 30 + 7.2 * len(name)
        if x + label_width > WIDTH - 16:
            x, row_y = 16.0, row_y + 18
        if lines:
            dash = DASHES[i % len(DASHES)]
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(
                f'<line x1="{_num(x)}" y1="{_num(row_y - 4)}" x2="{_num(x + 20)}" y2="{_num(row_y - 4)}" '
                f'stroke="{color}" stroke-width="2.5"{dash_attr}/>'
            )
            parts.append(_marker(MARKERS[i % len(MARKERS)], x + 10, row_y - 4, color, 3.5))
        else:
            parts.append(f'<rect x="{_num(x + 4)}" y="{_num(row_y - 11)}" width="12" height="12" fill="{color}"/>')
        parts.append(_text(x + 26, row_y, name))
        x += label_width + 14
    parts.append("</g>")
    return parts


def legend_height(names: Sequence[str]) -> float:
    rows, x = 1, 16.0
    for name in names:
        label_width = 30 + 7.2 * len(name)
        if x + label_width > WIDTH - 16:
            rows, x = rows + 1, 16.0
        x += label_width + 14
    return rows * 18


def bar_chart(
    title: str,
    items: Sequence[tuple[str, Number]],
    *,
    value_label: str,
    category_label: str,
    value_format: Formatter = fmt_count,
    chart_id: str | None = None,
) -> Chart:
    """Horizontal bars, one per category, longest first as given."""
    chart_id = chart_id or _slug(title)
    rows = [(str(label), float(value or 0)) for label, value in items]
    top = max([v for _, v in rows] + [0.0])
    summary = (
        f"{title}. " + "; ".join(f"{label}: {value_format(value)}" for label, value in rows) + "."
        if rows
        else f"{title}: no data."
    )
    left, right, bar_h, gap, top_pad = 230.0, 90.0, 22.0, 10.0, 34.0
    plot_w = WIDTH - left - right
    height = top_pad + len(rows) * (bar_h + gap) + 52
    ticks = nice_ticks(0, top if top > 0 else 1, integer=value_format is fmt_count)
    scale_max = ticks[-1]
    parts = _open_svg(chart_id, title, summary, height)
    parts.append(_text(left - 10, 20, category_label, anchor="end", size=12, weight="bold"))
    axis_y = top_pad + len(rows) * (bar_h + gap)
    for tick in ticks:
        x = left + plot_w * tick / scale_max
        parts.append(_line(x, top_pad - 6, x, axis_y, GRID))
        parts.append(_text(x, axis_y + 16, value_format(tick), anchor="middle", size=11, fill=AXIS))
    for i, (label, value) in enumerate(rows):
        y = top_pad + i * (bar_h + gap)
        w = plot_w * value / scale_max if scale_max else 0
        parts.append(_text(left - 10, y + bar_h * 0.7, label, anchor="end"))
        parts.append(
            f'<rect x="{_num(left)}" y="{_num(y)}" width="{_num(max(w, 1))}" height="{_num(bar_h)}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {escape(value_format(value))}</title></rect>'
        )
        parts.append(_text(left + w + 6, y + bar_h * 0.7, value_format(value), weight="bold"))
    parts.append(_line(left, axis_y, left + plot_w, axis_y, AXIS))
    parts.append(_text(left + plot_w / 2, axis_y + 36, value_label, anchor="middle", size=12, weight="bold"))
    parts.append("</svg>")
    return Chart(
        chart_id,
        title,
        summary,
        Markup("".join(parts)),
        (category_label, value_label),
        tuple((label, value_format(value)) for label, value in rows),
    )


def funnel_chart(
    title: str,
    stages: Sequence[tuple[str, Number | None]],
    *,
    bases: dict[str, str] | None = None,
    highlight: Sequence[str] = (),
    chart_id: str | None = None,
) -> Chart:
    """Centred bars, one per stage, each with its count and, where ``bases`` names one, its share of that stage.

    ``bases`` maps a stage to the stage it is a share of ({"Booked": "Contacted"}): a stage with no
    base (one counted in other units, say) shows no share rather than a misleading one.
    """
    chart_id = chart_id or _slug(title)
    rows = [(label, None if value is None else float(value)) for label, value in stages]
    values = dict(rows)
    top = max([v for _, v in rows if v is not None] + [0.0]) or 1.0
    shares: list[str] = []
    for label, value in rows:
        base = (bases or {}).get(label)
        base_value = values.get(base) if base else None
        shares.append(f"{value / base_value * 100:.0f}% of {base.lower()}" if value is not None and base_value else "")
    summary = (
        f"{title}. "
        + "; ".join(
            f"{label}: {fmt_count(value)}" + (f" ({share})" if share else "")
            for (label, value), share in zip(rows, shares, strict=True)
        )
        + "."
    )
    label_w, value_w, bar_h, gap, top_pad = 150.0, 170.0, 30.0, 8.0, 12.0
    plot_w = WIDTH - label_w - value_w
    height = top_pad + len(rows) * (bar_h + gap) + 10
    parts = _open_svg(chart_id, title, summary, height)
    for i, ((label, value), share) in enumerate(zip(rows, shares, strict=True)):
        y = top_pad + i * (bar_h + gap)
        w = plot_w * (value or 0) / top
        x = label_w + (plot_w - w) / 2
        color = PALETTE[2] if label in highlight else PALETTE[0]
        parts.append(_text(label_w - 10, y + bar_h * 0.65, label, anchor="end", weight="bold"))
        if value is None:
            parts.append(_text(label_w + plot_w / 2, y + bar_h * 0.65, "not available", anchor="middle", fill=AXIS))
        else:
            parts.append(
                f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 2))}" height="{_num(bar_h)}" rx="3" '
                f'fill="{color}"><title>{escape(label)}: {escape(fmt_count(value))}</title></rect>'
            )
        parts.append(_text(label_w + plot_w + 10, y + bar_h * 0.45, fmt_count(value), weight="bold"))
        if share:
            parts.append(_text(label_w + plot_w + 10, y + bar_h * 0.45 + 14, share, size=11, fill=AXIS))
    parts.append("</svg>")
    return Chart(
        chart_id,
        title,
        summary,
        Markup("".join(parts)),
        ("Stage", "Count", "Share"),
        tuple((label, fmt_count(value), share or "–") for (label, value), share in zip(rows, shares, strict=True)),
    )


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, Sequence[Number | None]],
    *,
    x_label: str,
    y_label: str,
    value_format: Formatter = fmt_count,
    y_max: float | None = None,
    chart_id: str | None = None,
) -> Chart:
    """One line per series over shared x categories (weeks, nights); None leaves a gap."""
    chart_id = chart_id or _slug(title)
    names = list(series)
    values = [v for vals in series.values() for v in vals if v is not None]
    high = max([*values, 0.0])
    if y_max is not None:
        high = max(min(y_max, high * 1.1 if high else y_max), high)
    ticks = nice_ticks(0, high if high > 0 else (y_max or 1), integer=value_format is fmt_count)
    scale_max = ticks[-1] or 1
    legend_h = legend_height(names)
    left, right, top_pad = 70.0, 24.0, 18 + legend_h + 12
    plot_h = 230.0
    plot_w = WIDTH - left - right
    height = top_pad + plot_h + 62
    n = len(x_labels)

    def x_at(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n if n else 0)

    def y_at(v: float) -> float:
        return top_pad + plot_h - plot_h * v / scale_max

    latest = []
    for name in names:
        last = next((v for v in reversed(list(series[name])) if v is not None), None)
        latest.append(f"{name}: {value_format(last)}" if last is not None else f"{name}: no value")
    summary = (
        f"{title}, {n} point(s) from {x_labels[0]} to {x_labels[-1]}. Latest values: " + "; ".join(latest) + "."
        if n
        else f"{title}: no data."
    )
    parts = _open_svg(chart_id, title, summary, height)
    parts += _legend(names, 20, lines=True)
    for tick in ticks:
        y = y_at(tick)
        parts.append(_line(left, y, left + plot_w, y, GRID))
        parts.append(_text(left - 8, y + 4, value_format(tick), anchor="end", size=11, fill=AXIS))
    step = max(1, math.ceil(n / 8))
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            parts.append(_text(x_at(i), top_pad + plot_h + 16, label, anchor="middle", size=11, fill=AXIS))
    axis_y = top_pad + plot_h
    parts.append(_line(left, axis_y, left + plot_w, axis_y, AXIS))
    parts.append(_line(left, top_pad, left, axis_y, AXIS))
    parts.append(_text(left + plot_w / 2, axis_y + 40, x_label, anchor="middle", weight="bold"))
    parts.append(_y_axis_label(y_label, top_pad + plot_h / 2))
    for s, name in enumerate(names):
        color, dash, marker = PALETTE[s % len(PALETTE)], DASHES[s % len(DASHES)], MARKERS[s % len(MARKERS)]
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, v in enumerate(series[name]):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{_num(x_at(i))},{_num(y_at(float(v)))}")
        if segment:
            segments.append(segment)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for seg in segments:
            if len(seg) > 1:
                parts.append(
                    f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" stroke-width="2.5"{dash_attr}/>'
                )
        for i, v in enumerate(series[name]):
            if v is not None:
                parts.append(
                    f"<g>{_marker(marker, x_at(i), y_at(float(v)), color)}"
                    f"<title>{escape(name)}, {escape(x_labels[i])}: {escape(value_format(v))}</title></g>"
                )
    parts.append("</svg>")
    table_rows = tuple(
        (label, *(value_format(series[name][i]) if series[name][i] is not None else "–" for name in names))
        for i, label in enumerate(x_labels)
    )
    return Chart(chart_id, title, summary, Markup("".join(parts)), (x_label, *names), table_rows)


def column_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, Sequence[Number | None]],
    *,
    x_label: str,
    y_label: str,
    value_format: Formatter = fmt_count,
    chart_id: str | None = None,
) -> Chart:
    """Grouped vertical bars: one group per x category, one bar per series."""
    chart_id = chart_id or _slug(title)
    names = list(series)
    high = max([float(v) for vals in series.values() for v in vals if v is not None] + [0.0])
    ticks = nice_ticks(0, high if high > 0 else 1, integer=value_format is fmt_count)
    scale_max = ticks[-1] or 1
    legend_h = legend_height(names)
    left, right, top_pad, plot_h = 70.0, 24.0, 18 + legend_h + 12, 220.0
    plot_w = WIDTH - left - right
    height = top_pad + plot_h + 62
    n = len(x_labels)
    group_w = plot_w / n if n else plot_w
    bar_w = max(2.0, min(28.0, group_w * 0.8 / max(len(names), 1)))
    totals = [f"{name}: {value_format(sum(float(v or 0) for v in series[name]))} in all" for name in names]
    summary = (
        f"{title}, {n} period(s) from {x_labels[0]} to {x_labels[-1]}. " + "; ".join(totals) + "."
        if n
        else f"{title}: no data."
    )
    parts = _open_svg(chart_id, title, summary, height)
    parts += _legend(names, 20, lines=False)
    axis_y = top_pad + plot_h
    for tick in ticks:
        y = axis_y - plot_h * tick / scale_max
        parts.append(_line(left, y, left + plot_w, y, GRID))
        parts.append(_text(left - 8, y + 4, value_format(tick), anchor="end", size=11, fill=AXIS))
    step = max(1, math.ceil(n / 8))
    for i, label in enumerate(x_labels):
        gx = left + group_w * i + (group_w - bar_w * len(names)) / 2
        for s, name in enumerate(names):
            v = series[name][i]
            if v is None:
                continue
            h = plot_h * float(v) / scale_max
            parts.append(
                f'<rect x="{_num(gx + s * bar_w)}" y="{_num(axis_y - h)}" width="{_num(bar_w - 1)}" '
                f'height="{_num(max(h, 0.5))}" fill="{PALETTE[s % len(PALETTE)]}">'
                f"<title>{escape(name)}, {escape(label)}: {escape(value_format(v))}</title></rect>"
            )
        if i % step == 0 or i == n - 1:
            parts.append(_text(left + group_w * (i + 0.5), axis_y + 16, label, anchor="middle", size=11, fill=AXIS))
    parts.append(_line(left, axis_y, left + plot_w, axis_y, AXIS))
    parts.append(_text(left + plot_w / 2, axis_y + 40, x_label, anchor="middle", weight="bold"))
    parts.append(_y_axis_label(y_label, top_pad + plot_h / 2))
    parts.append("</svg>")
    table_rows = tuple(
        (label, *(value_format(series[name][i]) if series[name][i] is not None else "–" for name in names))
        for i, label in enumerate(x_labels)
    )
    return Chart(chart_id, title, summary, Markup("".join(parts)), (x_label, *names), table_rows)


@dataclass(frozen=True)
class LiftRow:
    label: str
    lift: float | None
    ci_low: float | None
    ci_high: float | None
    detail: str = ""


def lift_chart(
    title: str,
    rows: Sequence[LiftRow],
    *,
    value_label: str,
    value_format: Formatter = fmt_points,
    chart_id: str | None = None,
) -> Chart:
    """A dot per row at its lift with whiskers to the confidence interval, around a dashed zero line."""
    chart_id = chart_id or _slug(title)
    bounds = [v for r in rows for v in (r.lift, r.ci_low, r.ci_high) if v is not None] + [0.0]
    low, high = min(bounds), max(bounds)
    if low == high:
        low, high = low - 0.05, high + 0.05
    ticks = nice_ticks(low, high)
    lo_t, hi_t = ticks[0], ticks[-1]
    left, right, row_h, top_pad = 230.0, 40.0, 34.0, 20.0
    plot_w = WIDTH - left - right
    height = top_pad + len(rows) * row_h + 56

    def x_at(v: float) -> float:
        return left + plot_w * (v - lo_t) / (hi_t - lo_t)

    described = []
    for r in rows:
        if r.lift is None:
            described.append(f"{r.label}: not enough data")
        else:
            ci = (
                f" (95% interval {value_format(r.ci_low)} to {value_format(r.ci_high)})"
                if r.ci_low is not None and r.ci_high is not None
                else ""
            )
            described.append(f"{r.label}: {value_format(r.lift)}{ci}")
    summary = f"{title}. " + "; ".join(described) + "." if rows else f"{title}: no data."
    parts = _open_svg(chart_id, title, summary, height)
    axis_y = top_pad + len(rows) * row_h
    for tick in ticks:
        x = x_at(tick)
        parts.append(_line(x, top_pad - 8, x, axis_y, GRID))
        parts.append(_text(x, axis_y + 16, value_format(tick), anchor="middle", size=11, fill=AXIS))
    zero = x_at(0.0)
    parts.append(_line(zero, top_pad - 8, zero, axis_y, AXIS, dash="4 3"))
    for i, r in enumerate(rows):
        cy = top_pad + i * row_h + row_h / 2
        parts.append(_text(left - 10, cy + 4, r.label, anchor="end"))
        if r.lift is None:
            parts.append(_text(left + 6, cy + 4, "not enough data yet", fill=AXIS, size=11))
            continue
        if r.ci_low is not None and r.ci_high is not None:
            x1, x2 = x_at(r.ci_low), x_at(r.ci_high)
            parts.append(_line(x1, cy, x2, cy, PALETTE[0], width=2))
            for x in (x1, x2):
                parts.append(_line(x, cy - 7, x, cy + 7, PALETTE[0], width=2))
        parts.append(
            f"<g>{_marker('diamond', x_at(r.lift), cy, PALETTE[5], 5)}<title>{escape(described[i])}</title></g>"
        )
    parts.append(_line(left, axis_y, left + plot_w, axis_y, AXIS))
    parts.append(_text(left + plot_w / 2, axis_y + 38, value_label, anchor="middle", weight="bold"))
    parts.append("</svg>")
    table_rows = tuple(
        (r.label, value_format(r.lift), value_format(r.ci_low), value_format(r.ci_high), r.detail) for r in rows
    )
    return Chart(
        chart_id,
        title,
        summary,
        Markup("".join(parts)),
        ("Rule", value_label, "95% interval low", "95% interval high", "Groups"),
        table_rows,
    )
