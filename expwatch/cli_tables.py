"""How the CLI's read commands look to a person: rich tables on stdout (`--json` is for
scripts). Imported only by the commands that print tables."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 1000
"""Columns when stdout is not a terminal (a pipe, a file) and $COLUMNS is unset: rows stay on
one line for grep and scripts (tables are only as wide as their cells)."""


def console() -> Console:
    """A console on the current stdout: no markup (cells are data: an error text may hold
    brackets), no syntax highlighting; colour only on a terminal (and never with $NO_COLOR)."""
    stream = sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(file=stream, width=width, markup=False, highlight=False, soft_wrap=False)


def show(out: Console, *renderables: Any) -> None:
    """Print each of `renderables` on `out` ("" for an empty line), with trailing spaces
    removed (rich pads every cell to its column)."""
    with out.capture() as captured:
        for renderable in renderables:
            out.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    out.file.write(text + "\n")
    out.file.flush()


def table(*columns: str, title: str | None = None, right: tuple[str, ...] = ()) -> Table:
    """A borderless table with a rule under its header; `right` columns are right-aligned
    (numbers)."""
    t = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left", overflow="fold")
    return t


def ago(when: datetime | None, now: datetime) -> str:
    """`when` as an age: "12 s ago", "5 min ago", "3 h 20 min ago", "2 d 4 h ago"; "-" for
    never, "in 30 s" for the future."""
    if when is None:
        return "-"
    seconds = (now - when).total_seconds()
    text = duration(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def duration(seconds: float) -> str:
    """A duration in its two largest units: "0.4 s", "12 s", "5 min 3 s", "2 d 4 h"."""
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    for i, (unit, size) in enumerate(UNITS):
        if whole >= size or unit == "s":
            text = f"{whole // size} {unit}"
            if unit != "s":
                smaller, smaller_size = UNITS[i + 1]
                if rest := (whole % size) // smaller_size:
                    text += f" {rest} {smaller}"
            return text
    raise AssertionError("unreachable: the last unit is seconds")


UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def when(value: datetime | None) -> str:
    """A timestamp for a table cell, in UTC to the second; "-" for none."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def cell(value: Any) -> str:
    """A value for a table cell: floats to 3 significant digits, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
