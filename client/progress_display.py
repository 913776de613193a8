"""How the command line shows a request's progress."""

from __future__ import annotations

import math
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


class ProgressDisplay:
    """Shows progress on `stream`: one bar redrawn in place when `live`, else plain lines."""

    def __init__(self, stream: TextIO, live: bool) -> None:
        self._stream = stream
        self._live = live
        self._drawn = False

    def show(self, progress: Progress) -> None:
        """Show one update."""
        if self._live:
            # Return to the line start and clear what a longer message left behind.
            self._stream.write(f"\r{bar_line(progress)}\x1b[K")
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
