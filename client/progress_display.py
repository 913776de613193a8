"""How the command line shows a request's progress."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from typing import TextIO

from client.messages import Progress


def percent_text(progress: Progress) -> str:
    """The percentage rounded down ("99%" until it really is 100), clamped to 0-100."""
    return f"{math.floor(min(100.0, max(0.0, progress.percentage)))}%"


def plain_line(progress: Progress) -> str:
    """One line per update for logs and pipes, e.g. `42% page 2 of 5`."""
    return f"{percent_text(progress)} {progress.message}".rstrip()


def bar_line(progress: Progress, width: int = 30) -> str:
    """A bar for a terminal, e.g. `[############------------------]  42% page 2 of 5`."""
    filled = round(width * min(100.0, max(0.0, progress.percentage)) / 100)
    bar = "#" * filled + "-" * (width - filled)
    return f"[{bar}] {percent_text(progress):>4} {progress.message}".rstrip()


# Below this many columns the bar is left out: the percentage and message matter more.
MIN_BAR_COLUMNS = 24


def fitted_bar_line(progress: Progress, columns: int) -> str:
    """`bar_line` fitting a terminal `columns` wide (one column spare, so it never wraps).

    The bar takes a third of the width (10 to 50 characters); the message is
    cut with an ellipsis when the rest does not hold it.
    """
    room = max(1, columns - 1)
    if room < MIN_BAR_COLUMNS:
        return _cut(plain_line(progress), room)
    width = min(50, max(10, room // 3))
    line = bar_line(progress, width)
    return _cut(line, room)


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(0, room - 1)] + "\u2026"


def terminal_columns() -> int:
    """The terminal's width now (80 when it cannot be told)."""
    return shutil.get_terminal_size(fallback=(80, 24)).columns


class ProgressDisplay:
    """Shows progress on `stream`: one bar redrawn in place when `live`, else plain lines.

    The live bar fits the terminal's width as it is at each update
    (`columns`, the terminal's by default), so a resize never makes it wrap.
    """

    def __init__(
        self, stream: TextIO, live: bool, columns: Callable[[], int] = terminal_columns
    ) -> None:
        self._stream = stream
        self._live = live
        self._columns = columns
        self._drawn = False

    def show(self, progress: Progress) -> None:
        """Show one update."""
        if self._live:
            # Return to the line start and clear what a longer message left behind.
            line = fitted_bar_line(progress, self._columns())
            self._stream.write(f"\r{line}\x1b[K")
            self._drawn = True
        else:
            self._stream.write(plain_line(progress) + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the bar's line so that what follows starts on a fresh one."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
