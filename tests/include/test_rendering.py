"""Message templates: parsing, Python rendering, and the SQL rendering that must give the same text."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from passpush.errors import MessageError
from passpush.rendering import (
    DEFAULT_MAX_LENGTH,
    PLACEHOLDERS,
    Placeholder,
    check_length,
    longest_possible_literal_length,
    parse_template,
)
from passpush.seed import SeededProgram

MEMBER = {"points": Decimal("1250"), "first_name": "Ava", "last_name": "Garcia", "tier": "Gold",
          "member_id": "CUST-0000001", "zip": "90210"}


# ---- parsing and Python rendering -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("You have {points} points", "You have 1250 points"),
        ("Hi {first_name}!", "Hi Ava!"),
        ("{tier} member {member_id} in {zip}", "Gold member CUST-0000001 in 90210"),
        ("{first_name} {last_name}", "Ava Garcia"),
        ("Hi { first_name }", "Hi Ava"),
        ("Hi {first_name|there}", "Hi Ava"),
    ],
)
def test_placeholders_take_the_members_values(source: str, expected: str) -> None:
    assert parse_template(source).render(MEMBER) == expected


@pytest.mark.parametrize("missing", [None, "", "absent", "   ", " \t\u00a0"])
def test_fallback_replaces_an_empty_or_missing_value(missing: str | None) -> None:
    values = {k: v for k, v in MEMBER.items() if k != "first_name"}
    if missing != "absent":
        values["first_name"] = missing
    assert parse_template("Hi {first_name|there}, {points} pts").render(values) == "Hi there, 1250 pts"
    assert parse_template("Hi {first_name}!").render(values) == "Hi !"
    assert parse_template("Hi {first_name|}!").render(values) == "Hi !"


def test_fallback_keeps_its_text_verbatim() -> None:
    template = parse_template("Hey {first_name| dear friend }")
    assert template.parts[1] == Placeholder(name="first_name", fallback=" dear friend ")
    assert template.render({}) == "Hey  dear friend "
    assert template.placeholders == {"first_name"}


def test_unknown_placeholder_is_named_and_known_ones_are_listed() -> None:
    with pytest.raises(MessageError) as info:
        parse_template("Hi {firstname}, {points} points")
    message = str(info.value)
    assert "{firstname}" in message
    for name in PLACEHOLDERS:
        assert f"{{{name}}}" in message


def test_empty_placeholder_is_unknown() -> None:
    with pytest.raises(MessageError, match=r"unknown placeholder \{\}"):
        parse_template("Hi {} there")


@pytest.mark.parametrize("source", [None, "", "   ", "\n\t"])
def test_empty_message_is_refused(source: str | None) -> None:
    with pytest.raises(MessageError, match="message is empty"):
        parse_template(source)


@pytest.mark.parametrize(("source", "position"), [("Hi\x00 {points}", 3), ("\x00", 1),
                                                ("Hi {first_name|the\x00re}", 19)])
def test_nul_character_is_refused_with_its_position(source: str, position: int) -> None:
    with pytest.raises(MessageError, match=rf"^the message contains a NUL character \(\\x00\) at position {position}:"):
        parse_template(source)


def test_other_control_characters_are_kept() -> None:
    assert parse_template("Hi\x01\x1b\x7f {points}").render({"points": 5}) == "Hi\x01\x1b\x7f 5"


@pytest.mark.parametrize("source", ["Hi {first_name", "Hi first_name}", "{{points}}", "a } b { c",
                                    "{points}}", "{{points}", "}{"])
def test_unbalanced_braces_are_refused(source: str) -> None:
    with pytest.raises(MessageError, match="unbalanced brace"):
        parse_template(source)


@pytest.mark.parametrize(
    ("points", "shown"),
    [
        (Decimal("120.00"), "120"),
        (Decimal("120"), "120"),
        (Decimal("120.50"), "120.5"),
        (Decimal("0.000"), "0"),
        (Decimal("-3.10"), "-3.1"),
        (120.0, "120"),
        (120.5, "120.5"),
        (120, "120"),
        (0, "0"),  # zero is a value, not "empty": no fallback
    ],
)
def test_numbers_are_shown_without_trailing_zeros(points: object, shown: str) -> None:
    assert parse_template("{points|none}").render({"points": points}) == shown


def test_text_values_are_shown_as_they_are() -> None:
    assert parse_template("{zip}").render({"zip": "02108"}) == "02108"
    assert parse_template("{member_id}").render({"member_id": "1.50"}) == "1.50"


def test_length_counts_only_the_fixed_text() -> None:
    template = parse_template("Hi {first_name|there}, {points} points!")
    assert longest_possible_literal_length(template) == len("Hi , ") + len(" points!")
    check_length(template, len("Hi ,  points!"))  # exactly at the limit is fine
    with pytest.raises(MessageError, match=r"is 13 characters .* over the limit of 12.*max_message_length"):
        check_length(template, 12)


def test_default_length_fits_a_lock_screen() -> None:
    check_length(parse_template("x" * DEFAULT_MAX_LENGTH), DEFAULT_MAX_LENGTH)
    with pytest.raises(MessageError, match="161 characters"):
        check_length(parse_template("x" * (DEFAULT_MAX_LENGTH + 1)), DEFAULT_MAX_LENGTH)


# ---- properties ------------------------------------------------------------------------------

plain_text = st.text(alphabet=st.characters(blacklist_characters="{}\x00", blacklist_categories=("Cs",)))
names = st.sampled_from(sorted(PLACEHOLDERS))
values = st.one_of(st.none(), plain_text, st.integers(-10**9, 10**9),
                   st.decimals(min_value=-10**6, max_value=10**6, places=2))


@given(plain_text.filter(lambda s: s.strip()))
def test_text_without_braces_renders_to_itself(text: str) -> None:
    assert parse_template(text).render(MEMBER) == text


@st.composite
def templates(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.one_of(
        plain_text,
        names.map(lambda n: f"{{{n}}}"),
        st.tuples(names, plain_text.filter(lambda s: "|" not in s)).map(lambda t: f"{{{t[0]}|{t[1]}}}"),
    ), min_size=1, max_size=8))
    source = "".join(pieces)
    return source if source.strip() else source + "{points}"


@given(templates(), st.fixed_dictionaries({name: values for name in PLACEHOLDERS}))
def test_rendering_never_leaves_a_placeholder_behind(source: str, member: dict[str, object]) -> None:
    rendered = parse_template(source).render(member)
    assert not re.search(r"\{[^{}]*\}", rendered)
    assert "{" not in rendered and "}" not in rendered


@given(st.text(alphabet=st.sampled_from("{}|ab points first_name tier\n")) | st.text())
def test_parse_either_succeeds_or_raises_message_error(source: str) -> None:
    try:
        template = parse_template(source)
    except MessageError:
        return
    assert template.source == source
    assert "".join(p if isinstance(p, str) else "" for p in template.parts) == _without_tokens(source)


def _without_tokens(source: str) -> str:
    return re.sub(r"\{[^{}]*\}", "", source)


# ---- SQL rendering equals Python rendering --------------------------------------------------------

_ROWS = sql.SQL(
    "SELECT p.external_id, p.points_balance, u.first_name, u.last_name, p.tier, u.zip, {} AS rendered"
    " FROM passes_master p LEFT JOIN users u ON u.id = p.user_id"
    " WHERE p.program_id = %s ORDER BY p.external_id"
)


def _render_both(db: psycopg.Connection, program_id: str, source: str) -> list[tuple[str, str, str]]:
    """(member, Python rendering, SQL rendering) for every pass of the program."""
    template = parse_template(source)
    out = []
    for external_id, points, first, last, tier, zip_code, rendered in db.execute(
            _ROWS.format(template.to_sql()), (program_id,)):
        member = {"points": points, "first_name": first, "last_name": last, "tier": tier,
                  "member_id": external_id, "zip": zip_code}
        out.append((external_id, template.render(member), rendered))
    return out


@pytest.fixture
def edgy_program(db: psycopg.Connection, seed_loyalty: Callable[..., SeededProgram]) -> SeededProgram:
    """A seeded program plus members whose data is awkward to render."""
    program = seed_loyalty(30)
    edits = [
        ("CUST-0000001", "UPDATE passes_master SET points_balance = 120.00"),
        ("CUST-0000002", "UPDATE passes_master SET points_balance = 120.50"),
        ("CUST-0000003", "UPDATE passes_master SET points_balance = 0, tier = NULL"),
        ("CUST-0000004", "UPDATE passes_master SET user_id = NULL"),  # no users row at all
    ]
    for member, statement in edits:
        db.execute(statement + " WHERE program_id = %s AND external_id = %s", (program.program_id, member))
    for member, first in [("CUST-0000005", ""), ("CUST-0000006", None), ("CUST-0000007", "Zoë 'O\\Neil' 🎉"),
                          ("CUST-0000008", "100%"), ("CUST-0000009", " \t ")]:
        db.execute("UPDATE users SET first_name = %s WHERE id = (SELECT user_id FROM passes_master"
                   " WHERE program_id = %s AND external_id = %s)", (first, program.program_id, member))
    return program


@pytest.mark.postgres
@pytest.mark.parametrize("source", [
    "Hi {first_name|there}, {points} points waiting!",
    "{tier|Member} {member_id} {zip|no zip} {last_name}",
    "50% off today, {first_name|friend}! 100%% sure. {points|0}%",
    "It's {first_name|y'all} \\o/ {tier|}",
    "no placeholders at all",
])
def test_sql_rendering_equals_python_rendering(db: psycopg.Connection, edgy_program: SeededProgram,
                                               source: str) -> None:
    rows = _render_both(db, edgy_program.program_id, source)
    assert len(rows) == 30
    mismatches = [(member, py, pg) for member, py, pg in rows if py != pg]
    assert mismatches == []


@pytest.mark.postgres
def test_sql_rendering_of_awkward_members(db: psycopg.Connection, edgy_program: SeededProgram) -> None:
    rows = {m: pg for m, _, pg in _render_both(db, edgy_program.program_id, "{points} {first_name|there}")}
    assert rows["CUST-0000001"].startswith("120 ")
    assert rows["CUST-0000002"].startswith("120.5 ")
    assert rows["CUST-0000004"].endswith(" there")
    assert rows["CUST-0000005"].endswith(" there")
    assert rows["CUST-0000006"].endswith(" there")
    assert rows["CUST-0000007"].endswith(" Zoë 'O\\Neil' 🎉")
    assert rows["CUST-0000008"].endswith(" 100%")
    assert rows["CUST-0000009"].endswith(" there")  # blanks are no name


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=templates())
def test_sql_rendering_equals_python_rendering_for_any_template(db: psycopg.Connection,
                                                                edgy_program: SeededProgram,
                                                                source: str) -> None:
    rows = _render_both(db, edgy_program.program_id, source)
    assert [(m, py) for m, py, _ in rows] == [(m, pg) for m, _, pg in rows]
