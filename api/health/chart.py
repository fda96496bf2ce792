"""Server-rendered SVG chart of an article's views and helpful ratio over time, by revision.

Plain SVG with presentation attributes only (no script, no inline style), so it renders
without JavaScript, under a strict Content-Security-Policy, inline in a page or as an
image. Every text is XML-escaped; the caller embeds the string as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from xml.sax.saxutils import escape

from kb.health.scores import DayPoint

PALETTE = ("#2f6db3", "#c4591a", "#2e8540", "#8e44ad", "#b8860b", "#008b8b", "#b03060")
LINE = "#1b1b1b"
GRID = "#d0d4d9"
TEXT = "#3b4148"
RATIO_MIN_DAYS = 7


@dataclass(frozen=True)
class RevisionMark:
    """A revision as the chart labels it, and the day it went live."""

    revision_id: int
    label: str
    start: date | None


@dataclass(frozen=True)
class ChartText:
    """The chart's words in the page's language."""

    title: str
    views: str
    helpful: str
    no_data: str
    description: str = ""


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k that is at least `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def bucket_days(span_days: int) -> int:
    """Days per bar: daily up to three months, weekly up to two years, then monthly."""
    if span_days <= 92:
        return 1
    if span_days <= 731:
        return 7
    return 30


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _label(n: float) -> str:
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(int(n))


def health_chart_svg(
    points: Sequence[DayPoint],
    revisions: Sequence[RevisionMark],
    text: ChartText,
    *,
    width: int = 720,
    height: int = 280,
) -> str:
    """Bars of views per day (or week, or month), coloured by revision; the helpful ratio of
    each period with votes (at least a week) as points joined within one revision; a dashed
    line where each revision went live."""
    colour = {m.revision_id: PALETTE[i % len(PALETTE)] for i, m in enumerate(revisions)}
    label = {m.revision_id: m.label for m in revisions}
    left, right, top, bottom = 52, 56, 16, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-labelledby="chart-title chart-desc" '
        f'font-family="sans-serif" font-size="11" class="health-chart">',
        f'<title id="chart-title">{escape(text.title)}</title>',
        f'<desc id="chart-desc">{escape(text.description)}</desc>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if not points:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{TEXT}">'
            f"{escape(text.no_data)}</text></svg>"
        )
        return "".join(out)
    first = min(p.day for p in points)
    last = max(p.day for p in points)
    size = bucket_days((last - first).days + 1)
    n_buckets = (last - first).days // size + 1
    views: list[dict[int, int]] = [{} for _ in range(n_buckets)]
    # The ratio needs more votes than a day brings: at least weekly periods for it.
    ratio_size = max(size, RATIO_MIN_DAYS)
    n_ratio = (last - first).days // ratio_size + 1
    # Per ratio period and revision: helpful, not helpful, first and last day offset seen.
    votes: list[dict[int, tuple[int, int, int, int]]] = [{} for _ in range(n_ratio)]
    for p in points:
        b = (p.day - first).days // size
        views[b][p.revision_id] = views[b].get(p.revision_id, 0) + p.views
        offset = (p.day - first).days
        rb = offset // ratio_size
        yes, no, lo, hi = votes[rb].get(p.revision_id, (0, 0, offset, offset))
        votes[rb][p.revision_id] = (
            yes + p.helpful,
            no + p.not_helpful,
            min(lo, offset),
            max(hi, offset),
        )
    top_views = nice_ceiling(max((sum(v.values()) for v in views), default=0))
    bar_w = plot_w / n_buckets

    def x_of(bucket: float) -> float:
        return left + bucket * bar_w

    def y_views(n: float) -> float:
        return top + plot_h * (1 - n / top_views)

    def y_ratio(r: float) -> float:
        return top + plot_h * (1 - r)

    # Grid and axes: views on the left, helpful ratio on the right.
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        out.append(
            f'<line x1="{left}" y1="{_num(y)}" x2="{left + plot_w}" y2="{_num(y)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end" fill="{TEXT}">'
            f"{_label(top_views * frac)}</text>"
        )
        out.append(
            f'<text x="{left + plot_w + 6}" y="{_num(y + 4)}" fill="{TEXT}">'
            f"{int(frac * 100)}%</text>"
        )
    out.append(
        f'<text x="12" y="{top + plot_h / 2}" fill="{TEXT}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2})">{escape(text.views)}</text>'
    )
    out.append(
        f'<text x="{width - 8}" y="{top + plot_h / 2}" fill="{TEXT}" text-anchor="middle" '
        f'transform="rotate(90 {width - 8} {top + plot_h / 2})">{escape(text.helpful)}</text>'
    )
    # Bars, stacked by revision within a period (a period may straddle a rewrite).
    for b, per_rev in enumerate(views):
        base = 0
        for revision_id, n in sorted(per_rev.items()):
            if n <= 0:
                continue
            y0, y1 = y_views(base + n), y_views(base)
            out.append(
                f'<rect x="{_num(x_of(b) + bar_w * 0.1)}" y="{_num(y0)}" '
                f'width="{_num(max(bar_w * 0.8, 0.5))}" height="{_num(max(y1 - y0, 0.5))}" '
                f'fill="{colour.get(revision_id, PALETTE[-1])}" fill-opacity="0.55">'
                f"<title>{escape(label.get(revision_id, '?'))}: {n}</title></rect>"
            )
            base += n
    # Revision boundaries.
    for m in revisions:
        if m.start is None or not first <= m.start <= last:
            continue
        x = x_of((m.start - first).days / size)
        out.append(
            f'<line x1="{_num(x)}" y1="{top}" x2="{_num(x)}" y2="{top + plot_h}" '
            f'stroke="{colour[m.revision_id]}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{_num(x + 3)}" y="{top + 10}" fill="{colour[m.revision_id]}">'
            f"{escape(m.label)}</text>"
        )
    # Helpful ratio: one point per period and revision with votes; joined within a revision.
    runs: dict[int, list[tuple[float, float, int, int]]] = {}
    for tallies in votes:
        for revision_id, (yes, no, lo, hi) in tallies.items():
            if yes + no == 0:
                continue
            ratio = yes / (yes + no)
            # In the middle of the days this revision has in the period (not across a rewrite).
            x = x_of((lo + hi + 1) / 2 / size)
            runs.setdefault(revision_id, []).append((x, y_ratio(ratio), yes, yes + no))
    for revision_id, pts in sorted(runs.items()):
        if len(pts) > 1:
            path = " ".join(f"{_num(x)},{_num(y)}" for x, y, _, _ in pts)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="1.5"/>'
            )
        for x, y, yes, n in pts:
            out.append(
                f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2.5" fill="{LINE}">'
                f"<title>{escape(label.get(revision_id, '?'))}: {yes}/{n}</title></circle>"
            )
    # Dates along the bottom: first, middle, last.
    for b, anchor in ((0, "start"), (n_buckets // 2, "middle"), (n_buckets - 1, "end")):
        day = first + timedelta(days=b * size)
        x = x_of(b + 0.5) if anchor == "middle" else x_of(b if anchor == "start" else b + 1)
        out.append(
            f'<text x="{_num(x)}" y="{top + plot_h + 16}" text-anchor="{anchor}" '
            f'fill="{TEXT}">{day.isoformat()}</text>'
        )
    # Legend: one swatch per revision, and the ratio line.
    lx, ly = left, height - 16
    for m in revisions:
        out.append(
            f'<rect x="{lx}" y="{ly - 9}" width="12" height="10" '
            f'fill="{colour[m.revision_id]}" fill-opacity="0.55"/>'
        )
        out.append(f'<text x="{lx + 16}" y="{ly}" fill="{TEXT}">{escape(m.label)}</text>')
        lx += 24 + 7 * len(m.label)
    out.append(
        f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 18}" y2="{ly - 4}" stroke="{LINE}" '
        f'stroke-width="1.5"/><circle cx="{lx + 9}" cy="{ly - 4}" r="2.5" fill="{LINE}"/>'
    )
    out.append(f'<text x="{lx + 22}" y="{ly}" fill="{TEXT}">{escape(text.helpful)}</text></svg>')
    return "".join(out)
