"""The PynamoDB models and the Pulumi tables are built from the same key schema."""

from __future__ import annotations

import pytest

from streamer import schema
from streamer.models import Connection, RequestItem, Subscription

PAIRS = [
    (Connection, schema.CONNECTIONS),
    (RequestItem, schema.REQUESTS),
    (Subscription, schema.SUBSCRIPTIONS),
]


def key_names(model) -> tuple[str | None, str | None]:
    attributes = model.get_attributes().values()
    hash_key = next(a.attr_name for a in attributes if a.is_hash_key)
    range_key = next((a.attr_name for a in attributes if a.is_range_key), None)
    return hash_key, range_key


@pytest.mark.parametrize("model, table", PAIRS)
def test_model_keys_match_the_shared_schema(model, table):
    assert key_names(model) == (table.hash_key, table.range_key)


@pytest.mark.parametrize("model, table", PAIRS)
def test_model_indexes_match_the_shared_schema(model, table):
    indexes = {}
    for index in model._indexes.values():
        attributes = index.Meta.attributes.values()
        hash_key = next(a.attr_name for a in attributes if a.is_hash_key)
        range_key = next((a.attr_name for a in attributes if a.is_range_key), None)
        indexes[index.Meta.index_name] = (hash_key, range_key)
        assert table.attribute_type(hash_key) == index.Meta.attributes[hash_key].attr_type
    assert indexes == {i.name: (i.hash_key, i.range_key) for i in table.indexes}


def test_the_ttl_attribute_exists_on_every_model():
    for model, table in PAIRS:
        assert table.ttl_attribute in model.get_attributes()


@pytest.mark.parametrize("model, table", PAIRS)
def test_model_index_projections_match_the_shared_schema(model, table):
    projections = {
        index.Meta.index_name: (
            index.Meta.projection.projection_type,
            tuple(getattr(index.Meta.projection, "non_key_attributes", None) or ()),
        )
        for index in model._indexes.values()
    }
    assert projections == {i.name: (i.projection, i.included) for i in table.indexes}
