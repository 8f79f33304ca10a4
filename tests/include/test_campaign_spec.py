"""The trigger conf contract: defaults, every validation error, and the audience description."""

from __future__ import annotations

from typing import Any

import pytest

from passpush.campaign_spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FREQUENCY_CAP_HOURS,
    MAX_BATCH_SIZE,
    MAX_RATE_LIMIT,
    CampaignSpec,
    parse_conf,
)
from passpush.errors import CampaignConfigError, MessageError, PassPushError
from passpush.rendering import DEFAULT_MAX_LENGTH

PROGRAM = "7b0c6a3e-5d0f-4f5e-9a37-0d6f1f2b9c11"


def conf(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"program_id": PROGRAM, "name": "Double points Tuesday",
                            "message": "Hi {first_name|there}, {points} points waiting!"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def test_minimal_conf_takes_the_defaults() -> None:
    spec = parse_conf(conf())
    assert spec == CampaignSpec(program_id=PROGRAM, name="Double points Tuesday",
                                message="Hi {first_name|there}, {points} points waiting!")
    assert spec.audience == "all_active"
    assert spec.segment is None and spec.segment_params == {} and spec.sql is None and spec.csv_path is None
    assert spec.dry_run is False
    assert spec.confirm_recipients is None and spec.max_recipients is None
    assert spec.rate_limit_per_second is None
    assert spec.batch_size == DEFAULT_BATCH_SIZE
    assert spec.max_message_length == DEFAULT_MAX_LENGTH
    assert spec.frequency_cap_hours == DEFAULT_FREQUENCY_CAP_HOURS
    assert spec.describe_audience() == "All Active Members"


def test_empty_strings_and_nulls_mean_the_default() -> None:
    spec = parse_conf(conf(audience="", batch_size="", rate_limit_per_second=None, confirm_recipients="",
                           frequency_cap_hours=None, max_message_length=None))
    assert (spec.audience, spec.batch_size, spec.rate_limit_per_second, spec.confirm_recipients) == (
        "all_active", DEFAULT_BATCH_SIZE, None, None)
    assert spec.frequency_cap_hours == DEFAULT_FREQUENCY_CAP_HOURS


def test_values_are_normalised() -> None:
    spec = parse_conf(conf(program_id=PROGRAM.upper(), name="  Spaced  ", dry_run="TRUE", batch_size="250",
                           rate_limit_per_second="12.5", confirm_recipients=1200.0, frequency_cap_hours=0,
                           max_recipients="5000", max_message_length="300"))
    assert spec.program_id == PROGRAM
    assert spec.name == "Spaced"
    assert spec.dry_run is True
    assert spec.batch_size == 250
    assert spec.rate_limit_per_second == 12.5
    assert spec.confirm_recipients == 1200
    assert spec.max_recipients == 5000
    assert spec.frequency_cap_hours == 0.0
    assert spec.max_message_length == 300


@pytest.mark.parametrize("name", [_DROP, None, "", "   "])
def test_name_is_required(name: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^name is empty"):
        parse_conf(conf(name=name))


@pytest.mark.parametrize("name", [["Weekend"], {"en": "Weekend"}, True, 12])
def test_name_must_be_text(name: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^name must be text, got"):
        parse_conf(conf(name=name))


@pytest.mark.parametrize("program_id", [_DROP, None, "", "program-1", 42, "7b0c6a3e-5d0f-4f5e-9a37"])
def test_program_id_must_be_a_uuid(program_id: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^program_id must be the UUID .*got"):
        parse_conf(conf(program_id=program_id))


@pytest.mark.parametrize("message", [_DROP, None, "", "  ", 12])
def test_message_is_required(message: object) -> None:
    with pytest.raises(MessageError, match="message is empty"):
        parse_conf(conf(message=message))


def test_message_with_unknown_placeholder_is_refused() -> None:
    with pytest.raises(MessageError, match=r"unknown placeholder \{points_balance\}"):
        parse_conf(conf(message="{points_balance} points"))


def test_too_long_message_names_the_limit_and_the_key() -> None:
    with pytest.raises(MessageError, match=r"161 characters .*limit of 160.*max_message_length"):
        parse_conf(conf(message="x" * 161))
    with pytest.raises(MessageError, match="limit of 20"):
        parse_conf(conf(message="x" * 21, max_message_length=20))
    assert parse_conf(conf(message="x" * 161, max_message_length=161)).max_message_length == 161


@pytest.mark.parametrize("value", [0, -1, 2001, "long", 1.5])
def test_max_message_length_is_bounded(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^max_message_length must be"):
        parse_conf(conf(max_message_length=value))


@pytest.mark.parametrize("audience", ["everyone", "ALL_ACTIVE", "segments", 3])
def test_unknown_audience_lists_the_choices(audience: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"unknown audience .*all_active, segment, sql, csv"):
        parse_conf(conf(audience=audience))


@pytest.mark.parametrize("segment", [_DROP, None, "", "whales", "all_active"])
def test_segment_audience_needs_a_known_segment(segment: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"needs segment set to one of slumber, whale, local"):
        parse_conf(conf(audience="segment", segment=segment))


@pytest.mark.parametrize("params", ["days=30", ["days", 30], 30])
def test_segment_params_must_be_an_object(params: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^segment_params must be an object"):
        parse_conf(conf(audience="segment", segment="slumber", segment_params=params))


def test_segment_params_are_checked_against_the_segment() -> None:
    with pytest.raises(CampaignConfigError,
                       match=r"segment 'whale' has no parameter min_point; .*min_points"):
        parse_conf(conf(audience="segment", segment="whale", segment_params={"min_point": 5}))
    with pytest.raises(CampaignConfigError, match=r"segment 'slumber' parameter 'days' must be a int"):
        parse_conf(conf(audience="segment", segment="slumber", segment_params={"days": "a month"}))


def test_segment_audience() -> None:
    spec = parse_conf(conf(audience="segment", segment="whale", segment_params={"min_points": 1000}))
    assert (spec.audience, spec.segment, spec.segment_params) == ("segment", "whale", {"min_points": 1000})
    assert spec.describe_audience() == "Segment whale (min_points=1000)"
    assert parse_conf(conf(audience="segment", segment="slumber", segment_params=None)).segment_params == {}
    assert parse_conf(conf(audience="segment", segment="slumber")).describe_audience() == "Segment slumber"


@pytest.mark.parametrize("query", [_DROP, None, "", "   ", 5])
def test_sql_audience_needs_sql(query: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"audience 'sql' needs sql"):
        parse_conf(conf(audience="sql", sql=query))


def test_sql_audience() -> None:
    spec = parse_conf(conf(audience="sql", sql="SELECT external_id AS member_id FROM passes_master"))
    assert spec.sql == "SELECT external_id AS member_id FROM passes_master"
    assert spec.describe_audience() == "Custom SQL: SELECT external_id AS member_id FROM passes_master"


@pytest.mark.parametrize("path", [_DROP, None, "", "  ", ["a.csv"]])
def test_csv_audience_needs_a_path(path: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"audience 'csv' needs csv_path"):
        parse_conf(conf(audience="csv", csv_path=path))


def test_csv_audience() -> None:
    spec = parse_conf(conf(audience="csv", csv_path="  /uploads/vip.csv "))
    assert spec.csv_path == "/uploads/vip.csv"
    assert spec.describe_audience() == "CSV upload: /uploads/vip.csv"


def test_other_audience_keys_are_ignored_for_all_active() -> None:
    spec = parse_conf(conf(segment="whale", sql="SELECT 1", csv_path="x.csv"))
    assert (spec.segment, spec.sql, spec.csv_path) == (None, None, None)


@pytest.mark.parametrize("value", [0, 0.05, -1, -50, MAX_RATE_LIMIT + 1, 1e9, "fast", "nan", "inf", True])
def test_rate_limit_is_bounded(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^rate_limit_per_second must be"):
        parse_conf(conf(rate_limit_per_second=value))


@pytest.mark.parametrize("value", [0, -1, MAX_BATCH_SIZE + 1, 10**9, "big", 2.5, True, float("inf")])
def test_batch_size_is_bounded(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^batch_size must be"):
        parse_conf(conf(batch_size=value))


@pytest.mark.parametrize("value", ["many", "12.5", 12.5, -1, [3], True, False, float("inf"), float("-inf")])
def test_confirm_recipients_must_be_a_whole_number(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^confirm_recipients must be"):
        parse_conf(conf(confirm_recipients=value))


def test_confirm_recipients_zero_is_a_real_confirmation() -> None:
    assert parse_conf(conf(confirm_recipients=0)).confirm_recipients == 0


@pytest.mark.parametrize("value", [-1, "x", float("inf")])  # YAML's .inf, for "no cap"
def test_max_recipients_is_checked(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^max_recipients must be"):
        parse_conf(conf(max_recipients=value))


@pytest.mark.parametrize("value", [-1, 24 * 365 + 1, "daily"])
def test_frequency_cap_is_bounded(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^frequency_cap_hours must be"):
        parse_conf(conf(frequency_cap_hours=value))


@pytest.mark.parametrize("value", ["yes", 1, 0, "", [True]])
def test_dry_run_must_be_a_boolean(value: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^dry_run must be true or false"):
        parse_conf(conf(dry_run=value))


@pytest.mark.parametrize(("value", "expected"),
                         [(True, True), (False, False), ("false", False), ("True", True)])
def test_dry_run_accepts_booleans_and_their_words(value: object, expected: bool) -> None:
    assert parse_conf(conf(dry_run=value)).dry_run is expected


def test_test_recipients_are_trimmed_and_deduplicated() -> None:
    spec = parse_conf(conf(test_recipients=[" CUST-1 ", 42, "CUST-1", "", "id with space"]))
    assert spec.test_recipients == ("CUST-1", "42", "id with space")
    assert parse_conf(conf(test_recipients="CUST-1, CUST-2\nCUST-3,")).test_recipients == ("CUST-1", "CUST-2", "CUST-3")


@pytest.mark.parametrize("entry", [None, 1.0, True, ["CUST-1"], {"id": "CUST-1"}])
def test_test_recipients_refuse_an_entry_that_is_not_an_id(entry: object) -> None:
    with pytest.raises(CampaignConfigError, match=r"^test_recipients must hold member ids .*got"):
        parse_conf(conf(test_recipients=["CUST-1", entry]))


@pytest.mark.parametrize(("overrides", "error"), [
    ({"name": "Double\x00points"}, r"^name contains a NUL character \(\\x00\) at position 7$"),
    ({"audience": "sql", "sql": "SELECT '\x00' AS member_id"}, r"^sql contains a NUL character .* position 9$"),
    ({"audience": "csv", "csv_path": "up\x00load.csv"}, r"^csv_path contains a NUL character"),
    ({"audience": "segment", "segment": "local", "segment_params": {"zips": ["10001", "1\x00"]}},
     r"^segment_params\.zips\[1\] contains a NUL character .* position 2$"),
    ({"test_recipients": ["CUST\x001"]}, r"^test_recipients\[0\] contains a NUL character .* position 5$"),
    ({"test_recipients": "CUST-1,CUST\x002"}, r"^test_recipients contains a NUL character .* position 12$"),
])
def test_text_with_a_nul_character_is_refused_naming_its_key(overrides: dict[str, Any], error: str) -> None:
    # PostgreSQL text cannot hold NUL: refused here, not by a driver error once the run has started
    with pytest.raises(CampaignConfigError, match=error):
        parse_conf(conf(**overrides))


@pytest.mark.parametrize(("key", "value", "error"), [
    ("audience", False, r"^unknown audience False"),  # was all_active: every member
    ("audience", 0, r"^unknown audience 0"),
    ("audience", [], r"^unknown audience \[\]"),
    ("audience", {}, r"^unknown audience \{\}"),
    ("test_recipients", 0, r"^test_recipients must be a list"),  # was no test send: the whole audience
    ("test_recipients", False, r"^test_recipients must be a list"),
    ("test_recipients", {}, r"^test_recipients must be a list"),
    ("quiet_hours_policy", False, r"^quiet_hours_policy must be one of wait, skip"),
    ("quiet_hours_policy", [], r"^quiet_hours_policy must be one of wait, skip"),
    ("quiet_hours_start", 0, r"^quiet_hours_start must be a local time"),
    ("quiet_hours_end", [], r"^quiet_hours_end must be a local time"),
])
def test_a_falsy_value_of_the_wrong_shape_is_not_the_default(key: str, value: object, error: str) -> None:
    with pytest.raises(CampaignConfigError, match=error):
        parse_conf(conf(**{key: value}))


def test_only_null_and_empty_text_mean_the_default() -> None:
    for empty in (None, ""):
        spec = parse_conf(conf(audience=empty, test_recipients=empty, quiet_hours_policy=empty,
                               quiet_hours_start=empty, quiet_hours_end=empty))
        assert (spec.audience, spec.test_recipients, spec.quiet_hours_policy) == ("all_active", (), "wait")
        assert (spec.quiet_hours_start, spec.quiet_hours_end) == ("21:00", "09:00")
    assert parse_conf(conf(test_recipients=[])).test_recipients == ()


def test_every_refusal_is_a_passpush_error_and_no_conf_is_mutated() -> None:
    given = conf(audience="segment", segment="whale", segment_params={"min_points": "700"})
    snapshot = {**given, "segment_params": dict(given["segment_params"])}
    parse_conf(given)
    assert given == snapshot
    assert issubclass(CampaignConfigError, PassPushError) and issubclass(MessageError, PassPushError)


def test_record_round_trips_through_the_dataclass() -> None:
    spec = parse_conf(conf(audience="segment", segment="local", segment_params={"zips": ["90210"]},
                           batch_size=10, dry_run=True))
    assert CampaignSpec(**spec.to_record()) == spec
    assert spec.template.placeholders == {"first_name", "points"}
