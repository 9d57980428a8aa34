"""A listing's table laid out for the terminal it prints in: in 80 columns, the columns that fit whole
(in the order of what matters most), a caption naming those left out; ``--wide`` for every column."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from paypost.cli.common import out

Row = dict[str, Any]
Columns = dict[str, Callable[[Row], str]]  # a column's header, and how it shows a row, in reading order
CELL = 3  # what rich adds to a column of this table: a space each side, and the line between columns

WideOption = Annotated[bool, typer.Option("--wide", help="every column, however wide the terminal")]


def fitted_table(columns: Columns, priority: Sequence[str], rows: Sequence[Row], *, width: int,
                 wide: bool = False, title: str | None = None) -> Table:
    """``rows`` within ``width`` columns: the columns of ``priority`` (most wanted first) that fit whole,
    shown in the reading order of ``columns``; a caption names those left out. ``wide``: every column of
    ``priority``, however wide. A value is never cut to "PATIEN…": one longer than its room folds."""
    cells = {name: [show(r) for r in rows] for name, show in columns.items() if name in priority}
    natural = {name: max([len(name), *map(len, values)]) for name, values in cells.items()}
    chosen: list[str] = []
    room = width - 1  # the table's outer edge
    for name in priority:
        need = natural[name] + CELL
        if wide or need <= room:
            chosen.append(name)
            room -= need
    left_out = [name for name in priority if name not in chosen]
    caption = f"not shown: {', '.join(left_out)} (--wide shows every column)" if left_out else None
    shown = [name for name in columns if name in chosen]
    table = Table(*shown, caption=caption, title=title, box=box.SIMPLE_HEAD)
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    for i in range(len(rows)):
        table.add_row(*[escape(cells[name][i]) for name in shown])  # a value is text, never markup
    table.min_width = sum(natural[name] + CELL for name in chosen) + 1 if wide else None
    return table


def print_fitted(columns: Columns, priority: Sequence[str], rows: Sequence[Row], *, wide: bool = False,
                 title: str | None = None, console: Console = out) -> None:
    """``fitted_table`` at the console's width; ``wide`` past the terminal's edge, for a pager."""
    table = fitted_table(columns, priority, rows, width=console.width, wide=wide, title=title)
    terminal = console.width
    console.width = max(terminal, table.min_width or 0)  # rich lays out no wider than its console
    try:
        console.print(table, crop=False, highlight=False)
    finally:
        console.width = terminal
