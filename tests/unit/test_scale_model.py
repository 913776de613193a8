"""The scale model's projection (bench.scale_model) and the ledger's unit estimates
(bench.counting): pure functions over recorded calls."""

from __future__ import annotations

import pytest

from bench import counting, scale_model
from bench.scale_model import REGION, Use
from streamer import schema


def line(op, table, key, units, index=None, index_units=None, index_keys=None):
    return {
        "op": op,
        "table": table,
        "key": key,
        "index": index,
        "units": units,
        "index_units": index_units or {},
        "index_keys": index_keys or {},
        "failed": False,
    }


def test_a_key_is_classed_by_the_attribute_that_holds_it():
    assert scale_model.kind_of("requests", None, "t#u#r-1") == "request"
    assert scale_model.kind_of("requests", "by_due", "us-east-1#3") == "region"
    assert scale_model.kind_of("requests", "by_active_owner", "t#u") == "user"
    assert scale_model.kind_of("connections", None, "abc=") == "connection"
    assert scale_model.kind_of("connections", None, "circuit#echo#1#2") == "action"
    assert scale_model.kind_of("connections", "by_user", "t#u") == "user"


def test_uses_add_up_table_and_index_units_per_request_and_per_key():
    # GIVEN two requests, each put once (1 WRU on the table, 1 on the due index) and
    # claimed once (1 WRU on the table, 2 on the index: its key changed)
    lines = []
    for n, partition in ((1, "r"), (2, "r#1")):
        key = f"t#u#r-{n}"
        lines.append(
            line("PutItem", "requests", key, 1, None, {"by_due": 1}, {"by_due": partition})
        )
        lines.append(line("UpdateItem", "requests", key, 1, None, {"by_due": 2}))

    uses = {(u.table, u.index, u.capacity): u for u in scale_model.uses(lines, requests=2)}

    table = uses[("requests", None, "write")]
    assert table.kind == "request" and table.per_request == 2 and table.most_on_one_key == 2
    due = uses[("requests", "by_due", "write")]
    assert due.kind == REGION and due.per_request == 3


def test_a_regions_key_takes_the_whole_region_on_one_shard_and_its_share_on_many():
    use = Use("requests", "by_due", REGION, "write", per_request=4, most_on_one_key=8)

    one = scale_model.hottest_per_s(use, 10_000, shards=1, instances=0)
    many = scale_model.hottest_per_s(use, 10_000, shards=64, instances=0)

    assert one == 40_000
    # the busiest of 64 shards: above an even 625, well under the 1,000 a key serves
    assert 625 < many < 800


def test_a_requests_key_takes_what_one_request_spends_whatever_the_rate():
    use = Use("requests", None, "request", "write", per_request=3, most_on_one_key=3)

    assert scale_model.hottest_per_s(use, 10_000, shards=1, instances=0) == 3
    assert scale_model.hottest_per_s(use, 10, shards=1, instances=0) == 3


def test_a_users_key_takes_one_connection_at_the_rate_limit():
    use = Use("requests", "by_active_owner", "user", "write", per_request=2, most_on_one_key=2)

    assert scale_model.hottest_per_s(use, 10_000, 64, 0) == 2 * scale_model.CONNECTION_PER_S


def test_an_actions_key_takes_a_write_a_second_per_instance():
    write = Use("connections", None, "action", "write", per_request=0.2, most_on_one_key=5)
    read = Use("connections", None, "action", "read", per_request=0.6, most_on_one_key=5)

    assert scale_model.hottest_per_s(write, 10_000, 64, instances=300) == 300
    assert scale_model.hottest_per_s(read, 10_000, 64, instances=300) == 150
    # Spread over count shards, each instance writes one item; every instance reads them all.
    assert scale_model.hottest_per_s(write, 10_000, 64, instances=3_000, count_shards=4) == 750
    assert scale_model.hottest_per_s(read, 10_000, 64, instances=3_000, count_shards=4) == 1_500


def test_instances_follow_littles_law_under_the_reserved_and_the_account_concurrency():
    assert scale_model.instances({"streamer-router": 0.01}, 10_000) == 100
    assert scale_model.instances({"streamer-processor": 1.0}, 10_000) == 100  # reserved
    assert scale_model.instances({"streamer-router": 1.0}, 10_000) == 1_000  # the quota


def test_shared_keys_add_up_across_workloads_and_private_ones_take_the_busiest():
    due = Use("requests", "by_due", REGION, "write", per_request=1, most_on_one_key=1)
    own = Use("requests", None, "request", "write", per_request=3, most_on_one_key=3)
    other = Use("requests", None, "request", "write", per_request=2, most_on_one_key=5)

    rows = scale_model.project([([due, own], 1_000, 0), ([due, other], 1_000, 0)], shards=1)

    by_place = {(r.table, r.index): r for r in rows}
    assert by_place[("requests", "by_due")].wcu_before == 2_000
    assert by_place[("requests", None)].wcu_before == 5
    assert not by_place[("requests", "by_due")].met and by_place[("requests", None)].met


def test_writes_and_write_units_per_request_by_table_and_index():
    lines = [
        line("PutItem", "requests", "k", 1, None, {"by_due": 1, "by_active_owner": 1}),
        line("UpdateItem", "requests", "k", 1, None, {"by_due": 2}),
        line("UpdateItem", "requests", "k", 2, None, {"by_due": 1, "by_active_owner": 1}),
        line("GetItem", "requests", "k", 0.5),
    ]

    cost = scale_model.per_request(lines, requests=1)

    assert cost["writes"] == 3 and cost["writes_by_table"] == {"requests": 3}
    assert cost["wru"] == 10
    assert cost["wru_by_place"] == {
        "requests": 4,
        "requests.by_active_owner": 2,
        "requests.by_due": 4,
    }


# The ledger's estimates, for an engine that reports no breakdown (moto)


def test_item_size_counts_names_and_values_as_dynamodb_does():
    assert counting.item_size({"ab": {"S": "xyz"}}) == 5
    assert counting.item_size({"n": {"N": "12345"}}) == 1 + 4
    assert counting.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1


def put_params(**attributes):
    return {"TableName": "streamer-requests", "Item": attributes}


REQUEST = {"request_key": {"S": "t#u#r-1"}, "payload": {"S": "x" * 100}}
IN_DUE = {"due_region": {"S": "r"}, "due_at": {"N": "5"}, "active_owner": {"S": "t#u"}}


def test_a_put_writes_the_table_and_every_index_the_item_enters():
    units, indexes = counting.estimated_write_units(
        "PutItem", put_params(**REQUEST, **IN_DUE), {}, schema.REQUESTS
    )

    assert units == 1 and indexes == {"by_due": 1, "by_active_owner": 1}


def test_a_big_item_takes_a_unit_per_started_kilobyte_on_the_table_not_on_a_keys_index():
    big = {**REQUEST, "result": {"S": "x" * 2_500}, **IN_DUE}

    units, indexes = counting.estimated_write_units(
        "PutItem", put_params(**big), {}, schema.REQUESTS
    )

    assert units == 3 and indexes == {"by_due": 1, "by_active_owner": 1}


def test_an_index_projecting_everything_takes_the_whole_items_units():
    everything = schema.TableSchema(
        "requests", "request_key", indexes=(schema.Index("all", "due_region", "due_at"),)
    )
    big = {**REQUEST, "result": {"S": "x" * 2_500}, **IN_DUE}

    _, indexes = counting.estimated_write_units("PutItem", put_params(**big), {}, everything)

    assert indexes == {"all": 3}


def update(expression: str, names: dict[str, str], after: dict) -> tuple[dict, dict]:
    params = {
        "TableName": "streamer-requests",
        "Key": {"request_key": REQUEST["request_key"]},
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
    }
    return params, {"Attributes": after}


@pytest.mark.parametrize(
    ("expression", "names", "after", "was_in", "expected"),
    [
        # a claim of a keyed request moves due_at: the due entry is deleted and put again;
        # the cap's index, which projects cap_due_at and not due_at, is left alone
        ("SET #0 = :0, #1 = :1", {"#0": "status", "#1": "due_at"}, IN_DUE, None, {"by_due": 2}),
        # a claim of a request the cap's index alone watches, whose lease ends first:
        # its due time moves there (an update of the projected cap_due_at)
        (
            "SET #0 = :0, #1 = :1, #2 = :2",
            {"#0": "status", "#1": "due_at", "#2": "cap_due_at"},
            {"due_at": {"N": "4"}, "cap_due_at": {"N": "4"}, "active_owner": {"S": "t#u"}},
            frozenset({"by_active_owner"}),
            {"by_active_owner": 1},
        ),
        # a claim of a request the cap's index alone watches, due at its pickup time still:
        # neither index is written
        (
            "SET #0 = :0, #1 = :1",
            {"#0": "status", "#1": "lease_expires_at"},
            {
                "due_at": {"N": "5"},
                "cap_due_at": {"N": "5"},
                "active_owner": {"S": "t#u"},
                "origin_region": {"S": "r"},
            },
            frozenset({"by_active_owner"}),
            {},
        ),
        # a finish removes the due keys and the owner: one delete from each
        (
            "SET #0 = :0 REMOVE #1, #2, #3",
            {"#0": "status", "#1": "due_region", "#2": "due_at", "#3": "active_owner"},
            {},
            frozenset({"by_due", "by_active_owner"}),
            {"by_due": 1, "by_active_owner": 1},
        ),
        # removing keys an item never had writes no index
        ("REMOVE #1", {"#1": "due_region"}, {}, frozenset(), {}),
        # a progress persist changes no key and nothing the indexes project
        ("SET #0 = :0", {"#0": "progress"}, IN_DUE, None, {}),
    ],
    ids=[
        "claim",
        "claim watched by the cap, lease first",
        "claim watched by the cap",
        "finish",
        "never in",
        "persist",
    ],
)
def test_an_update_writes_the_indexes_whose_key_or_projection_it_changes(
    expression, names, after, was_in, expected
):
    params, parsed = update(expression, names, {**REQUEST, **after})

    _, indexes = counting.estimated_write_units(
        "UpdateItem", params, parsed, schema.REQUESTS, was_in
    )

    assert indexes == expected


def test_a_ledger_line_names_the_key_the_index_and_the_units():
    params = {
        "TableName": "streamer-requests",
        "IndexName": "by_due",
        "KeyConditionExpression": "#p = :p AND #d <= :n",
        "ExpressionAttributeNames": {"#p": "due_region", "#d": "due_at"},
        "ExpressionAttributeValues": {":p": {"S": "us-east-1#3"}, ":n": {"N": "9"}},
    }
    parsed = {"ConsumedCapacity": {"TableName": "streamer-requests", "CapacityUnits": 0.5}}

    [entry] = counting.ledger_entries("Query", params, parsed)

    assert entry["table"] == "requests" and entry["index"] == "by_due"
    assert entry["key"] == "us-east-1#3" and entry["units"] == 0.5


def test_a_scan_is_kept_out_of_the_per_key_projection():
    # The sweeper's scan of the cap's index reads every partition, not one user's key.
    scan = line("Scan", "requests", None, 40, index="by_active_owner")

    assert scale_model.uses([scan], requests=1) == []


def test_the_cap_index_entry_holds_what_the_index_holds_and_nothing_else():
    index = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_ACTIVE_OWNER)
    entry = scale_model.cap_index_entry()

    assert set(entry) == {"request_key", index.hash_key, *index.included}


def test_the_cap_index_scan_costs_half_a_read_unit_per_4_kb_of_entries_each_minute():
    entry = counting.item_size(scale_model.cap_index_entry())

    one = scale_model.cap_index_scan(100, 60)
    two_regions = scale_model.cap_index_scan(100, 60, regions=2)

    assert one.entries == 6_000 and one.entry_bytes == entry
    assert one.rru_per_scan == pytest.approx(6_000 * entry / 4096 * 0.5)
    assert one.rru_per_s == pytest.approx(one.rru_per_scan / 60)
    assert one.pages == pytest.approx(6_000 * entry / (1 << 20))
    # each replica holds every region's entries, and each region's sweeper reads them all
    assert two_regions.rru_per_scan == pytest.approx(2 * one.rru_per_scan)
    # the saving is the due index's entry: 2 WRU a request, a day
    assert one.saved_usd_per_day == pytest.approx(100 * 2 * 86_400 * 0.625e-6)
    assert one.usd_per_day == pytest.approx(one.rru_per_s * 86_400 * 0.125e-6)
