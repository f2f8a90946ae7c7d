"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, no build step.

Each chart is a small figure people would rather look at than read (pipeline by month, product
mix, a trend); the same figures are always in a table beside it, so nothing depends on seeing the
picture. Every bar carries a <title> (a tooltip and what a screen reader says) and, when given, a
link to the registrations or sales behind it. All text is escaped here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_ids = itertools.count(1)  # each chart's <title> id, unique within the page (and the process)
PALETTE = ("#0b5cab", "#9cc3ea", "#b8860b", "#7b8794", "#a0522d", "#2e7d32", "#6a1b9a", "#c62828")


@dataclass
class Bar:
    label: str
    values: tuple[Decimal | int, ...]  # one per series
    href: str = ""


def _money(value) -> str:
    value = Decimal(value)
    if abs(value) >= 1_000_000:
        return f"€{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        thousands = value / 1000
        return f"€{thousands:.0f}k" if thousands == thousands.to_integral_value() else f"€{thousands:.1f}k"
    return f"€{value:,.0f}"


def _plain(value) -> str:
    return f"{Decimal(value):,.0f}"


def _nice_max(value: Decimal) -> Decimal:
    """A round number at or above the largest value, for the axis."""
    if value <= 0:
        return Decimal(1)
    magnitude = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        top = magnitude * Decimal(str(step))
        if top >= value:
            return top
    return magnitude * 10


def bar_chart(
    bars: list[Bar], *, series: tuple[str, ...], title: str, money: bool = True, height: int = 220
) -> SafeString:
    """Vertical bars, one group per label, one bar per series (e.g. weighted and unweighted)."""
    fmt = _money if money else _plain
    width = max(320, 56 * len(bars) + 60)
    left, bottom, top = 56, 36, 14
    plot_h = height - bottom - top
    peak = _nice_max(max((Decimal(v) for b in bars for v in b.values), default=Decimal(0)))
    group_w = (width - left - 8) / max(1, len(bars))
    bar_w = max(6.0, min(28.0, (group_w - 10) / max(1, len(series))))
    chart_id = f"chart-{next(_ids)}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">',
        f'<title id="{chart_id}">{escape(title)}</title>',
    ]
    for i in range(5):  # grid lines and axis labels
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{escape(fmt(value))}</text>')
    for g, bar in enumerate(bars):
        x0 = left + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, value in enumerate(bar.values):
            h = float(Decimal(value) / peak) * plot_h if peak else 0
            h = max(h, 0)
            x, y = x0 + s * bar_w, top + plot_h - h
            label = f"{bar.label}, {series[s]}: {fmt(value)}" if len(series) > 1 else f"{bar.label}: {fmt(value)}"
            rect = (
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(label)}</title></rect>'
            )
            parts.append(f'<a href="{escape(bar.href)}">{rect}</a>' if bar.href else rect)
        parts.append(
            f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{height - bottom + 16}" class="axis" '
            f'text-anchor="middle">{escape(bar.label)}</text>'
        )
    if len(series) > 1:
        x = left
        for s, name in enumerate(series):
            if s:
                x += 14 + int(len(series[s - 1]) * 6.2) + 18  # after the previous entry's text
            parts.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" fill="{PALETTE[s % len(PALETTE)]}"/>')
            parts.append(f'<text x="{x + 14}" y="{height - 3}" class="legend">{escape(name)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every piece of text above is escaped


def share_chart(items: list[tuple[str, Decimal, Decimal, str]], *, title: str) -> SafeString:
    """Horizontal bars of shares (product mix): (label, amount, share %, href)."""
    row_h, label_w, width = 26, 150, 520
    height = max(row_h, row_h * len(items)) + 6
    chart_id = f"chart-{next(_ids)}"
    parts = [
        f'<svg class="chart chart-share" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">',
        f'<title id="{chart_id}">{escape(title)}</title>',
    ]
    bar_space = width - label_w - 110
    for i, (label, amount, share, href) in enumerate(items):
        y = 4 + i * row_h
        w = float(Decimal(share) / 100) * bar_space
        text = f"{label}: {_money(amount)} ({Decimal(share):.1f}%)"
        rect = (
            f'<rect x="{label_w}" y="{y}" width="{max(w, 1):.1f}" height="{row_h - 8}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(text)}</title></rect>'
        )
        parts.append(f'<text x="{label_w - 8}" y="{y + 13}" class="axis" text-anchor="end">{escape(label[:22])}</text>')
        parts.append(f'<a href="{escape(href)}">{rect}</a>' if href else rect)
        figure = f"{Decimal(share):.1f}% · {_money(amount)}"
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 13}" class="axis">{escape(figure)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 — every piece of text above is escaped
