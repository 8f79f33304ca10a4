"""Properties the CSV reader and the message renderer keep for *any* input, adding to the example and
round-trip properties of tests/include/test_csv_audience.py and test_rendering.py:

- the CSV reader never fails any other way than with AudienceError, and whatever it lets through is a
  plain member id (no formula trigger, no whitespace, no control character, no delimiter);
- a member's own values are data: text such as "{points}" in a first name is shown as typed, never
  expanded again, and the fixed text of a template is a lower bound on every rendering (the length
  check made before any SQL runs relies on it).
"""

from __future__ import annotations

import csv
import io
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passpush.csv_audience import VALID_ID, _plain_ids, _read_records, parse_member_ids
from passpush.errors import AudienceError, MessageError
from passpush.rendering import PLACEHOLDERS, longest_possible_literal_length, parse_template

pytestmark = pytest.mark.reliability

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CSV_ALPHABET = string.ascii_letters + string.digits + ",;\t|\"'\r\n =+-@_.:é€\x00\x7f\ufeff"


def _read_all(data: bytes) -> list[str] | None:
    try:
        return list(parse_member_ids(data, source="fuzz.csv"))
    except AudienceError:
        return None


def _assert_plain_ids(ids: list[str]) -> None:
    for member_id in ids:
        assert VALID_ID.fullmatch(member_id), member_id
        assert member_id[0] not in "=+-@", member_id  # nothing a spreadsheet would run as a formula
        assert not any(c.isspace() or c in ",;\t|\"'" or not c.isprintable() for c in member_id), member_id


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_or_refused_with_an_audience_error(data: bytes) -> None:
    ids = _read_all(data)
    if ids is not None:
        _assert_plain_ids(ids)


@FAST
@given(st.text(alphabet=CSV_ALPHABET, max_size=400))
def test_any_csv_like_text_is_read_or_refused_with_an_audience_error(text: str) -> None:
    ids = _read_all(text.encode("utf-8", "surrogatepass"))
    if ids is not None:
        assert ids, "a file that is accepted has at least one id"
        _assert_plain_ids(ids)


@FAST
@given(st.lists(st.text(alphabet=CSV_ALPHABET, min_size=1, max_size=12), min_size=1, max_size=20))
def test_a_single_bad_cell_refuses_the_whole_file(cells: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # as spreadsheets write: cells with \r or \n get quoted
    writer.writerow(["member_id"])
    writer.writerows([cell] for cell in cells)
    ids = _read_all(buffer.getvalue().encode("utf-8", "surrogatepass"))
    bad = [c for c in cells if c.strip() and not VALID_ID.fullmatch(c.strip())]
    if bad:
        assert ids is None, f"accepted a file with {bad!r}"
    elif ids is not None:
        assert ids == [c.strip() for c in cells if c.strip()]


def _records_or_none(text: str) -> list[str] | None:
    try:
        return list(_read_records(text, "fuzz.csv"))
    except AudienceError:
        return None


@FAST
@given(st.text(alphabet=CSV_ALPHABET.replace('"', ""), max_size=400))
def test_the_plain_reader_accepts_only_what_the_record_reader_reads_the_same(text: str) -> None:
    plain = _plain_ids(text)
    assert plain is None or plain == _records_or_none(text)


# Mostly valid ids, sometimes padded, blank or not an id at all; one to three cells a line.
id_cell = st.text(alphabet="ab1_.", min_size=1, max_size=6)
plain_cell = st.one_of(id_cell, id_cell, id_cell.map(lambda c: f" {c}\t"), st.text(alphabet="ab1_.-= ;\t", max_size=6))
plain_line = st.lists(plain_cell, min_size=1, max_size=3).map(",".join)


@FAST
@given(lines=st.lists(plain_line, min_size=1, max_size=8),
       terminator=st.sampled_from(["\n", "\r\n"]),
       header=st.sampled_from(["", "member_id", "name,member_id", "member_id,points"]))
def test_plain_files_are_read_alike_by_both_readers(lines: list[str], terminator: str, header: str) -> None:
    text = terminator.join([header, *lines] if header else lines)
    plain = _plain_ids(text)
    assert plain is None or plain == _records_or_none(text)


values = st.one_of(st.none(), st.text(max_size=40), st.integers(-10**6, 10**6))
template_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@FAST
@given(st.sampled_from(sorted(PLACEHOLDERS)), st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                                      min_size=1, max_size=40))
def test_a_members_value_is_shown_as_typed_never_expanded(name: str, value: str) -> None:
    injected = value + "{points}{first_name|x}"
    rendered = parse_template(f"<{{{name}}}>").render({n: "999" for n in PLACEHOLDERS} | {name: injected})
    assert rendered == f"<{injected}>"


@FAST
@given(template_text, st.fixed_dictionaries({name: values for name in PLACEHOLDERS}))
def test_the_fixed_text_is_a_lower_bound_on_every_rendering(source: str, member: dict[str, object]) -> None:
    try:
        template = parse_template(source)
    except MessageError:
        return
    assert len(template.render(member)) >= longest_possible_literal_length(template)
