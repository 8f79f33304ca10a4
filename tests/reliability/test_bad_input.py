"""Bad input is refused before any push: the campaign ends FAILED (or, for a bad conf, is never created)
with a message naming the problem, and not one request reaches PassKit.

A representative case of each kind runs through the whole DAG (``dag.test()``); the rest through the
same ``passpush.tasks`` functions the DAG's tasks call.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from passpush import audience, tasks
from passpush.emulator.control import EmulatorControl
from passpush.errors import PassPushError
from passpush.seed import SeededProgram
from reliability.invariants import assert_invariants
from reliability.support import DAG_ID, conf_for

pytestmark = [pytest.mark.reliability, pytest.mark.postgres, pytest.mark.emulator]

# Taking the session user back, then reading at run time (query_to_xml checks privileges when it runs).
ESCAPE_ROLE = ("SELECT query_to_xml('SELECT rolname FROM pg_authid', false, false, '')::text AS member_id"
               " FROM (SELECT set_config('role', {!r}, true)) AS s")


@pytest.fixture
def loyalty(seed_loyalty: Callable[..., SeededProgram], emulator_control: EmulatorControl) -> SeededProgram:
    """A small program in Postgres; the emulator is reset, so every request it counts came from the test."""
    return seed_loyalty(60)


def _fingerprint(db: psycopg.Connection) -> tuple[Any, ...]:
    """What a segment must never change: the loyalty tables and the campaign history."""
    row = db.execute("SELECT (SELECT count(*) FROM passes_master), (SELECT count(*) FROM users),"
                     " (SELECT count(*) FILTER (WHERE opted_out) FROM passes_master),"
                     " (SELECT sum(points_balance) FROM passes_master),"
                     " (SELECT count(*) FROM push_campaigns)").fetchone()
    assert row is not None
    return tuple(row)


def _refused_at_resolve(url: str, db: psycopg.Connection, control: EmulatorControl, program: SeededProgram,
                        expected: str, **conf: Any) -> None:
    campaign_id = tasks.create_campaign(conf_for(program, **conf), dag_id=DAG_ID, run_id=str(uuid.uuid4()),
                                        conninfo=url)
    with pytest.raises(PassPushError, match=expected):
        tasks.resolve_audience(campaign_id, conninfo=url)
    checked = assert_invariants(db, control, campaign_id)
    assert checked.campaign["status"] == "FAILED"
    assert re.search(expected, checked.campaign["abort_reason"]), checked.campaign["abort_reason"]
    assert checked.by_status == {}
    assert control.stats()["requests_total"] == 0


# ---- CSV --------------------------------------------------------------------------------------------

CSV_CASES = {
    "empty": (b"", "is empty"),
    "header_only": (b"member_id\r\n", "has a header but no member ids"),
    "no_id_column": (b"email,points\nava@example.com,10\n", "has no member id column"),
    "wrong_delimiter": (b"member_id;name\nCUST-0000001;Ava\n", "separated by something other than commas"),
    "not_utf8": ("member_id\nCUST-0000001\nJos\u00e9\n".encode("latin-1"), r"is not UTF-8 \(line 3\)"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "looks binary"),
    "space_in_id": (b"member_id\nCUST 0000001\n", r"line 2: 'CUST 0000001' is not a valid member id"),
    "formula": (b"member_id\n=cmd|' /C calc'!A0\n", "looks like a spreadsheet formula"),
    "formula_plus": (b"+HYPERLINK(\"http://x\")\n", "looks like a spreadsheet formula"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv_is_refused(case: str, migrated_database_url: str, db: psycopg.Connection,
                            emulator_control: EmulatorControl, loyalty: SeededProgram, uploads: Path) -> None:
    content, expected = CSV_CASES[case]
    path = uploads / f"{case}.csv"
    path.write_bytes(content)
    _refused_at_resolve(migrated_database_url, db, emulator_control, loyalty, expected,
                        audience="csv", csv_path=str(path))


def test_fifty_megabytes_of_junk_are_refused_unread(migrated_database_url: str, db: psycopg.Connection,
                                                    emulator_control: EmulatorControl, loyalty: SeededProgram,
                                                    uploads: Path) -> None:
    path = uploads / "junk.csv"
    with path.open("wb") as handle:
        chunk = b"CUST-0000001,=1+1,\xff\xfe junk\n" * 32_768
        while handle.tell() < 50 * 1024 * 1024:
            handle.write(chunk)
    _refused_at_resolve(migrated_database_url, db, emulator_control, loyalty, "over the 32 MB limit",
                        audience="csv", csv_path=str(path))


@pytest.mark.parametrize("where", ["/etc/passwd", "{uploads}/../outside.csv", "file:///etc/hostname"])
def test_csv_outside_the_upload_folder_is_refused(where: str, migrated_database_url: str, db: psycopg.Connection,
                                                  emulator_control: EmulatorControl, loyalty: SeededProgram,
                                                  uploads: Path) -> None:
    (uploads.parent / "outside.csv").write_text("member_id\nCUST-0000001\n")
    _refused_at_resolve(migrated_database_url, db, emulator_control, loyalty, "outside the upload folder",
                        audience="csv", csv_path=where.format(uploads=uploads))


# ---- segment SQL ------------------------------------------------------------------------------------

SQL_CASES = {
    "delete": ("DELETE FROM passes_master", "not a single SELECT"),
    "update": ("UPDATE passes_master SET opted_out = true RETURNING external_id AS member_id",
               "not a single SELECT"),
    "drop": ("DROP TABLE push_campaigns", "not a single SELECT"),
    "two_statements": ("SELECT external_id AS member_id FROM passes_master; SELECT 'x' AS member_id",
                       "not a single SELECT"),
    "statement_after_select": ("SELECT external_id AS member_id FROM passes_master; DELETE FROM users",
                               "not a single SELECT"),
    "no_member_id": ("SELECT id, status FROM passes_master", r"must return a member_id column \(got id, status\)"),
    "campaign_history": ("SELECT name AS member_id FROM push_campaigns", "segment role may not"),
    "recipients": ("SELECT member_id FROM push_campaign_recipients", "segment role may not"),
    "pg_authid": ("SELECT rolname AS member_id FROM pg_authid", "segment role may not"),
    "server_file": ("SELECT pg_read_file('/etc/passwd') AS member_id", "segment role may not"),
    "large_object": ("SELECT lo_import('/etc/passwd')::text AS member_id", "custom segment SQL"),
    "set_role_back": (ESCAPE_ROLE.format("none"), "cannot set parameter \"role\""),
    "set_role_superuser": (ESCAPE_ROLE.format("postgres"), "cannot set parameter \"role\""),
    "write_mode": ("SELECT set_config('transaction_read_only', 'off', true) AS member_id", "custom segment SQL"),
}


@pytest.mark.parametrize("case", sorted(SQL_CASES))
def test_bad_segment_sql_is_refused_and_changes_nothing(case: str, migrated_database_url: str,
                                                        db: psycopg.Connection, emulator_control: EmulatorControl,
                                                        loyalty: SeededProgram) -> None:
    query, expected = SQL_CASES[case]
    before = _fingerprint(db)
    _refused_at_resolve(migrated_database_url, db, emulator_control, loyalty, expected, audience="sql", sql=query)
    assert _fingerprint(db)[:4] == before[:4]


def test_a_segment_that_would_run_for_an_hour_is_cancelled(migrated_database_url: str, db: psycopg.Connection,
                                                           emulator_control: EmulatorControl,
                                                           loyalty: SeededProgram,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "DEFAULT_SQL_TIMEOUT_MS", 1000)  # 30 s in production
    _refused_at_resolve(migrated_database_url, db, emulator_control, loyalty, "took longer than 1 s",
                        audience="sql", sql="SELECT pg_sleep(3600)::text AS member_id")


def test_injection_through_a_list_parameter_is_only_a_value(migrated_database_url: str, db: psycopg.Connection,
                                                            emulator_control: EmulatorControl,
                                                            loyalty: SeededProgram) -> None:
    before = _fingerprint(db)
    zips = ["90210'); DROP TABLE users; --", "' OR '1'='1", "00000\x27||pg_sleep(5)||\x27"]
    campaign_id = tasks.create_campaign(conf_for(loyalty, audience="segment", segment="local",
                                                 segment_params={"zips": zips}),
                                        dag_id=DAG_ID, run_id=str(uuid.uuid4()), conninfo=migrated_database_url)
    preview = tasks.resolve_audience(campaign_id, conninfo=migrated_database_url)

    assert preview["targeted"] == 0  # bound as values: no ZIP code is spelled like that
    assert _fingerprint(db)[:4] == before[:4]
    assert emulator_control.stats()["requests_total"] == 0


# ---- message and conf -------------------------------------------------------------------------------

CONF_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown_placeholder": ({"message": "Hi {frist_name}!"}, r"unknown placeholder \{frist_name\}"),
    "empty_message": ({"message": "   "}, "the message is empty"),
    "no_message": ({"message": None}, "the message is empty"),
    "nul_in_message": ({"message": "Hi\x00 {points}"}, r"the message contains a NUL character \(\\x00\)"),
    "too_long": ({"message": "x" * 161}, "161 characters before personalisation, over the limit of 160"),
    "absurd_length_limit": ({"max_message_length": 1_000_000}, "max_message_length must be between 1 and 2000"),
    "unknown_program": ({"program_id": str(uuid.uuid4())}, "unknown program"),
    "program_not_a_uuid": ({"program_id": "1; DROP TABLE programs"}, "program_id must be the UUID"),
    "negative_rate": ({"rate_limit_per_second": -5}, "rate_limit_per_second must be between"),
    "zero_rate": ({"rate_limit_per_second": 0}, "rate_limit_per_second must be between"),
    "absurd_rate": ({"rate_limit_per_second": 1e9}, "rate_limit_per_second must be between"),
    "rate_not_a_number": ({"rate_limit_per_second": "fast"}, "rate_limit_per_second must be a number"),
    "rate_checkbox": ({"rate_limit_per_second": True}, "rate_limit_per_second must be a number"),
    "zero_batch": ({"batch_size": 0}, "batch_size must be between 1 and 100000"),
    "negative_batch": ({"batch_size": -10}, "batch_size must be between 1 and 100000"),
    "absurd_batch": ({"batch_size": 10**9}, "batch_size must be between 1 and 100000"),
    "fractional_batch": ({"batch_size": 2.5}, "batch_size must be a whole number"),
    "batch_injection": ({"batch_size": "100; DROP TABLE users"}, "batch_size must be a whole number"),
    "unknown_audience": ({"audience": "everyone"}, "unknown audience 'everyone'"),
    "unknown_segment": ({"audience": "segment", "segment": "vip"}, "needs segment set to one of"),
    "sql_without_sql": ({"audience": "sql"}, "needs sql"),
    "csv_without_path": ({"audience": "csv", "csv_path": " "}, "needs csv_path"),
    "param_injection": ({"audience": "segment", "segment": "slumber", "segment_params": {"days": "30; DROP TABLE"}},
                        "parameter 'days' must be a int"),
    "negative_param": ({"audience": "segment", "segment": "slumber", "segment_params": {"days": -5}},
                       "parameter 'days' must be 0 or more"),
    "param_retargets_program": ({"audience": "segment", "segment": "whale",
                                 "segment_params": {"program_id": str(uuid.uuid4())}}, "has no parameter program_id"),
    "negative_confirmation": ({"confirm_recipients": -1}, "confirm_recipients must be at least 0"),
    "absurd_holdout": ({"holdout_percent": 90}, "holdout_percent must be between 0 and 50"),
    "no_name": ({"name": " "}, "name is empty"),
    "null_test_recipient": ({"test_recipients": ["CUST-0000001", None]}, "test_recipients must hold member ids"),
}


@pytest.mark.parametrize("case", sorted(CONF_CASES))
def test_bad_conf_never_creates_a_campaign(case: str, migrated_database_url: str, db: psycopg.Connection,
                                           emulator_control: EmulatorControl, loyalty: SeededProgram) -> None:
    changes, expected = CONF_CASES[case]
    run_id = str(uuid.uuid4())
    with pytest.raises(PassPushError, match=expected):
        tasks.create_campaign(conf_for(loyalty, **changes), dag_id=DAG_ID, run_id=run_id,
                              conninfo=migrated_database_url)
    assert db.execute("SELECT count(*) FROM push_campaigns WHERE dag_run_id = %s", (run_id,)).fetchone() == (0,)
    assert emulator_control.stats()["requests_total"] == 0


# ---- through the DAG --------------------------------------------------------------------------------


def _latest_campaign(db: psycopg.Connection, program: SeededProgram) -> str | None:
    row = db.execute("SELECT id::text FROM push_campaigns WHERE program_id = %s ORDER BY created_at DESC LIMIT 1",
                     (program.program_id,)).fetchone()
    return row[0] if row else None


@pytest.mark.airflow
@pytest.mark.parametrize(("case", "conf", "expected"), [
    ("csv_outside_uploads", {"audience": "csv", "csv_path": "/etc/passwd"}, "outside the upload folder"),
    ("sql_delete", {"audience": "sql", "sql": "DELETE FROM passes_master"}, "not a single SELECT"),
    ("sql_forbidden_table", {"audience": "sql", "sql": "SELECT name AS member_id FROM push_campaigns"},
     "segment role may not"),
])
def test_bad_audience_through_the_dag_fails_the_campaign_before_any_push(
        case: str, conf: dict[str, Any], expected: str, run_dag: Callable[[dict[str, Any]], Any],
        db: psycopg.Connection, emulator_control: EmulatorControl, loyalty: SeededProgram, uploads: Path) -> None:
    dag_run = run_dag(conf_for(loyalty, max_recipients=1000, **conf))

    assert str(dag_run.state) == "failed"
    assert str(dag_run.get_task_instance("resolve_audience").state) == "failed"
    campaign_id = _latest_campaign(db, loyalty)
    assert campaign_id is not None
    checked = assert_invariants(db, emulator_control, campaign_id)
    assert checked.campaign["status"] == "FAILED"
    assert expected in checked.campaign["abort_reason"]
    assert emulator_control.stats()["requests_total"] == 0


@pytest.mark.airflow
def test_bad_message_through_the_dag_creates_no_campaign(run_dag: Callable[[dict[str, Any]], Any],
                                                        push_campaign_dag: Any, db: psycopg.Connection,
                                                        emulator_control: EmulatorControl,
                                                        loyalty: SeededProgram) -> None:
    # reconcile (trigger rule all_done) then runs without a campaign id and fails with a plain error, so
    # Airflow retries it twice, 10 s apart (reported): no need to wait for those retries here.
    push_campaign_dag.get_task("reconcile").retry_delay = timedelta(0)
    dag_run = run_dag(conf_for(loyalty, message="Hi {frist_name}, {points} points!", max_recipients=1000))

    assert str(dag_run.state) == "failed"
    assert str(dag_run.get_task_instance("create_campaign").state) == "failed"
    assert _latest_campaign(db, loyalty) is None
    assert emulator_control.stats()["requests_total"] == 0
