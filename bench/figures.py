"""Summaries of timing samples and the tables every benchmark prints.

A `Table` is what a benchmark returns: `bench/run.py` writes it as JSON and
renders it as markdown; each script run alone prints it as text.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Summary:
    """Milliseconds over `n` samples."""

    median: float
    p90: float
    n: int


def summarize(seconds: Sequence[float]) -> Summary:
    if not seconds:
        raise ValueError("summarize: expected at least one sample, got none")
    ms = sorted(s * 1000 for s in seconds)
    # nearest-rank p90, so 50 samples → the 45th
    rank = max(1, -(-len(ms) * 9 // 10))
    return Summary(median=statistics.median(ms), p90=ms[rank - 1], n=len(ms))


def best_pass(passes: Sequence[Sequence[float]]) -> Summary:
    """The pass with the lowest median: this VM has CPU-steal bursts that push a
    whole block of samples up 2–5×, so the quietest block is the honest figure."""
    return min((summarize(p) for p in passes if p), key=lambda s: s.median)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    notes: tuple[str, ...] = field(default=())
    raw: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def render_text(table: Table) -> str:
    cells = [list(table.columns)] + [[cell(v) for v in row] for row in table.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
    lines = [table.title, ""]
    for i, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [""] + [f"* {n}" for n in table.notes]
    return "\n".join(lines)


def render_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.rows:
        lines.append("| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |")
    if table.notes:
        lines.append("")
        lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines)
