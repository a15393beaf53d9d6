"""Running a command in a real pseudo-terminal and reading the screen a person would see.

The command gets a pty of a fixed size as stdin, stdout and stderr (so it believes a person
is watching: colours, a live view redrawn in place); every byte it writes is kept and fed
to pyte, a VT100 terminal emulator, whose screen is what the person saw at the end. The
screen can be saved as an SVG picture (through rich's exporter): a screenshot the test
produced, not one drawn by hand.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyte
from rich.console import Console
from rich.style import Style
from rich.text import Text

# Any escape sequence (CSI, OSC, or a lone ESC + one character) and bare carriage returns.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.|\r")
# pyte's names of the 16 colours, as rich spells them.
_COLOURS = {"brown": "yellow", "default": None}


@dataclass(frozen=True)
class TerminalRun:
    """What a command did in the terminal: its exit status, its bytes, the final screen."""

    code: int
    raw: str
    screen: pyte.Screen

    @property
    def text(self) -> str:
        """Everything it wrote, escape sequences removed (also what scrolled off)."""
        return _ESCAPES.sub("", self.raw)

    @property
    def lines(self) -> list[str]:
        """The final screen, line by line, trailing blanks and empty lines at the end cut."""
        shown = [line.rstrip() for line in self.screen.display]
        while shown and not shown[-1]:
            shown.pop()
        return shown

    def save_svg(self, path: Path, *, title: str) -> None:
        """The final screen as an SVG picture, colours and bold as the terminal showed them."""
        console = Console(
            record=True,
            width=self.screen.columns,
            file=io.StringIO(),
            force_terminal=True,
            color_system="truecolor",
        )
        for y in range(len(self.lines)):
            row = self.screen.buffer[y]
            line = Text()
            for x in range(self.screen.columns):
                cell = row[x]
                line.append(cell.data, Style(color=_colour(cell.fg), bold=cell.bold))
            line.rstrip()
            console.print(line, soft_wrap=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(console.export_svg(title=title), encoding="utf-8")


def _colour(name: str) -> str | None:
    if name in _COLOURS:
        return _COLOURS[name]
    if re.fullmatch(r"[0-9a-fA-F]{6}", name):
        return f"#{name}"
    if name.startswith("bright"):
        base = name[len("bright") :]
        return "bright_" + ("yellow" if base == "brown" else base)
    return name


def run_in_terminal(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    columns: int = 150,
    rows: int = 40,
    timeout: float = 180.0,
) -> TerminalRun:
    """Run `argv` in a `columns` x `rows` pseudo-terminal until it exits (killed by pid and
    failed after `timeout` seconds)."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(
        list(argv),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**env, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                process.wait()
                shown = _ESCAPES.sub("", b"".join(chunks).decode("utf-8", "replace"))
                raise AssertionError(f"{argv[0]} still ran after {timeout:g}s; it wrote:\n{shown}")
            ready, _, _ = select.select([controller], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command and everything it started closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    raw = b"".join(chunks).decode("utf-8", "replace")
    screen = pyte.Screen(columns, rows)
    pyte.Stream(screen).feed(raw)
    return TerminalRun(code, raw, screen)
