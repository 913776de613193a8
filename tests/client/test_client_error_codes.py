"""Both clients know every error code of the protocol reference, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from client import ERROR_TYPES

ROOT = Path(__file__).resolve().parents[2]


def protocol_codes() -> set[str]:
    """The codes of docs/protocol.md's error table (`| code | meaning |`)."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = text.split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {code for cell in first_cells for code in re.findall(r"`([A-Z_]+)`", cell)}


def js_protocol_codes() -> set[str]:
    """The protocol part of streamer.js's `ErrorCodes` (before the client's own)."""
    text = (ROOT / "client" / "js" / "streamer.js").read_text(encoding="utf-8")
    block = text.split("export const ErrorCodes = Object.freeze({", 1)[1]
    protocol_part = block.split("// The client's own:", 1)[0]
    return set(re.findall(r"^\s*([A-Z_]+):", protocol_part, re.MULTILINE))


def ts_protocol_codes() -> set[str]:
    """The `ProtocolErrorCode` union of streamer.d.ts."""
    text = (ROOT / "client" / "js" / "streamer.d.ts").read_text(encoding="utf-8")
    union = text.split("export type ProtocolErrorCode =", 1)[1].split(";", 1)[0]
    return set(re.findall(r'"([A-Z_]+)"', union))


def test_the_reference_lists_the_codes_including_unavailable():
    assert {"UNAVAILABLE", "RATE_LIMITED", "UNAUTHORIZED", "FORBIDDEN"} <= protocol_codes()


def test_the_python_client_has_a_type_for_every_code_of_the_reference():
    assert set(ERROR_TYPES) == protocol_codes()


def test_the_js_client_names_every_code_of_the_reference():
    assert js_protocol_codes() == protocol_codes()
    assert ts_protocol_codes() == protocol_codes()
