"""Server-side SVG charts for the project page: no JavaScript, no CDN, readable offline.

Two kinds: ``line_chart`` (series of points, optional uncertainty band, dashed or solid) and
``stacked_area`` (shares that add up to 1 over x). Every drawn series is a ``<g>`` with
``data-series="<name>"`` and the axes carry their labels as text, so a browser test (or a
person) can check what the chart shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 640, 300
MARGIN = {"left": 58, "right": 150, "top": 16, "bottom": 44}
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
)  # fmt: skip


@dataclass
class Series:
    """One line: ``points`` [(x, y)], an optional ``band`` [(x, low, high)], dashed or not."""

    name: str
    points: list[tuple[float, float]]
    band: list[tuple[float, float, float]] = field(default_factory=list)
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


class _Frame:
    """Maps data coordinates to the SVG's pixels and draws the axes."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        self.y0, self.y1 = y_range
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0
        self.left, self.top = MARGIN["left"], MARGIN["top"]
        self.width = WIDTH - MARGIN["left"] - MARGIN["right"]
        self.height = HEIGHT - MARGIN["top"] - MARGIN["bottom"]

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, value: float) -> float:
        return self.top + (1.0 - (value - self.y0) / (self.y1 - self.y0)) * self.height

    def axes(self, x_label: str, y_label: str, y_format: str = "{:g}") -> list[str]:
        out = []
        bottom, right = self.top + self.height, self.left + self.width
        for tick in nice_ticks(self.y0, self.y1):
            if self.y0 - 1e-9 <= tick <= self.y1 + 1e-9:
                y = self.y(tick)
                out.append(
                    f'<line x1="{self.left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>'
                )
                out.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                           f"{y_format.format(tick)}</text>")  # fmt: skip
        for tick in nice_ticks(self.x0, self.x1, 6):
            if self.x0 - 1e-9 <= tick <= self.x1 + 1e-9:
                x = self.x(tick)
                out.append(
                    f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" class="axis"/>'
                )
                out.append(
                    f'<text x="{x:.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">{tick:g}</text>'
                )
        out.append(
            f'<line x1="{self.left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>'
        )
        out.append(
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{bottom}" class="axis"/>'
        )
        out.append(f'<text x="{self.left + self.width / 2:.1f}" y="{HEIGHT - 8}" class="label" '
                   f'text-anchor="middle" data-axis="x">{escape(x_label)}</text>')  # fmt: skip
        out.append(f'<text x="14" y="{self.top + self.height / 2:.1f}" class="label" text-anchor="middle" '
                   f'data-axis="y" transform="rotate(-90 14 {self.top + self.height / 2:.1f})">'
                   f"{escape(y_label)}</text>")  # fmt: skip
        return out

    def legend(self, names: list[str], dashed: list[bool] | None = None) -> list[str]:
        out = []
        x = self.left + self.width + 14
        for i, name in enumerate(names):
            y = self.top + 10 + 16 * i
            colour = PALETTE[i % len(PALETTE)]
            dash = ' stroke-dasharray="5 3"' if dashed and dashed[i] else ""
            out.append(
                f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{colour}" stroke-width="3"{dash}/>'
            )
            out.append(f'<text x="{x + 24}" y="{y + 4}" class="legend">{escape(name)}</text>')
        return out


def _svg(body: list[str], title: str) -> str:
    style = (
        "<style>.grid{stroke:#e5e5e5}.axis{stroke:#555}.tick{font:11px sans-serif;fill:#444}"
        ".label{font:12px sans-serif;fill:#222}.legend{font:11px sans-serif;fill:#222}</style>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart">{style}<title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def line_chart(
    series: list[Series],
    x_label: str,
    y_label: str,
    title: str,
    y_range: tuple[float, float] | None = None,
    y_format: str = "{:g}",
) -> str:
    """Lines (and bands) for ``series``; an empty chart says so."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return _svg([f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="label" text-anchor="middle">'
                     "no data yet</text>"], title)  # fmt: skip
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points] + [
        v for s in drawn for _, lo, hi in s.band for v in (lo, hi)
    ]
    if y_range is None:
        pad = 0.05 * (max(ys) - min(ys) or 1.0)
        y_range = (min(ys) - pad, max(ys) + pad)
    frame = _Frame((min(xs), max(xs)), y_range)
    body = frame.axes(x_label, y_label, y_format)
    for i, s in enumerate(series):
        if not s.points:
            continue
        colour = PALETTE[i % len(PALETTE)]
        parts = [f'<g data-series="{escape(s.name)}">']
        if s.band:
            upper = " ".join(f"{frame.x(x):.1f},{frame.y(hi):.1f}" for x, _, hi in s.band)
            lower = " ".join(f"{frame.x(x):.1f},{frame.y(lo):.1f}" for x, lo, _ in reversed(s.band))
            parts.append(
                f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15" stroke="none"/>'
            )
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        for x, y in s.points:
            parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{colour}">'
                         f"<title>{escape(s.name)}: {y:.3g} at {x:g}</title></circle>")  # fmt: skip
        parts.append("</g>")
        body += parts
    body += frame.legend([s.name for s in series], [s.dashed for s in series])
    return _svg(body, title)


def stacked_area(
    xs: list[float], layers: dict[str, list[float]], x_label: str, y_label: str, title: str
) -> str:
    """Shares per x (each x's layers add up to 1) stacked from the bottom, one band per layer."""
    if not xs or not layers:
        return line_chart([], x_label, y_label, title)
    frame = _Frame((min(xs), max(xs)), (0.0, 1.0))
    body = frame.axes(x_label, y_label, "{:.0%}")
    floor = [0.0] * len(xs)
    for i, (name, values) in enumerate(layers.items()):
        ceiling = [f + v for f, v in zip(floor, values, strict=True)]
        upper = " ".join(
            f"{frame.x(x):.1f},{frame.y(c):.1f}" for x, c in zip(xs, ceiling, strict=True)
        )
        lower = " ".join(
            f"{frame.x(x):.1f},{frame.y(f):.1f}"
            for x, f in reversed(list(zip(xs, floor, strict=True)))
        )
        colour = PALETTE[i % len(PALETTE)]
        if len(xs) == 1:  # one round: a bar, not an invisible area
            x = frame.x(xs[0])
            body.append(f'<g data-series="{escape(name)}"><rect x="{x - 12:.1f}" y="{frame.y(ceiling[0]):.1f}" '
                        f'width="24" height="{frame.y(floor[0]) - frame.y(ceiling[0]):.1f}" fill="{colour}"/></g>')  # fmt: skip
        else:
            body.append(f'<g data-series="{escape(name)}"><polygon points="{upper} {lower}" fill="{colour}" '
                        f'fill-opacity="0.85" stroke="white" stroke-width="0.5"/></g>')  # fmt: skip
        floor = ceiling
    body += frame.legend(list(layers))
    return _svg(body, title)
