"""The processor's pure decisions: which region a subscriber's API signs for."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "endpoint, region",
    [
        ("https://abcdef1234.execute-api.eu-west-1.amazonaws.com/prod", "eu-west-1"),
        ("https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod", "us-east-1"),
        ("https://ws.example.com/prod", None),
        ("http://127.0.0.1:8081", None),
    ],
)
def test_posts_are_signed_for_the_region_of_the_subscribers_api(endpoint, region):
    from streamer.delivery import endpoint_region

    assert endpoint_region(endpoint) == region
