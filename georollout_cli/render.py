"""Output for a person at a terminal (rich: coloured tables, a live view while waiting) or for a
log (plain: one event per line, no colour codes, no cursor movement), chosen by whether stdout
is a terminal. Both show the same rows (`views`); errors and failed outcomes go to stderr."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from georollout_cli.durations import format_duration
from georollout_cli.views import (
    BUILD_COLUMNS,
    HISTORY_COLUMNS,
    LIST_COLUMNS,
    REGION_COLUMNS,
    Row,
    build_rows,
    detail_fields,
    history_rows,
    list_rows,
    region_rows,
)
from georollout_cli.waiting import ProgressSink, WaitOutcome, WaitResult

STATE_STYLES = {
    "live": "green",
    "failed": "red",
    "rolled_back": "red",
    "timed_out": "red",
    "superseded": "yellow",
    "ignored": "yellow",
    "held": "yellow",
    "awaiting_approval": "yellow",
    "deploying": "cyan",
    "replicated": "cyan",
}


class Renderer(Protocol):
    # True when `waiting()` keeps the rollout's detail on screen (a live view).
    live: bool

    def rollout_list(self, documents: Sequence[Mapping[str, Any]]) -> None: ...

    def rollout_detail(self, document: Mapping[str, Any]) -> None: ...

    def waiting(self) -> AbstractContextManager[ProgressSink]: ...

    def wait_result(self, result: WaitResult) -> None: ...


def renderer_for(out: TextIO, err: TextIO, *, terminal: bool | None = None) -> Renderer:
    """Rich when `out` is a terminal (or `terminal` says so), plain otherwise."""
    is_terminal = out.isatty() if terminal is None else terminal
    return RichRenderer(out, err) if is_terminal else PlainRenderer(out, err)


def text_table(columns: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=False)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (tuple(columns), *rows)
    ]


def outcome_line(result: WaitResult) -> str:
    if result.outcome is WaitOutcome.LIVE:
        return f"live: {result.document['id'] if result.document else ''}".rstrip()
    if result.outcome is WaitOutcome.ENDED:
        state = result.document["state"] if result.document else "ended"
        return f"{state}: {result.reason}"
    return f"timed out: {result.reason}"


class PlainRenderer:
    """Lines for a CI log; every line is flushed at once, so the log follows along."""

    live = False

    def __init__(
        self, out: TextIO, err: TextIO, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.out, self.err, self._monotonic = out, err, monotonic

    def write_lines(self, lines: Sequence[str], *, stream: TextIO | None = None) -> None:
        target = stream or self.out
        for line in lines:
            target.write(line + "\n")
        target.flush()

    def rollout_list(self, documents: Sequence[Mapping[str, Any]]) -> None:
        if not documents:
            self.write_lines(["no rollouts"])
            return
        self.write_lines(text_table(LIST_COLUMNS, list_rows(documents)))

    def rollout_detail(self, document: Mapping[str, Any]) -> None:
        width = max(len(label) for label, _ in detail_fields(document))
        lines = [f"{label.ljust(width)}  {value}" for label, value in detail_fields(document)]
        lines += ["", *text_table(REGION_COLUMNS, region_rows(document))]
        builds = build_rows(document)
        if builds:
            lines += ["", "builds:", *text_table(BUILD_COLUMNS, builds)]
        actions = history_rows(document)
        if actions:
            lines += ["", "operator actions:", *text_table(HISTORY_COLUMNS, actions)]
        self.write_lines(lines)

    @contextmanager
    def waiting(self) -> Iterator[ProgressSink]:
        yield _PlainProgress(self, self._monotonic)

    def wait_result(self, result: WaitResult) -> None:
        stream = self.out if result.outcome is WaitOutcome.LIVE else self.err
        self.write_lines([outcome_line(result)], stream=stream)


class _PlainProgress:
    """`[+12s] westus: deploying (step creating)`: the time since the wait began, one event."""

    def __init__(self, renderer: PlainRenderer, monotonic: Callable[[], float]) -> None:
        self._renderer, self._monotonic = renderer, monotonic
        self._began = monotonic()

    def _stamp(self) -> str:
        return f"[+{format_duration(self._monotonic() - self._began)}]"

    def changed(self, document: Mapping[str, Any], lines: Sequence[str]) -> None:
        stamp = self._stamp()  # one change, one time: its lines are read together
        self._renderer.write_lines([f"{stamp} {line}" for line in lines])

    def note(self, text: str) -> None:
        self._renderer.write_lines([f"{self._stamp()} {text}"])


def _styled(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, ""))


def _rich_table(
    columns: Sequence[str],
    rows: Sequence[Row],
    *,
    state_column: int | None = None,
    whole: Sequence[str] = (),
    whole_words: Sequence[str] = (),
) -> Table:
    """`whole` names columns never cut (an id is copied from here); `whole_words` columns
    may wrap between words but never cut one (a region's name)."""
    table = Table(header_style="bold", box=None, pad_edge=False)
    for index, column in enumerate(columns):
        # A narrow terminal folds the other columns, never below a readable width.
        widest_word = max((len(word) for row in rows for word in row[index].split()), default=0)
        minimum = max(min(len(column), 10), widest_word if column in whole_words else 0)
        table.add_column(column, no_wrap=column in whole, overflow="fold", min_width=minimum)
    for row in rows:
        table.add_row(*(_styled(c) if i == state_column else Text(c) for i, c in enumerate(row)))
    return table


class RichRenderer:
    """Coloured tables and a live region table for a person at a terminal. Markup is off:
    an Azure error text with brackets is shown as it is."""

    live = True

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.console = Console(file=out, markup=False, highlight=False, emoji=False)
        self.err_console = Console(file=err, markup=False, highlight=False, emoji=False)

    def rollout_list(self, documents: Sequence[Mapping[str, Any]]) -> None:
        if not documents:
            self.console.print("no rollouts")
            return
        state = LIST_COLUMNS.index("STATE")
        table = _rich_table(LIST_COLUMNS, list_rows(documents), state_column=state, whole=("ID",))
        self.console.print(table)

    def detail(self, document: Mapping[str, Any]) -> Group:
        fields = Table.grid(padding=(0, 2))
        fields.add_column(no_wrap=True)
        fields.add_column(overflow="fold")
        for label, value in detail_fields(document):
            fields.add_row(
                Text(label, style="bold"), _styled(value) if label == "state" else Text(value)
            )
        parts: list[Any] = [
            fields,
            Text(""),
            _rich_table(
                REGION_COLUMNS,
                region_rows(document),
                state_column=REGION_COLUMNS.index("STATE"),
                whole_words=("REGION",),
            ),
        ]
        builds = build_rows(document)
        if builds:
            parts += [Text(""), Text("builds", style="bold"), _rich_table(BUILD_COLUMNS, builds)]
        actions = history_rows(document)
        if actions:
            parts += [
                Text(""),
                Text("operator actions", style="bold"),
                _rich_table(HISTORY_COLUMNS, actions),
            ]
        return Group(*parts)

    def rollout_detail(self, document: Mapping[str, Any]) -> None:
        self.console.print(self.detail(document))

    @contextmanager
    def waiting(self) -> Iterator[ProgressSink]:
        with Live(Text("asking georollout…"), console=self.console, refresh_per_second=4) as live:
            yield _RichProgress(self, live)

    def wait_result(self, result: WaitResult) -> None:
        if result.outcome is WaitOutcome.LIVE:
            self.console.print(Text(outcome_line(result), style="bold green"), soft_wrap=True)
        else:
            self.err_console.print(Text(outcome_line(result), style="bold red"), soft_wrap=True)


class _RichProgress:
    """The rollout's detail, redrawn in place; each change is also printed above it."""

    def __init__(self, renderer: RichRenderer, live: Live) -> None:
        self._renderer, self._live = renderer, live

    def changed(self, document: Mapping[str, Any], lines: Sequence[str]) -> None:
        for line in lines:
            self._live.console.print(Text(line, style="dim"), soft_wrap=True)
        self._live.update(self._renderer.detail(document))

    def note(self, text: str) -> None:
        self._live.console.print(Text(text, style="dim"), soft_wrap=True)
