"""Inline SVG plots for the HTML report: pure functions from numbers to markup.

Hand-written rather than matplotlib because the report must be one self-contained file that a
browser renders without scripts or fonts from outside, and three chart kinds do not justify a
plotting stack. Colours are CSS classes, so the report's stylesheet decides them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

from awqguard.report.format import bound, interval, number, tick

WIDTH, HEIGHT = 560, 220
MARGIN = {"left": 48, "right": 12, "top": 12, "bottom": 34}


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]
    css: str                     # class on the path: ref, cand, kl, ...


@dataclass(frozen=True)
class Frame:
    """Maps data coordinates to pixels inside the plot area."""

    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return MARGIN["left"] + (v - self.x0) / span * (WIDTH - MARGIN["left"] - MARGIN["right"])

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return HEIGHT - MARGIN["bottom"] - (v - self.y0) / span * (HEIGHT - MARGIN["top"] - MARGIN["bottom"])


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at or below `low` to at or above `high`."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count - 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _axes(frame: Frame, x_label: str, y_label: str, x_ticks: Sequence[float], y_ticks: Sequence[float]) -> list[str]:
    bottom, left = HEIGHT - MARGIN["bottom"], MARGIN["left"]
    out = [f'<line class="axis" x1="{left}" y1="{bottom}" x2="{WIDTH - MARGIN["right"]}" y2="{bottom}"/>',
           f'<line class="axis" x1="{left}" y1="{MARGIN["top"]}" x2="{left}" y2="{bottom}"/>']
    for t in y_ticks:
        y = frame.y(t)
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{WIDTH - MARGIN["right"]}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{tick(t)}</text>')
    for t in x_ticks:
        x = frame.x(t)
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 13}" text-anchor="middle">{tick(t)}</text>')
    out.append(f'<text class="label" x="{(left + WIDTH - MARGIN["right"]) / 2:.0f}" y="{HEIGHT - 4}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text class="label" x="10" y="{(MARGIN["top"] + bottom) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 10 {(MARGIN["top"] + bottom) / 2:.0f})">{escape(y_label)}</text>')
    return out


def _svg(title: str, body: list[str], legend: Sequence[tuple[str, str]] = ()) -> str:
    keys = []
    for i, (label, css) in enumerate(legend):
        x = MARGIN["left"] + 8 + i * 150
        keys.append(f'<rect class="{css} key" x="{x}" y="{MARGIN["top"] + 2}" width="14" height="4"/>'
                    f'<text class="legend" x="{x + 18}" y="{MARGIN["top"] + 8}">{escape(label)}</text>')
    return (f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}{"".join(keys)}</svg>')


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str,
               markers: Sequence[tuple[float, str, str]] = ()) -> str:
    """Lines over positions 0..n-1; `markers` are vertical lines (x, label, css) such as entropy onsets."""
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not values:
        return empty_chart(title, "no data")
    n = max(len(s.values) for s in series)
    y_ticks, x_ticks = nice_ticks(min(0.0, min(values)), max(values)), nice_ticks(0, max(1, n - 1))
    frame = Frame(0, x_ticks[-1], y_ticks[0], y_ticks[-1])
    body = _axes(frame, x_label, y_label, x_ticks, y_ticks)
    for s in series:
        points = " ".join(f"{frame.x(i):.1f},{frame.y(v):.1f}" for i, v in enumerate(s.values)
                          if v is not None and math.isfinite(v))
        body.append(f'<polyline class="line {s.css}" points="{points}"><title>{escape(s.label)}</title></polyline>')
    for x, label, css in markers:
        px = frame.x(x)
        body.append(f'<line class="marker {css}" x1="{px:.1f}" y1="{MARGIN["top"]}" x2="{px:.1f}" '
                    f'y2="{HEIGHT - MARGIN["bottom"]}"/><text class="marker-label {css}" x="{px + 3:.1f}" '
                    f'y="{MARGIN["top"] + 22}">{escape(label)}</text>')
    return _svg(title, body, [(s.label, s.css) for s in series])


def interval_chart(title: str, labels: Sequence[str], values: Sequence[float],
                   intervals: Sequence[tuple[float, float] | None], y_label: str,
                   threshold: float | None = None) -> str:
    """One point per item with its interval as a vertical bar; an optional horizontal threshold line."""
    if not values:
        return empty_chart(title, "no items")
    lows = [lo for iv in intervals if iv for lo in iv] + list(values) + ([threshold] if threshold is not None else [])
    y_ticks = nice_ticks(min(0.0, min(lows)), max(lows))
    frame = Frame(-0.5, len(values) - 0.5, y_ticks[0], y_ticks[-1])
    step = max(1, math.ceil(len(values) / 12))
    body = _axes(frame, "items, most drift first", y_label, [], y_ticks)
    for i, (label, v, iv) in enumerate(zip(labels, values, intervals)):
        x = frame.x(i)
        tip = f"{label}: {number(v)}" + (f" {interval(iv)}" if iv else "")
        if iv:
            body.append(f'<line class="interval" x1="{x:.1f}" y1="{frame.y(iv[0]):.1f}" x2="{x:.1f}" '
                        f'y2="{frame.y(iv[1]):.1f}"/>')
        over = threshold is not None and v > threshold
        body.append(f'<circle class="point{" over" if over else ""}" cx="{x:.1f}" cy="{frame.y(v):.1f}" r="3">'
                    f'<title>{escape(tip)}</title></circle>')
        if i % step == 0:
            body.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - MARGIN["bottom"] + 13}" '
                        f'text-anchor="middle">{escape(label)}</text>')
    if threshold is not None:
        y = frame.y(threshold)
        body.append(f'<line class="marker threshold" x1="{MARGIN["left"]}" y1="{y:.1f}" x2="{WIDTH - MARGIN["right"]}" '
                    f'y2="{y:.1f}"/><text class="marker-label threshold" x="{WIDTH - MARGIN["right"] - 4}" '
                    f'y="{y - 4:.1f}" text-anchor="end">threshold {bound(threshold)}</text>')
    return _svg(title, body)


def histogram(title: str, groups: Sequence[Series], bins: int, low: float, high: float, x_label: str) -> str:
    """Side-by-side bar histograms of several value groups over the same bins of [low, high]."""
    if not any(len(g.values) for g in groups):
        return empty_chart(title, "no data")
    width = (high - low) / bins
    counts = []
    for g in groups:
        c = [0] * bins
        for v in g.values:
            c[min(bins - 1, max(0, int((v - low) / width)))] += 1
        counts.append(c)
    y_ticks = nice_ticks(0, max(max(c) for c in counts), 4)
    frame = Frame(low, high, 0, y_ticks[-1])
    body = _axes(frame, x_label, "items", [t for t in nice_ticks(low, high, 6) if low <= t <= high], y_ticks)
    bar = (frame.x(low + width) - frame.x(low)) / (len(groups) + 0.5)
    for gi, (g, c) in enumerate(zip(groups, counts)):
        for b, count in enumerate(c):
            if count == 0:
                continue
            x = frame.x(low + b * width) + gi * bar + bar * 0.25
            top = frame.y(count)
            body.append(f'<rect class="bar {g.css}" x="{x:.1f}" y="{top:.1f}" width="{bar:.1f}" '
                        f'height="{frame.y(0) - top:.1f}"><title>{escape(g.label)}: {count} items in '
                        f'[{low + b * width:.2f}, {low + (b + 1) * width:.2f})</title></rect>')
    return _svg(title, body, [(g.label, g.css) for g in groups])


def empty_chart(title: str, reason: str) -> str:
    return _svg(title, [f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
                        f'{escape(title)}: {escape(reason)}</text>'])
