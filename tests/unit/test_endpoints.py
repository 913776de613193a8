"""Callbacks reach each connection through the API it came through, custom domain or not."""

from __future__ import annotations

import pytest

from streamer import endpoints


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("local=http://127.0.0.1:8081/", {"local": "http://127.0.0.1:8081"}),
        (
            "east=http://127.0.0.1:1, west=https://example.test/prod",
            {"east": "http://127.0.0.1:1", "west": "https://example.test/prod"},
        ),
    ],
)
def test_overrides_are_read_per_api(text, expected):
    assert endpoints.parse_overrides(text) == expected


@pytest.mark.parametrize(
    "text", ["http://127.0.0.1:8081", "=http://x", "local=", "local=ftp://x", "a/b=http://x"]
)
def test_malformed_overrides_are_refused(text):
    with pytest.raises(ValueError):
        endpoints.parse_overrides(text)
