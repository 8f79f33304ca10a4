"""Segment files: their headers (name, description, typed parameters with defaults) and binding."""

from __future__ import annotations

import pytest

from passpush.campaign_spec import SEGMENTS
from passpush.errors import CampaignConfigError
from passpush.segments import Segment, SegmentParam, _parse, get_segment, load_segments


def test_every_built_in_segment_is_loaded() -> None:
    segments = load_segments()
    assert set(segments) == {"all_active", "local", "slumber", "whale"}
    assert set(SEGMENTS) <= set(segments)
    for name, segment in segments.items():
        assert segment.name == name
        assert segment.description
        assert "%(program_id)s" in segment.sql
        assert "AS member_id" in segment.sql


@pytest.mark.parametrize(
    ("name", "description", "params"),
    [
        ("all_active", "Everyone: every active pass of the program.", ()),
        ("slumber", "Win back sleepers: active members whose pass has not changed for N days.",
         (SegmentParam("days", "int", 30, "Days without activity"),)),
        ("whale", "Big spenders: active members holding more than N points.",
         (SegmentParam("min_points", "int", 500, "Points balance above which a member counts"),)),
        ("local", "Neighbours: active members living in one of the given ZIP codes.",
         (SegmentParam("zips", "list", ["90210"], "ZIP codes to include"),)),
    ],
)
def test_headers_are_parsed(name: str, description: str, params: tuple[SegmentParam, ...]) -> None:
    segment = get_segment(name)
    assert segment.description == description
    assert segment.params == params


def test_every_declared_parameter_is_used_by_its_sql() -> None:
    for segment in load_segments().values():
        for param in segment.params:
            assert f"%({param.name})s" in segment.sql


def test_unknown_segment_lists_the_choices() -> None:
    with pytest.raises(CampaignConfigError,
                       match=r"unknown segment 'whales'; choose one of all_active, local, slumber, whale"):
        get_segment("whales")


def test_parse_reads_every_type_and_falls_back_to_the_file_name() -> None:
    text = (
        "-- description: A test segment.\n"
        "-- param: n int 7 How many\n"
        "--param: ratio float 0.5   A share\n"
        "-- param: codes list [\"a\",\"b\"] Codes\n"
        "-- param: label text gold\n"
        "-- param: broken bool true Not a known type\n"
        "SELECT 1 AS member_id\n"
    )
    segment = _parse(text, "from_file")
    assert segment.name == "from_file"
    assert segment.description == "A test segment."
    assert segment.params == (
        SegmentParam("n", "int", 7, "How many"),
        SegmentParam("ratio", "float", 0.5, "A share"),
        SegmentParam("codes", "list", ["a", "b"], "Codes"),
        SegmentParam("label", "text", "gold", ""),
    )
    assert segment.sql == text
    assert _parse("-- name: renamed\nSELECT 1", "file").name == "renamed"


def test_bind_fills_defaults() -> None:
    assert get_segment("slumber").bind({}) == {"days": 30}
    assert get_segment("whale").bind({}) == {"min_points": 500}
    assert get_segment("local").bind({}) == {"zips": ["90210"]}
    assert get_segment("all_active").bind({}) == {}


@pytest.mark.parametrize(
    ("segment", "given", "bound"),
    [
        ("slumber", {"days": "45"}, {"days": 45}),
        ("slumber", {"days": 45.0}, {"days": 45}),
        ("slumber", {"days": " 7 "}, {"days": 7}),
        ("whale", {"min_points": 1000}, {"min_points": 1000}),
        ("local", {"zips": "90210, 10001 ,"}, {"zips": ["90210", "10001"]}),
        ("local", {"zips": [90210, " 10001 "]}, {"zips": ["90210", "10001"]}),
        ("local", {"zips": ("02108",)}, {"zips": ["02108"]}),
    ],
)
def test_bind_coerces_to_the_declared_type(segment: str, given: dict[str, object],
                                           bound: dict[str, object]) -> None:
    result = get_segment(segment).bind(given)
    assert result == bound
    assert all(type(result[k]) is type(v) for k, v in bound.items())


def test_bind_coerces_floats_and_text() -> None:
    params = (SegmentParam("share", "float", 0.5, ""), SegmentParam("label", "text", "x", ""))
    segment = Segment("s", "", params, "")
    assert segment.bind({"share": "0.25", "label": 12}) == {"share": 0.25, "label": "12"}


def test_bind_refuses_an_unknown_parameter_and_lists_the_known_ones() -> None:
    with pytest.raises(CampaignConfigError,
                       match=r"segment 'whale' has no parameter days, zip; its parameters: min_points"):
        get_segment("whale").bind({"zip": "1", "days": 3})
    with pytest.raises(CampaignConfigError, match="its parameters: none"):
        get_segment("all_active").bind({"days": 3})


@pytest.mark.parametrize(
    ("segment", "given"),
    [
        ("slumber", {"days": "a month"}),
        ("slumber", {"days": 2.5}),
        ("slumber", {"days": "2.5"}),
        ("slumber", {"days": True}),
        ("slumber", {"days": None}),
        ("slumber", {"days": [30]}),
        ("whale", {"min_points": "lots"}),
        ("local", {"zips": ""}),
        ("local", {"zips": " , "}),
        ("local", {"zips": []}),
        ("local", {"zips": 90210}),
        ("local", {"zips": {"90210": 1}}),  # not its keys
        ("local", {"zips": ["90210", None]}),
        ("local", {"zips": [["90210"]]}),
        ("local", {"zips": [True]}),
    ],
)
def test_bind_refuses_a_bad_type_naming_the_parameter(segment: str, given: dict[str, object]) -> None:
    name = next(iter(given))
    with pytest.raises(CampaignConfigError, match=rf"segment '{segment}' parameter '{name}' must be a "):
        get_segment(segment).bind(given)


@pytest.mark.parametrize(
    ("segment", "given"),
    [
        ("slumber", {"days": -5}),  # would select every active member
        ("slumber", {"days": "-1"}),
        ("slumber", {"days": -1.0}),
        ("whale", {"min_points": -500}),
    ],
)
def test_bind_refuses_a_negative_count_naming_the_parameter(segment: str, given: dict[str, object]) -> None:
    name = next(iter(given))
    with pytest.raises(CampaignConfigError, match=rf"^segment '{segment}' parameter '{name}' must be 0 or more, got -"):
        get_segment(segment).bind(given)


def test_bind_accepts_zero() -> None:
    assert get_segment("slumber").bind({"days": 0}) == {"days": 0}
    assert get_segment("whale").bind({"min_points": "0"}) == {"min_points": 0}


def test_bind_does_not_change_the_given_params() -> None:
    given = {"zips": "90210,10001"}
    get_segment("local").bind(given)
    assert given == {"zips": "90210,10001"}
