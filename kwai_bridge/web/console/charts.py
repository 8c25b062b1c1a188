"""Charts drawn on the server as SVG (no script, no library): events per day by status,
stacked, and the share of purchases with a click id per day."""
from __future__ import annotations

from datetime import date
from html import escape
from typing import Sequence

from markupsafe import Markup

#: Status colours, also the legend's order (bottom of a bar first).
COLOURS = {"sent": "#2e7d32", "pending": "#1565c0", "sending": "#64b5f6", "unattributed": "#9e9e9e",
           "skipped": "#d7ccc8", "held": "#ef6c00", "dead": "#c62828"}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 40, 24, 10


def _frame(title: str, body: list[str], top_label: str) -> Markup:
    plot_h = HEIGHT - BOTTOM - TOP
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}" stroke="#888"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="10">{escape(top_label)}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10">0</text>',
             *body, "</svg>"]
    return Markup("".join(parts))


def _day_labels(days: Sequence[date], bar: float) -> list[str]:
    out = []
    for i, day in enumerate(days):
        last = i == len(days) - 1
        if (i % 7 == 0 and i < len(days) - 4) or last:
            # The last day's label ends at the right edge, where a centred one was cut off.
            x, anchor = (LEFT + (i + 1) * bar, "end") if last else (LEFT + i * bar + bar / 2, "middle")
            out.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" font-size="10">'
                       f'{day.strftime("%d %b")}</text>')
    return out


def events_by_status(series: Sequence[dict]) -> Markup:
    """Stacked bars: one per day, a segment per status."""
    days = [row["day"] for row in series]
    most = max((sum(row["statuses"].values()) for row in series), default=0) or 1
    plot_h = HEIGHT - BOTTOM - TOP
    bar = (WIDTH - LEFT) / max(len(series), 1)
    body = []
    for i, row in enumerate(series):
        y = TOP + plot_h
        for status, colour in COLOURS.items():
            n = row["statuses"].get(status, 0)
            if not n:
                continue
            h = plot_h * n / most
            y -= h
            body.append(f'<rect x="{LEFT + i * bar + 1:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                        f'height="{h:.1f}" fill="{colour}"><title>{row["day"]}: {n} {status}</title></rect>')
    return _frame("Events per day by status, last 30 days", body + _day_labels(days, bar), str(most))


def attribution_share(series: Sequence[dict]) -> Markup:
    """Bars of the share of purchases with a click id, per day (none where no purchase)."""
    days = [row["day"] for row in series]
    plot_h = HEIGHT - BOTTOM - TOP
    bar = (WIDTH - LEFT) / max(len(series), 1)
    body = []
    for i, row in enumerate(series):
        if not row["purchases"]:
            continue
        share = row["attributed"] / row["purchases"]
        h = plot_h * share
        body.append(f'<rect x="{LEFT + i * bar + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(bar - 2, 1):.1f}" '
                    f'height="{h:.1f}" fill="#6a1b9a"><title>{row["day"]}: {share:.0%} of {row["purchases"]} '
                    f'purchases</title></rect>')
    return _frame("Share of purchases with a click id, last 30 days", body + _day_labels(days, bar), "100%")


def legend() -> list[tuple[str, str]]:
    return list(COLOURS.items())


__all__ = ["COLOURS", "attribution_share", "events_by_status", "legend"]
