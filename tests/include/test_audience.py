"""Resolving audiences into push_campaign_recipients on real Postgres: every audience mode against an
independent reading of the loyalty tables, every suppression reason, batches, idempotence, and the
containment of custom SQL."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from passpush import audience, campaigns
from passpush.campaign_spec import parse_conf
from passpush.csv_audience import UPLOAD_DIR_ENV
from passpush.errors import AudienceError, MessageError
from passpush.rendering import parse_template
from passpush.seed import SeededProgram

pytestmark = pytest.mark.postgres

MESSAGE = "Hi {first_name|there}, {points} points waiting!"


@dataclass(frozen=True)
class Row:
    status: str
    reason: str | None
    batch_no: int | None
    rendered: str | None
    wallet: str | None
    passkit_id: str | None
    pass_id: str | None


def create(db: psycopg.Connection, program: SeededProgram, **conf: Any) -> str:
    spec = parse_conf({"program_id": program.program_id, "name": "audience test", "message": MESSAGE, **conf})
    return campaigns.create_campaign(db, spec, dag_id="test_audience", dag_run_id=str(uuid.uuid4()))


def resolve(db: psycopg.Connection, program: SeededProgram,
            **conf: Any) -> tuple[str, audience.AudiencePreview]:
    campaign_id = create(db, program, **conf)
    return campaign_id, audience.resolve(db, campaign_id)


def recipients(db: psycopg.Connection, campaign_id: str) -> dict[str, Row]:
    return {r[0]: Row(*r[1:]) for r in db.execute(
        "SELECT member_id, status, reason, batch_no, rendered_message, wallet, passkit_id, pass_id::text"
        " FROM push_campaign_recipients WHERE campaign_id = %s", (campaign_id,))}


def row_count(db: psycopg.Connection, campaign_id: str) -> int:
    row = db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s",
                     (campaign_id,)).fetchone()
    assert row is not None
    return int(row[0])


def members(db: psycopg.Connection, program_id: str) -> dict[str, dict[str, Any]]:
    """The program's passes and people, read independently of the code under test."""
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT p.external_id, p.id::text AS pass_id, p.passkit_internal_id, p.status, p.points_balance,"
            " p.tier, p.wallet, p.opted_out, p.last_updated, u.first_name, u.last_name, u.zip"
            " FROM passes_master p LEFT JOIN users u ON u.id = p.user_id WHERE p.program_id = %s",
            (program_id,)).fetchall()
    return {r["external_id"]: r for r in rows}


def reason_for(member: dict[str, Any] | None) -> str | None:
    """Why a member with no delivery history is skipped (None: they get the buzz)."""
    if member is None:
        return "unknown_member"
    if member["status"] != "ACTIVE":
        return "inactive_pass"
    if member["opted_out"]:
        return "opted_out"
    if not (member["passkit_internal_id"] or "").strip(" \t\r\n"):
        return "no_passkit_id"
    return None


def expected_rows(db: psycopg.Connection, program: SeededProgram, targeted: set[str]) -> dict[str, tuple]:
    everyone = members(db, program.program_id)
    return {m: ("PENDING" if reason_for(everyone.get(m)) is None else "SKIPPED", reason_for(everyone.get(m)))
            for m in targeted}


def outcome(rows: dict[str, Row]) -> dict[str, tuple]:
    return {m: (r.status, r.reason) for m, r in rows.items()}


def eligible_ids(db: psycopg.Connection, program: SeededProgram) -> list[str]:
    return sorted(m for m, row in members(db, program.program_id).items() if reason_for(row) is None)


def set_pass(db: psycopg.Connection, program: SeededProgram, member_id: str, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    db.execute(f"UPDATE passes_master SET {assignments}"
               " WHERE program_id = %(program)s AND external_id = %(member)s",
               {**columns, "program": program.program_id, "member": member_id})


def set_first_name(db: psycopg.Connection, program: SeededProgram, member_id: str, name: str | None) -> None:
    db.execute("UPDATE users SET first_name = %s WHERE id = (SELECT user_id FROM passes_master"
               " WHERE program_id = %s AND external_id = %s)", (name, program.program_id, member_id))


def sent_before(db: psycopg.Connection, program: SeededProgram, member_id: str, *, hours_ago: float,
                text: str = "an earlier offer", status: str = "SENT") -> None:
    """A delivery of an earlier campaign to this member's pass."""
    campaign_id = create(db, program, message="an earlier campaign")
    member = members(db, program.program_id)[member_id]
    db.execute(
        "INSERT INTO push_campaign_recipients (campaign_id, member_id, pass_id, passkit_id, wallet,"
        " rendered_message, status, sent_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, now() - make_interval(secs => %s))",
        (campaign_id, member_id, member["pass_id"], member["passkit_internal_id"], member["wallet"], text,
         status, hours_ago * 3600))


def write_csv(folder: Path, lines: list[str], name: str = "audience.csv") -> str:
    path = folder / name
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setenv(UPLOAD_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def loyalty(seed_loyalty: Callable[..., SeededProgram]) -> SeededProgram:
    return seed_loyalty(200)


# ---- audience modes against an independent reading ------------------------------------------------


def test_all_active(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    campaign_id, preview = resolve(db, loyalty)

    everyone = members(db, loyalty.program_id)
    active = {m for m, row in everyone.items() if row["status"] == "ACTIVE"}
    rows = recipients(db, campaign_id)
    assert outcome(rows) == expected_rows(db, loyalty, active)

    eligible = {m for m, r in rows.items() if r.status == "PENDING"}
    assert preview.targeted == loyalty.active == len(active)
    assert preview.eligible == loyalty.eligible_apple + loyalty.eligible_google == len(eligible)
    assert preview.will_buzz_iphone == loyalty.eligible_apple
    assert preview.will_update_google == loyalty.eligible_google
    skipped: dict[str, int] = {}
    for m in active - eligible:
        skipped[reason_for(everyone[m])] = skipped.get(reason_for(everyone[m]), 0) + 1  # type: ignore[index]
    assert preview.skipped == skipped
    assert preview.duplicates_in_input == 0 and preview.unknown_sample == []
    assert preview.batches == 1 and preview.batch_size == len(eligible)
    assert preview.headline() == (f"This will buzz {loyalty.eligible_apple} phones ({loyalty.eligible_apple} "
                                  f"iPhones; {loyalty.eligible_google} Google passes update silently)")

    campaign = campaigns.get_campaign(db, campaign_id)
    assert campaign["status"] == "PROCESSING" and campaign["started_at"] is not None
    assert campaign["recipient_count"] == len(active)
    assert campaign["skipped_count"] == len(active - eligible)
    assert campaign["preview"] == preview.as_dict()
    assert campaign["target_query"] == "All Active Members"


def test_every_row_carries_the_members_rendered_message(db: psycopg.Connection,
                                                        loyalty: SeededProgram) -> None:
    eligible = eligible_ids(db, loyalty)
    set_first_name(db, loyalty, eligible[0], None)
    set_first_name(db, loyalty, eligible[1], "")
    set_pass(db, loyalty, eligible[2], points_balance=Decimal("120.50"))
    campaign_id, preview = resolve(db, loyalty, message="50% off, {first_name|friend}: {points} pts, {tier}")

    template = parse_template("50% off, {first_name|friend}: {points} pts, {tier}")
    everyone = members(db, loyalty.program_id)
    rows = recipients(db, campaign_id)
    for member_id, row in rows.items():
        m = everyone[member_id]
        values = {"points": m["points_balance"], "first_name": m["first_name"], "last_name": m["last_name"],
                  "tier": m["tier"], "member_id": member_id, "zip": m["zip"]}
        assert row.rendered == template.render(values), member_id
        assert (row.pass_id, row.passkit_id, row.wallet) == (
            m["pass_id"], m["passkit_internal_id"], m["wallet"])
    assert rows[eligible[0]].rendered.startswith("50% off, friend: ")
    assert rows[eligible[1]].rendered.startswith("50% off, friend: ")
    assert " 120.5 pts" in rows[eligible[2]].rendered
    assert preview.samples == [{"member_id": m, "wallet": rows[m].wallet, "message": rows[m].rendered}
                               for m in eligible[:audience.SAMPLE_SIZE]]


@pytest.mark.parametrize(
    ("segment", "params", "selects"),
    [
        ("slumber", {}, lambda m, now: m["last_updated"] < now - timedelta(days=30)),
        ("slumber", {"days": 45}, lambda m, now: m["last_updated"] < now - timedelta(days=45)),
        ("whale", {}, lambda m, now: m["points_balance"] > 500),
        ("whale", {"min_points": "800"}, lambda m, now: m["points_balance"] > 800),
        ("local", {}, lambda m, now: m["zip"] == "90210"),
        ("local", {"zips": ["90210", "10001"]}, lambda m, now: m["zip"] in {"90210", "10001"}),
        ("local", {"zips": "94103"}, lambda m, now: m["zip"] == "94103"),
    ],
)
def test_segments(db: psycopg.Connection, loyalty: SeededProgram, segment: str, params: dict[str, Any],
                  selects: Callable[[dict[str, Any], datetime], bool]) -> None:
    now = db.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    expected = {m for m, row in members(db, loyalty.program_id).items()
                if row["status"] == "ACTIVE" and selects(row, now)}
    assert 0 < len(expected) < loyalty.active  # the segment really selects

    campaign_id, preview = resolve(db, loyalty, audience="segment", segment=segment, segment_params=params)

    assert outcome(recipients(db, campaign_id)) == expected_rows(db, loyalty, expected)
    assert preview.targeted == len(expected)


def test_segments_only_see_their_own_program(db: psycopg.Connection,
                                             seed_loyalty: Callable[..., SeededProgram]) -> None:
    ours, theirs = seed_loyalty(30), seed_loyalty(80)
    campaign_id, preview = resolve(db, ours, audience="segment", segment="whale",
                                   segment_params={"min_points": 0})
    expected = {m for m, row in members(db, ours.program_id).items()
                if row["status"] == "ACTIVE" and row["points_balance"] > 0}
    ours_passes = {m["pass_id"] for m in members(db, ours.program_id).values()}
    rows = recipients(db, campaign_id)
    assert set(rows) == expected
    assert {r.pass_id for r in rows.values()} <= ours_passes
    assert preview.targeted == len(expected) and theirs.members > ours.members


@pytest.mark.parametrize(
    "query",
    [
        "SELECT external_id AS member_id FROM passes_master WHERE program_id = '{program}'",
        # An external_id column works too.
        "select external_id from passes_master where program_id = '{program}';",
        "SELECT external_id AS member_id FROM passes_master WHERE program_id = '{program}' ;\n\n ;",
        "SELECT external_id AS member_id\nFROM passes_master\nWHERE program_id = '{program}' -- every pass",
        "SELECT external_id AS member_id FROM passes_master WHERE program_id = '{program}'"
        " AND external_id LIKE 'CUST-%'",
    ],
)
def test_custom_sql_includes_inactive_passes_as_skipped(db: psycopg.Connection, loyalty: SeededProgram,
                                                        query: str) -> None:
    campaign_id, preview = resolve(db, loyalty, audience="sql", sql=query.format(program=loyalty.program_id))

    everyone = members(db, loyalty.program_id)
    rows = recipients(db, campaign_id)
    assert outcome(rows) == expected_rows(db, loyalty, set(everyone))
    inactive = {m for m, row in everyone.items() if row["status"] != "ACTIVE"}
    assert inactive and preview.skipped["inactive_pass"] == len(inactive)


def test_custom_sql_null_ids_are_ignored_and_other_types_are_cast(db: psycopg.Connection,
                                                                  loyalty: SeededProgram) -> None:
    query = "SELECT unnest(ARRAY['CUST-0000001', NULL, 'CUST-0000002', 'NOPE']) AS member_id, 1 AS other"
    campaign_id, preview = resolve(db, loyalty, audience="sql", sql=query)
    rows = recipients(db, campaign_id)
    assert preview.targeted == 3
    assert set(rows) == {"CUST-0000001", "CUST-0000002", "NOPE"}
    assert rows["NOPE"] == Row("SKIPPED", "unknown_member", None, None, None, None, None)
    campaign_id, _ = resolve(db, loyalty, audience="sql", sql="SELECT 42 AS member_id")
    assert recipients(db, campaign_id)["42"].reason == "unknown_member"


def test_custom_sql_that_repeats_ids_gives_one_row_per_member(db: psycopg.Connection,
                                                              loyalty: SeededProgram) -> None:
    query = "SELECT unnest(ARRAY['CUST-0000001', 'CUST-0000002', 'CUST-0000001', 'NOPE', 'NOPE']) AS member_id"
    campaign_id, preview = resolve(db, loyalty, audience="sql", sql=query)
    assert set(recipients(db, campaign_id)) == {"CUST-0000001", "CUST-0000002", "NOPE"}
    assert preview.targeted == 3


@contextmanager
def several_passes_per_member(db: psycopg.Connection) -> Iterator[None]:
    """passes_master without its one-pass-per-member-id constraint, as production's may be; restored after."""
    constraint = "passes_master_program_id_external_id_key"
    db.execute(f"ALTER TABLE passes_master DROP CONSTRAINT {constraint}")
    try:
        yield
    finally:
        db.execute(f"ALTER TABLE passes_master ADD CONSTRAINT {constraint} UNIQUE (program_id, external_id)")


def test_a_member_with_several_passes_is_reached_on_one(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    """Production's passes_master may hold several passes per member id (a reissued card): one row each,
    on the sendable pass, else on the most recently updated one."""
    reissued, retired = eligible_ids(db, loyalty)[:2]
    copy = ("INSERT INTO passes_master (program_id, user_id, external_id, passkit_internal_id, status, wallet,"
            " last_updated) SELECT program_id, user_id, external_id, passkit_internal_id || '-old', 'EXPIRED', wallet,"
            " last_updated + %s::interval FROM passes_master WHERE program_id = %s AND external_id = %s RETURNING id")
    with several_passes_per_member(db):
        try:
            # The old card was touched after the new one: still the ACTIVE card is the one reached.
            db.execute(copy, ("1 day", loyalty.program_id, reissued))
            db.execute("UPDATE passes_master SET status = 'EXPIRED' WHERE program_id = %s AND external_id = %s",
                       (loyalty.program_id, retired))
            newest_retired = db.execute(copy, ("1 hour", loyalty.program_id, retired)).fetchone()[0]
            active_pass = db.execute("SELECT id::text FROM passes_master WHERE program_id = %s AND external_id = %s"
                                     " AND status = 'ACTIVE'", (loyalty.program_id, reissued)).fetchone()[0]

            campaign_id, preview = resolve(db, loyalty, audience="sql",
                                           sql=f"SELECT unnest(ARRAY['{reissued}', '{retired}']) AS member_id")

            rows = recipients(db, campaign_id)
            assert set(rows) == {reissued, retired} and preview.targeted == 2
            assert (rows[reissued].status, rows[reissued].pass_id) == ("PENDING", active_pass)
            assert (rows[retired].status, rows[retired].reason, rows[retired].pass_id) == (
                "SKIPPED", "inactive_pass", str(newest_retired))
            assert preview.eligible == 1 and preview.batches == 1
        finally:
            db.execute("DELETE FROM passes_master WHERE program_id = %s AND external_id IN (%s, %s)"
                       " AND passkit_internal_id LIKE '%%-old'", (loyalty.program_id, reissued, retired))
            db.execute("UPDATE passes_master SET status = 'ACTIVE' WHERE program_id = %s AND external_id = %s",
                       (loyalty.program_id, retired))


@contextmanager
def nullable_pass_columns(db: psycopg.Connection) -> Iterator[None]:
    """passes_master whose status and last_updated may be NULL, as production's may; restored after."""
    db.execute("ALTER TABLE passes_master ALTER COLUMN status DROP NOT NULL,"
               " ALTER COLUMN last_updated DROP NOT NULL")
    try:
        yield
    finally:
        db.execute("ALTER TABLE passes_master ALTER COLUMN status SET NOT NULL,"
                   " ALTER COLUMN last_updated SET NOT NULL")


@pytest.mark.parametrize("spelling", ["active", "Active", " ACTIVE "])
def test_an_active_status_in_another_case_or_padded_is_active(db: psycopg.Connection, loyalty: SeededProgram,
                                                              spelling: str) -> None:
    member = eligible_ids(db, loyalty)[0]
    set_pass(db, loyalty, member, status=spelling)
    try:
        everyone, _ = resolve(db, loyalty)
        listed, _ = resolve(db, loyalty, audience="sql", sql=f"SELECT '{member}' AS member_id")
        assert outcome(recipients(db, everyone)).get(member) == ("PENDING", None)
        assert outcome(recipients(db, listed)) == {member: ("PENDING", None)}
    finally:
        set_pass(db, loyalty, member, status="ACTIVE")


def test_a_pass_without_a_status_is_not_sent_to(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    member = eligible_ids(db, loyalty)[0]
    with nullable_pass_columns(db):
        set_pass(db, loyalty, member, status=None)
        try:
            campaign_id, preview = resolve(db, loyalty, audience="sql", sql=f"SELECT '{member}' AS member_id")
            assert outcome(recipients(db, campaign_id)) == {member: ("SKIPPED", "inactive_pass")}
            assert preview.eligible == 0
        finally:
            set_pass(db, loyalty, member, status="ACTIVE")


def test_unknown_status_or_update_time_never_wins_the_choice_of_pass(db: psycopg.Connection,
                                                                     loyalty: SeededProgram) -> None:
    """A reissued card: the old pass without a status (or without an update time) must not be the one
    reached in place of the member's ACTIVE, most recently updated pass."""
    no_status, no_time = eligible_ids(db, loyalty)[:2]
    copy = ("INSERT INTO passes_master (program_id, user_id, external_id, passkit_internal_id, status, wallet,"
            " last_updated) SELECT program_id, user_id, external_id, passkit_internal_id || '-old', %s, wallet,"
            " %s FROM passes_master WHERE program_id = %s AND external_id = %s")
    with several_passes_per_member(db), nullable_pass_columns(db):
        try:
            db.execute(copy, (None, datetime.now().astimezone() + timedelta(days=1), loyalty.program_id, no_status))
            db.execute(copy, ("ACTIVE", None, loyalty.program_id, no_time))
            campaign_id, _ = resolve(db, loyalty)
            rows = recipients(db, campaign_id)
            assert not rows[no_status].passkit_id.endswith("-old")
            assert not rows[no_time].passkit_id.endswith("-old")
        finally:
            db.execute("DELETE FROM passes_master WHERE program_id = %s AND passkit_internal_id LIKE '%%-old'",
                       (loyalty.program_id,))


@pytest.mark.parametrize("conf", [{"audience": "all_active"},
                                  {"audience": "segment", "segment": "whale", "segment_params": {"min_points": 0}}],
                         ids=["all_active", "whale"])
def test_a_member_with_two_active_passes_in_a_built_in_segment_is_sent_to_once(
        db: psycopg.Connection, loyalty: SeededProgram, conf: dict[str, Any]) -> None:
    """A built-in segment lists such a member once per pass, so each pass is joined twice: the member is
    reached once, on the newer pass, and not skipped as a 'duplicate_pass' of the same pass's other copy."""
    member = eligible_ids(db, loyalty)[0]
    with several_passes_per_member(db):
        try:
            newer = db.execute(
                "INSERT INTO passes_master (program_id, user_id, external_id, passkit_internal_id, status, wallet,"
                " points_balance, last_updated) SELECT program_id, user_id, external_id, passkit_internal_id || '-new',"
                " 'ACTIVE', wallet, points_balance, last_updated + interval '1 day' FROM passes_master"
                " WHERE program_id = %s AND external_id = %s RETURNING id::text",
                (loyalty.program_id, member)).fetchone()[0]

            campaign_id, preview = resolve(db, loyalty, **conf)

            rows = recipients(db, campaign_id)
            assert (rows[member].status, rows[member].reason, rows[member].pass_id) == ("PENDING", None, newer)
            assert "duplicate_pass" not in preview.skipped
            assert row_count(db, campaign_id) == preview.targeted == len(rows)
        finally:
            db.execute("DELETE FROM passes_master WHERE program_id = %s AND external_id = %s"
                       " AND passkit_internal_id LIKE '%%-new'", (loyalty.program_id, member))


def test_a_member_whose_two_passes_share_a_passkit_id_is_still_sent_once(db: psycopg.Connection,
                                                                        loyalty: SeededProgram) -> None:
    """Two live rows for one PassKit member, same time stamp: the pass the member is reached on is the
    one that keeps the PassKit id, so the member is not lost as a 'duplicate_pass' of themself."""
    member = eligible_ids(db, loyalty)[0]
    with several_passes_per_member(db):
        twin = db.execute(
            "INSERT INTO passes_master (program_id, user_id, external_id, passkit_internal_id, status, wallet,"
            " points_balance, last_updated) SELECT program_id, user_id, external_id, passkit_internal_id, status,"
            " wallet, points_balance, last_updated FROM passes_master WHERE program_id = %s AND external_id = %s"
            " RETURNING id", (loyalty.program_id, member)).fetchone()[0]
        try:
            first = db.execute("SELECT id::text FROM passes_master WHERE program_id = %s AND external_id = %s"
                               " ORDER BY id LIMIT 1", (loyalty.program_id, member)).fetchone()[0]

            campaign_id, preview = resolve(db, loyalty, audience="sql", sql=f"SELECT '{member}' AS member_id")

            row = recipients(db, campaign_id)[member]
            assert (row.status, row.reason, row.pass_id) == ("PENDING", None, first)
            assert preview.eligible == 1
        finally:
            db.execute("DELETE FROM passes_master WHERE id = %s", (twin,))


def test_csv(db: psycopg.Connection, loyalty: SeededProgram, uploads: Path) -> None:
    everyone = members(db, loyalty.program_id)
    chosen = sorted(everyone)[10:60:2]
    path = write_csv(uploads, ["\ufeffMember ID,Name", *(f'"{m}",Someone' for m in chosen), ""])

    campaign_id, preview = resolve(db, loyalty, audience="csv", csv_path=path)

    assert outcome(recipients(db, campaign_id)) == expected_rows(db, loyalty, set(chosen))
    assert preview.targeted == len(chosen) and preview.duplicates_in_input == 0
    assert campaigns.get_campaign(db, campaign_id)["csv_upload_url"] == path


def test_csv_as_file_uri(db: psycopg.Connection, loyalty: SeededProgram, uploads: Path) -> None:
    path = write_csv(uploads, ["CUST-0000003", "CUST-0000004"])
    campaign_id, _ = resolve(db, loyalty, audience="csv", csv_path=f"file://{path}")
    assert set(recipients(db, campaign_id)) == {"CUST-0000003", "CUST-0000004"}


def test_csv_duplicates_and_unknown_ids(db: psycopg.Connection, loyalty: SeededProgram,
                                        uploads: Path) -> None:
    eligible = eligible_ids(db, loyalty)
    lines = ["member_id", eligible[0], "NOPE-2", eligible[1], eligible[0], "NOPE-1", "NOPE-2", eligible[0],
             "CUST-9999999"]
    campaign_id, preview = resolve(db, loyalty, audience="csv", csv_path=write_csv(uploads, lines))

    rows = recipients(db, campaign_id)
    assert set(rows) == {eligible[0], eligible[1], "NOPE-1", "NOPE-2", "CUST-9999999"}  # one row per member
    assert preview.duplicates_in_input == 3
    assert preview.skipped == {"unknown_member": 3}
    assert preview.unknown_sample == ["CUST-9999999", "NOPE-1", "NOPE-2"]
    assert preview.eligible == 2
    assert rows["NOPE-1"] == Row("SKIPPED", "unknown_member", None, None, None, None, None)


def test_csv_member_of_another_program_is_unknown(db: psycopg.Connection,
                                                  seed_loyalty: Callable[..., SeededProgram],
                                                  uploads: Path) -> None:
    ours, _ = seed_loyalty(20), seed_loyalty(50)
    path = write_csv(uploads, ["CUST-0000019", "CUST-0000020", "CUST-0000021"])
    campaign_id, preview = resolve(db, ours, audience="csv", csv_path=path)
    assert preview.unknown_sample == ["CUST-0000021"]
    assert recipients(db, campaign_id)["CUST-0000021"].pass_id is None


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["email,points", "a@example.com,10"], "no member id column"),
        (["member_id", "CUST-0000001", "=cmd|' /C calc'!A0"], "spreadsheet formula"),
        (["member_id"], "header but no member ids"),
    ],
)
def test_bad_csv_fails_with_no_rows(db: psycopg.Connection, loyalty: SeededProgram, uploads: Path,
                                    lines: list[str], error: str) -> None:
    campaign_id = create(db, loyalty, audience="csv", csv_path=write_csv(uploads, lines))
    with pytest.raises(AudienceError, match=error):
        audience.resolve(db, campaign_id)
    assert row_count(db, campaign_id) == 0


def test_csv_outside_the_upload_folder_fails_with_no_rows(db: psycopg.Connection, loyalty: SeededProgram,
                                                          uploads: Path, tmp_path: Path) -> None:
    outside = write_csv(tmp_path, ["CUST-0000001"])
    for location in (outside, str(uploads / ".." / "audience.csv")):
        campaign_id = create(db, loyalty, audience="csv", csv_path=location)
        with pytest.raises(AudienceError, match="outside the upload folder"):
            audience.resolve(db, campaign_id)
        assert row_count(db, campaign_id) == 0


# ---- suppression reasons --------------------------------------------------------------------------


def test_each_suppression_reason(db: psycopg.Connection, loyalty: SeededProgram, uploads: Path) -> None:
    e = eligible_ids(db, loyalty)
    now = db.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    set_pass(db, loyalty, e[1], status="EXPIRED")
    set_pass(db, loyalty, e[2], opted_out=True)
    set_pass(db, loyalty, e[3], passkit_internal_id=None)
    set_pass(db, loyalty, e[4], passkit_internal_id="")
    shared = members(db, loyalty.program_id)[e[5]]["passkit_internal_id"]
    set_pass(db, loyalty, e[5], last_updated=now - timedelta(days=1))
    # The older of two passes with one PassKit id is the duplicate.
    set_pass(db, loyalty, e[6], passkit_internal_id=shared, last_updated=now - timedelta(days=2))
    sent_before(db, loyalty, e[7], hours_ago=1)
    sent_before(db, loyalty, e[8], hours_ago=30)  # outside the 24 h cap
    sent_before(db, loyalty, e[9], hours_ago=1, status="FAILED")  # only deliveries count
    # An inactive pass that is also opted out reports the first reason that applies.
    set_pass(db, loyalty, e[10], status="DELETED", opted_out=True, passkit_internal_id=None)
    set_pass(db, loyalty, e[11], passkit_internal_id="  ")  # blank is no id: PassKit would answer 404
    set_pass(db, loyalty, e[12], passkit_internal_id="\t\r\n")
    ids = [e[0], *e[1:13], "NOPE-1", e[0]]

    campaign_id, preview = resolve(db, loyalty, audience="csv", csv_path=write_csv(uploads, ids))

    assert outcome(recipients(db, campaign_id)) == {
        e[0]: ("PENDING", None),
        e[1]: ("SKIPPED", "inactive_pass"),
        e[2]: ("SKIPPED", "opted_out"),
        e[3]: ("SKIPPED", "no_passkit_id"),
        e[4]: ("SKIPPED", "no_passkit_id"),
        e[5]: ("PENDING", None),
        e[6]: ("SKIPPED", "duplicate_pass"),
        e[7]: ("SKIPPED", "frequency_cap"),
        e[8]: ("PENDING", None),
        e[9]: ("PENDING", None),
        e[10]: ("SKIPPED", "inactive_pass"),
        e[11]: ("SKIPPED", "no_passkit_id"),
        e[12]: ("SKIPPED", "no_passkit_id"),
        "NOPE-1": ("SKIPPED", "unknown_member"),
    }
    assert preview.skipped == {"inactive_pass": 2, "opted_out": 1, "no_passkit_id": 4, "duplicate_pass": 1,
                               "frequency_cap": 1, "unknown_member": 1}
    assert preview.unknown_sample == ["NOPE-1"]
    assert preview.duplicates_in_input == 1
    assert preview.targeted == 14 and preview.eligible == 4
    assert campaigns.get_campaign(db, campaign_id)["skipped_count"] == 10


@pytest.mark.parametrize("spelling", ["Asia/Tokyo", "asia/tokyo", " Asia/Tokyo ", "ASIA/TOKYO"])
def test_a_members_time_zone_is_kept_however_it_is_spelled(db: psycopg.Connection, loyalty: SeededProgram,
                                                           spelling: str) -> None:
    """PostgreSQL reads zone names case-insensitively; the member lives in Tokyo, not in the program's zone."""
    member = eligible_ids(db, loyalty)[0]
    db.execute("UPDATE users SET timezone = %s WHERE id = (SELECT user_id FROM passes_master"
               " WHERE program_id = %s AND external_id = %s)", (spelling, loyalty.program_id, member))
    campaign_id, _ = resolve(db, loyalty, audience="sql", sql=f"SELECT '{member}' AS member_id")
    zone = db.execute("SELECT timezone FROM push_campaign_recipients WHERE campaign_id = %s",
                      (campaign_id,)).fetchone()[0]
    # 20:00 UTC: noon in Los Angeles (the program's zone), 05:00 in Tokyo
    asleep = db.execute("SELECT passpush_in_quiet_hours('2026-11-25 20:00+00', %s, '21:00', '09:00')",
                        (zone,)).fetchone()[0]
    assert asleep, zone


def test_frequency_cap_follows_the_campaign_setting(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    e = eligible_ids(db, loyalty)
    sent_before(db, loyalty, e[0], hours_ago=30)
    sent_before(db, loyalty, e[1], hours_ago=1)
    query = f"SELECT unnest(ARRAY['{e[0]}', '{e[1]}']) AS member_id"
    campaign_id, _ = resolve(db, loyalty, audience="sql", sql=query, frequency_cap_hours=48)
    assert {m: r.reason for m, r in recipients(db, campaign_id).items()} == {
        e[0]: "frequency_cap", e[1]: "frequency_cap"}
    campaign_id, _ = resolve(db, loyalty, audience="sql", sql=query, frequency_cap_hours=0.5)
    assert {m: r.reason for m, r in recipients(db, campaign_id).items()} == {e[0]: None, e[1]: None}


def test_google_daily_limit(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    e = eligible_ids(db, loyalty)
    for member in e[:4]:
        set_pass(db, loyalty, member, wallet="google")
    set_pass(db, loyalty, e[4], wallet="apple")
    for hours in (1, 5, 20):
        sent_before(db, loyalty, e[0], hours_ago=hours)  # three today: Google's limit
        sent_before(db, loyalty, e[4], hours_ago=hours)  # Apple has no such limit
    for hours in (1, 5):
        sent_before(db, loyalty, e[1], hours_ago=hours)  # two today
    for hours in (1, 5, 30):
        sent_before(db, loyalty, e[2], hours_ago=hours)  # two today, one yesterday
    query = "SELECT unnest(ARRAY[" + ", ".join(f"'{m}'" for m in e[:5]) + "]) AS member_id"

    campaign_id, preview = resolve(db, loyalty, audience="sql", sql=query, frequency_cap_hours=0)

    assert outcome(recipients(db, campaign_id)) == {
        e[0]: ("SKIPPED", "google_daily_limit"),
        e[1]: ("PENDING", None),
        e[2]: ("PENDING", None),
        e[3]: ("PENDING", None),
        e[4]: ("PENDING", None),
    }
    assert preview.will_update_google == 3 and preview.will_buzz_iphone == 1


def test_already_showing(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    e = eligible_ids(db, loyalty)
    text = "Double points today"
    sent_before(db, loyalty, e[0], hours_ago=2, text=text)
    sent_before(db, loyalty, e[1], hours_ago=2, text="Something else")
    sent_before(db, loyalty, e[2], hours_ago=5, text=text)
    sent_before(db, loyalty, e[2], hours_ago=1, text="Newer offer")  # the pass shows the newer text now
    sent_before(db, loyalty, e[3], hours_ago=1, text=text, status="FAILED")
    query = "SELECT unnest(ARRAY[" + ", ".join(f"'{m}'" for m in e[:4]) + "]) AS member_id"

    campaign_id, _ = resolve(db, loyalty, audience="sql", sql=query, message=text, frequency_cap_hours=0)

    assert outcome(recipients(db, campaign_id)) == {
        e[0]: ("SKIPPED", "already_showing"),
        e[1]: ("PENDING", None),
        e[2]: ("PENDING", None),
        e[3]: ("PENDING", None),
    }


def test_suppression_follows_the_passkit_id_whichever_pass_row_reached_it(db: psycopg.Connection,
                                                                         loyalty: SeededProgram) -> None:
    """A PassKit id is one pass in one wallet: what it shows and when it last buzzed belong to it, also
    when the delivery was recorded on another passes_master row (a card reissued under the same id)."""
    e = eligible_ids(db, loyalty)
    everyone = members(db, loyalty.program_id)
    text = "Double points today"
    earlier = create(db, loyalty, message="an earlier campaign")
    for member_id, hours_ago, rendered in ((e[0], 1, "an earlier offer"), (e[1], 30, text)):
        db.execute(
            "INSERT INTO push_campaign_recipients (campaign_id, member_id, pass_id, passkit_id, wallet,"
            " rendered_message, status, sent_at)"
            " VALUES (%s, %s, gen_random_uuid(), %s, %s, %s, 'SENT', now() - make_interval(secs => %s))",
            (earlier, f"OLD-{member_id}", everyone[member_id]["passkit_internal_id"],
             everyone[member_id]["wallet"], rendered, hours_ago * 3600))
    query = f"SELECT unnest(ARRAY['{e[0]}', '{e[1]}', '{e[2]}']) AS member_id"

    campaign_id, _ = resolve(db, loyalty, audience="sql", sql=query, message=text)

    assert outcome(recipients(db, campaign_id)) == {
        e[0]: ("SKIPPED", "frequency_cap"),
        e[1]: ("SKIPPED", "already_showing"),
        e[2]: ("PENDING", None),
    }


def test_the_preview_from_the_resolution_matches_the_rows_it_wrote(db: psycopg.Connection,
                                                                   loyalty: SeededProgram,
                                                                   uploads: Path) -> None:
    e = eligible_ids(db, loyalty)
    set_pass(db, loyalty, e[1], opted_out=True)
    sent_before(db, loyalty, e[2], hours_ago=1)
    campaign_id, preview = resolve(db, loyalty, audience="csv", batch_size=7, holdout_percent=20,
                                   csv_path=write_csv(uploads, [*e[:60], "NOPE-1", "NOPE-2", e[0]]))

    assert preview == audience.build_preview(db, campaign_id, duplicates=1)  # counted from the table
    assert (preview.targeted, preview.duplicates_in_input) == (62, 1)
    assert preview.skipped == {"opted_out": 1, "frequency_cap": 1, "unknown_member": 2}
    assert preview.held_out > 0 and preview.eligible + preview.held_out == 58
    sizes = Counter(r.batch_no for r in recipients(db, campaign_id).values() if r.batch_no is not None)
    assert (preview.batches, preview.batch_size) == (len(sizes), max(sizes.values()))
    assert preview.batch_size <= 7


def test_samples_are_members_the_campaign_will_reach(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    campaign_id, preview = resolve(db, loyalty, holdout_percent=50, batch_size=1)

    rows = recipients(db, campaign_id)
    pending = sorted(m for m, r in rows.items() if r.status == "PENDING")
    assert any(r.status == "HELD_OUT" for r in rows.values())
    assert preview.samples == [{"member_id": m, "wallet": rows[m].wallet, "message": rows[m].rendered}
                               for m in pending[:audience.SAMPLE_SIZE]]


# ---- batches and idempotence -----------------------------------------------------------------------


def test_batches_are_numbered_in_member_order(db: psycopg.Connection, loyalty: SeededProgram,
                                              uploads: Path) -> None:
    eligible = eligible_ids(db, loyalty)[:40]
    skipped = "NOPE-1"
    campaign_id, preview = resolve(db, loyalty, audience="csv", batch_size=15,
                                   csv_path=write_csv(uploads, [*reversed(eligible), skipped]))

    rows = recipients(db, campaign_id)
    assert {m: rows[m].batch_no for m in eligible} == {m: i // 15 for i, m in enumerate(eligible)}
    sizes: dict[int, int] = {}
    for row in rows.values():
        if row.batch_no is not None:
            sizes[row.batch_no] = sizes.get(row.batch_no, 0) + 1
    assert sizes == {0: 15, 1: 15, 2: 10}
    assert rows[skipped].batch_no is None
    assert (preview.batches, preview.batch_size, preview.eligible) == (3, 15, 40)


def test_a_batch_is_the_next_members_in_order_and_skipped_ones_leave_it_smaller(
        db: psycopg.Connection, loyalty: SeededProgram, uploads: Path) -> None:
    e = eligible_ids(db, loyalty)[:6]
    gone = [f"{e[1]}-gone", f"{e[3]}-gone"]  # unknown ids that sort right after e[1] and e[3]
    campaign_id, preview = resolve(db, loyalty, audience="csv", batch_size=3,
                                   csv_path=write_csv(uploads, [*reversed(e), *gone]))

    rows = recipients(db, campaign_id)
    assert {m: rows[m].batch_no for m in [*e, *gone]} == {
        e[0]: 0, e[1]: 0, gone[0]: None, e[2]: 1, e[3]: 1, gone[1]: None, e[4]: 2, e[5]: 2}
    assert (preview.batches, preview.batch_size, preview.eligible) == (3, 2, 6)


def test_batches_grow_instead_of_multiplying(db: psycopg.Connection, loyalty: SeededProgram, uploads: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "MAX_BATCHES", 2)
    eligible = eligible_ids(db, loyalty)[:40]
    campaign_id, preview = resolve(db, loyalty, audience="csv", batch_size=15,
                                   csv_path=write_csv(uploads, eligible))
    batches = [recipients(db, campaign_id)[m].batch_no for m in eligible]
    assert batches == [0] * 20 + [1] * 20
    assert (preview.batches, preview.batch_size) == (2, 20)


def test_resolving_again_before_sending_gives_the_same_rows(db: psycopg.Connection,
                                                            loyalty: SeededProgram) -> None:
    campaign_id, first = resolve(db, loyalty, batch_size=50)
    before = recipients(db, campaign_id)

    second = audience.resolve(db, campaign_id)

    assert recipients(db, campaign_id) == before
    assert second == first
    assert row_count(db, campaign_id) == loyalty.active


def test_resolving_again_before_sending_sees_new_data(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    campaign_id, first = resolve(db, loyalty)
    member = eligible_ids(db, loyalty)[0]
    set_pass(db, loyalty, member, opted_out=True)

    second = audience.resolve(db, campaign_id)

    assert recipients(db, campaign_id)[member].reason == "opted_out"
    assert second.eligible == first.eligible - 1


def test_once_sending_started_the_recipients_are_kept(db: psycopg.Connection, loyalty: SeededProgram) -> None:
    campaign_id, first = resolve(db, loyalty)
    eligible = eligible_ids(db, loyalty)
    db.execute("UPDATE push_campaign_recipients SET status = 'SENT', sent_at = now()"
               " WHERE campaign_id = %s AND member_id = %s", (campaign_id, eligible[0]))
    before = recipients(db, campaign_id)
    set_pass(db, loyalty, eligible[1], opted_out=True)

    again = audience.resolve(db, campaign_id)

    assert recipients(db, campaign_id) == before
    assert again.targeted == first.targeted and again.eligible == first.eligible


def test_resolve_on_a_transactional_connection(migrated_database_url: str, db: psycopg.Connection,
                                               loyalty: SeededProgram) -> None:
    """The task opens a plain (not autocommit) connection: the result is committed, not left pending."""
    campaign_id = create(db, loyalty, audience="segment", segment="whale")
    with psycopg.connect(migrated_database_url) as conn:
        preview = audience.resolve(conn, campaign_id)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    expected = {m for m, row in members(db, loyalty.program_id).items()
                if row["status"] == "ACTIVE" and row["points_balance"] > 500}
    assert set(recipients(db, campaign_id)) == expected
    assert preview.targeted == len(expected)


@pytest.mark.parametrize("source", ["all_active", "whale", "sql", "csv", "test_recipients"])
def test_the_fill_counts_the_ids_it_wrote(migrated_database_url: str, loyalty: SeededProgram, uploads: Path,
                                          source: str) -> None:
    """The resolution sizes batches on this count instead of counting the audience table again."""
    with psycopg.connect(migrated_database_url) as conn:
        ids = eligible_ids(conn, loyalty)[:7]
        conn.commit()
        conf: dict[str, Any] = {
            "all_active": {"audience": "all_active"},
            "whale": {"audience": "segment", "segment": "whale", "segment_params": {"min_points": 100}},
            "sql": {"audience": "sql",
                    "sql": f"SELECT unnest(ARRAY['{ids[0]}', '{ids[1]}', '{ids[0]}', 'NOPE']) AS member_id"},
            "csv": {"audience": "csv", "csv_path": write_csv(uploads, ["member_id", *ids, ids[2], "NOPE"])},
            "test_recipients": {"test_recipients": [ids[3], ids[3], ids[4]]},
        }[source]
        spec = parse_conf({"program_id": loyalty.program_id, "name": "n", "message": "m", **conf})

        filled = audience.fill_audience(conn, spec)

        written = conn.execute("SELECT count(*) FROM pp_audience").fetchone()[0]  # type: ignore[index]
        assert filled.requested == written > 0
        assert filled.duplicates == (1 if source == "csv" else 0)  # test sends are de-duplicated by the conf
        if source == "sql":
            assert written == 3  # the admin's repeats are removed


def test_segment_limits_do_not_outlive_the_segment_query(migrated_database_url: str, loyalty: SeededProgram,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "DEFAULT_SQL_TIMEOUT_MS", 4321)
    spec = parse_conf({"program_id": loyalty.program_id, "name": "n", "message": "m",
                       "audience": "segment", "segment": "whale"})
    with psycopg.connect(migrated_database_url) as conn:
        default_timeout = conn.execute("SHOW statement_timeout").fetchone()
        user = conn.execute("SELECT current_user").fetchone()
        conn.commit()

        audience.fill_audience(conn, spec)

        assert conn.execute("SELECT count(*) FROM pp_audience").fetchone()[0] > 0  # type: ignore[index]
        assert conn.execute("SHOW statement_timeout").fetchone() == default_timeout
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
        assert conn.execute("SELECT current_user").fetchone() == user


# ---- custom SQL is contained ---------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "value"), [("search_path", "pg_temp"), ("statement_timeout", "200"),
                                              ("default_transaction_read_only", "on")])
def test_custom_sql_that_changes_session_settings_is_refused_and_they_are_undone(
        migrated_database_url: str, loyalty: SeededProgram, setting: str, value: str) -> None:
    """set_config(..., false) outlives the segment's transaction and its SECURITY DEFINER function: it
    would change how the resolution that follows on the same connection reads the tables."""
    query = f"SELECT external_id AS member_id FROM passes_master WHERE set_config('{setting}', '{value}', false) > ''"
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        before = conn.execute(f"SHOW {setting}").fetchone()
        campaign_id = create(conn, loyalty, audience="sql", sql=query)

        with pytest.raises(AudienceError, match=rf"the custom segment SQL changes settings \({setting}\)"):
            audience.resolve(conn, campaign_id)

        assert conn.execute(f"SHOW {setting}").fetchone() == before
        assert row_count(conn, campaign_id) == 0


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("DELETE FROM passes_master", "not a single SELECT"),
        ("UPDATE passes_master SET points_balance = 0 RETURNING external_id AS member_id",
         "not a single SELECT"),
        ("DROP TABLE passes_master", "not a single SELECT"),
        ("TRUNCATE passes_master CASCADE", "not a single SELECT"),
        ("SELECT external_id AS member_id FROM passes_master; DELETE FROM passes_master",
         "not a single SELECT"),
        ("WITH gone AS (DELETE FROM passes_master RETURNING external_id)"
         " SELECT external_id AS member_id FROM gone", "data-modifying statement"),
        # Closing the sub-select by hand to run statements of its own.
        ("SELECT 'x' AS member_id) AS s LIMIT 0; COMMIT; DELETE FROM passes_master;"
         " SELECT * FROM (SELECT 'x' AS member_id", "not a single SELECT"),
        ("SELECT external_id AS member_id FROM passes_master FOR UPDATE", "tries to write"),
        ("SELECT set_config('transaction_read_only', 'off', true) AS member_id", "the custom segment SQL"),
        ("SELECT external_id AS id, status FROM passes_master",
         r"must return a member_id column \(got id, status\)"),
        ("SELECT FROM passes_master", r"must return a member_id column \(got no columns\)"),
        ("SELECT member_id FROM no_such_table", "failed: relation \"no_such_table\" does not exist"),
        (";", "the segment SQL is empty"),
    ],
)
def test_custom_sql_refusals_leave_no_rows_and_no_damage(db: psycopg.Connection, loyalty: SeededProgram,
                                                         query: str, error: str) -> None:
    before = members(db, loyalty.program_id)
    campaign_id = create(db, loyalty, audience="sql", sql=query)

    with pytest.raises(AudienceError, match=error):
        audience.resolve(db, campaign_id)

    assert row_count(db, campaign_id) == 0
    assert members(db, loyalty.program_id) == before


@pytest.mark.parametrize("query", [
    "SELECT external_id AS member_id FROM passes_master WHERE lo_create(0) > 0",
    "SELECT lo_from_bytea(0, 'kept')::text AS member_id",
])
def test_custom_sql_that_writes_large_objects_is_refused_and_leaves_none(db: psycopg.Connection,
                                                                        loyalty: SeededProgram, query: str) -> None:
    """A READ ONLY transaction still lets lo_create() and friends write; the segment must not."""
    count = "SELECT count(*) FROM pg_largeobject_metadata"
    before = db.execute(count).fetchone()[0]
    campaign_id = create(db, loyalty, audience="sql", sql=query)

    with pytest.raises(AudienceError, match="tries to write"):
        audience.resolve(db, campaign_id)

    assert row_count(db, campaign_id) == 0
    assert db.execute(count).fetchone()[0] == before


def test_slow_custom_sql_is_cancelled(db: psycopg.Connection, loyalty: SeededProgram,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "DEFAULT_SQL_TIMEOUT_MS", 300)
    campaign_id = create(db, loyalty, audience="sql", sql="SELECT pg_sleep(10)::text AS member_id")
    started = datetime.now()

    with pytest.raises(AudienceError, match=r"took longer than 0.3 s and was cancelled"):
        audience.resolve(db, campaign_id)

    assert datetime.now() - started < timedelta(seconds=5)
    assert row_count(db, campaign_id) == 0
    # The timeout belonged to the segment query only: this connection still runs long statements.
    assert db.execute("SELECT 1 FROM pg_sleep(0.5)").fetchone() == (1,)


# ---- messages that render too long ----------------------------------------------------------------


@pytest.mark.parametrize("message", ["Double points this weekend!\nShow your card, {first_name|friend}",
                                     "Hi {first_name|there},\r\n{points} points waiting",
                                     "{points} points\nEXPLAIN ANALYZE --"])
def test_a_message_on_several_lines_is_rendered_as_text(db: psycopg.Connection, loyalty: SeededProgram,
                                                        message: str) -> None:
    member = eligible_ids(db, loyalty)[0]
    campaign_id, preview = resolve(db, loyalty, audience="sql", sql=f"SELECT '{member}' AS member_id",
                                   message=message)
    everyone = members(db, loyalty.program_id)
    expected = parse_template(message).render({"points": everyone[member]["points_balance"],
                                                "first_name": everyone[member]["first_name"]})
    assert recipients(db, campaign_id)[member].rendered == expected
    assert preview.eligible == 1


def test_message_too_long_for_one_member_names_them_and_leaves_no_rows(db: psycopg.Connection,
                                                                      loyalty: SeededProgram) -> None:
    member = eligible_ids(db, loyalty)[3]
    set_first_name(db, loyalty, member, "Bartholomew" * 15)
    campaign_id = create(db, loyalty, message="Hi {first_name|there}, {points} points waiting!")

    with pytest.raises(MessageError, match=rf"renders to \d+ characters for member {member} .*over the limit "
                                           r"of 160.*max_message_length"):
        audience.resolve(db, campaign_id)

    assert row_count(db, campaign_id) == 0


def test_long_rendering_of_a_skipped_member_is_not_an_error(db: psycopg.Connection,
                                                            loyalty: SeededProgram) -> None:
    member = eligible_ids(db, loyalty)[3]
    set_first_name(db, loyalty, member, "Bartholomew" * 15)
    set_pass(db, loyalty, member, opted_out=True)
    campaign_id, preview = resolve(db, loyalty, message="Hi {first_name|there}, {points} points waiting!",
                                   max_message_length=40)
    assert recipients(db, campaign_id)[member].reason == "opted_out"
    assert preview.eligible == loyalty.eligible_apple + loyalty.eligible_google - 1


# ---- where a campaign's rows go (migration 033) -----------------------------------------------------


def test_a_later_campaigns_rows_sort_after_an_earlier_campaigns_rows(db: psycopg.Connection,
                                                                      loyalty: SeededProgram) -> None:
    earlier, _ = resolve(db, loyalty)
    db.execute("SELECT pg_sleep(0.002)")
    later, _ = resolve(db, loyalty)
    assert uuid.UUID(later).version == 7
    # the right edge of the primary key (campaign_id, member_id), where inserts split no page in half
    newest = db.execute("SELECT campaign_id::text FROM push_campaign_recipients"
                        " WHERE campaign_id = ANY(%s::uuid[]) ORDER BY campaign_id DESC LIMIT 1",
                        ([earlier, later],)).fetchone()[0]
    assert newest == later


# ---- a transaction-mode pooler between passpush and the loyalty database ---------------------------


class TransactionPooler:
    """One client connection whose transactions run on server sessions in `schedule` order, as PgBouncer's
    pool_mode=transaction (Supabase's pooler on port 6543) hands them out while other clients are busy."""

    def __init__(self, sessions: list[psycopg.Connection], schedule: list[int]) -> None:
        self._sessions, self._schedule = sessions, list(schedule)

    @property
    def _conn(self) -> psycopg.Connection:
        return self._sessions[self._schedule[0]]

    def _next(self) -> None:
        if len(self._schedule) > 1:
            self._schedule.pop(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def commit(self) -> None:
        self._conn.commit()
        self._next()

    def rollback(self) -> None:
        self._conn.rollback()
        self._next()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        outermost = self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            with self._conn.transaction() as tx:
                yield tx
        finally:
            if outermost:
                self._next()


def test_an_audience_table_from_another_session_is_refused(db: psycopg.Connection, migrated_database_url: str,
                                                           loyalty: SeededProgram) -> None:
    """Through a transaction-mode pooler the resolution read another session's leftover pp_audience and
    targeted its members instead of the campaign's, without a word."""
    first, other = eligible_ids(db, loyalty)[:2]
    campaign_id = create(db, loyalty, test_recipients=[first])
    with psycopg.connect(migrated_database_url) as s0, psycopg.connect(migrated_database_url) as s1:
        s1.execute("CREATE TEMP TABLE pp_audience (member_id text NOT NULL)")  # an earlier resolution's
        s1.execute("INSERT INTO pp_audience VALUES (%s)", (other,))
        s1.commit()
        pooled = TransactionPooler([s0, s1], schedule=[0, 0, 0, 1])  # created and filled on s0, read on s1

        with pytest.raises(AudienceError, match=r"transaction-mode pooler .* session mode"):
            audience.resolve(pooled, campaign_id)  # type: ignore[arg-type]

    assert other not in recipients(db, campaign_id)


def test_an_audience_table_missing_in_the_next_session_names_the_pooler(
        db: psycopg.Connection, migrated_database_url: str, loyalty: SeededProgram) -> None:
    campaign_id = create(db, loyalty, test_recipients=eligible_ids(db, loyalty)[:1])
    with psycopg.connect(migrated_database_url) as s0, psycopg.connect(migrated_database_url) as s1:
        pooled = TransactionPooler([s0, s1], schedule=[0, 0, 1])  # created on s0, filled on s1

        with pytest.raises(AudienceError, match=r"transaction-mode pooler .* session mode"):
            audience.resolve(pooled, campaign_id)  # type: ignore[arg-type]
