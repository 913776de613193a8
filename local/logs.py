"""How every process of the local stack logs: one line per record on stderr."""

from __future__ import annotations

import logging
import sys

#: Per-request chatter of the libraries the stack is made of, shown only at DEBUG.
NOISY = ("botocore", "websockets", "pynamodb", "werkzeug")


def configure(level: str, label: str | None = None) -> None:
    """Log at `level` to stderr; `label` (a region) marks each line of this process."""
    where = f" [{label}]" if label else ""
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if logging.getLogger().level > logging.DEBUG:
        for noisy in NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)
