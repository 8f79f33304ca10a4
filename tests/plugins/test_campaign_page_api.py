"""The campaign page's API against real Postgres, inside Airflow's own API-server app.

The preview must be the DAG's dry run (compared with ``passpush.tasks.create_campaign`` +
``resolve_audience`` for the same conf); uploads must be stored safely and refused when they are
not member-id CSVs; a launch must be a ``push_campaign`` run carrying the confirmed count; the
history and detail must say what the recipient table says.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient

from passpush import tasks
from passpush.campaign_page.settings import PREVIEW_DAG_ID, UPLOAD_SUBDIR, URL_PREFIX
from passpush.seed import SeededProgram

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]

API = f"{URL_PREFIX}/api"
MESSAGE = "Hi {first_name|there}, {points} points waiting!"


@pytest.fixture
def program(seed_loyalty: Callable[..., SeededProgram]) -> SeededProgram:
    return seed_loyalty(240)


def _form(program: SeededProgram, **extra: Any) -> dict[str, Any]:
    return {"program_id": program.program_id, "name": "Page test", "message": MESSAGE, **extra}


def _dry_run_preview(conf: dict[str, Any], conninfo: str) -> dict[str, Any]:
    """The preview the DAG's first two tasks store on the campaign for this conf as a dry run."""
    campaign_id = tasks.create_campaign({**conf, "dry_run": True}, dag_id="dry_run_reference",
                                        run_id=uuid.uuid4().hex, conninfo=conninfo)
    counts = tasks.resolve_audience(campaign_id, conninfo=conninfo)  # what goes to XCom
    with psycopg.connect(conninfo) as conn:
        (stored,) = conn.execute("SELECT preview FROM push_campaigns WHERE id = %s", (campaign_id,)).fetchone()
    assert counts.items() <= stored.items()
    return stored


def _member_ids(db: psycopg.Connection, program: SeededProgram, limit: int) -> list[str]:
    return [r[0] for r in db.execute("SELECT external_id FROM passes_master WHERE program_id = %s"
                                     " ORDER BY external_id LIMIT %s", (program.program_id, limit))]


def _upload(client: TestClient, content: bytes, name: str = "members.csv",
            content_type: str = "text/csv") -> Any:
    return client.post(f"{API}/uploads", files={"file": (name, content, content_type)})


# ------------------------------------------------------------------ reference data


def test_programs_list_the_seeded_program_with_its_active_passes(marketing: TestClient,
                                                                 program: SeededProgram) -> None:
    response = marketing.get(f"{API}/programs")

    assert response.status_code == 200
    listed = {p["id"]: p for p in response.json()}
    assert listed[program.program_id]["active_members"] == program.active
    assert listed[program.program_id]["name"]


def test_segments_are_the_built_in_ones_with_their_parameters(marketing: TestClient) -> None:
    segments = {s["name"]: s for s in marketing.get(f"{API}/segments").json()}

    assert set(segments) == {"slumber", "whale", "local"}
    assert segments["whale"]["params"] == [{"name": "min_points", "type": "int", "default": 500,
                                            "description": "Points balance above which a member counts"}]
    assert segments["local"]["params"][0]["default"] == ["90210"]
    assert all(s["description"] for s in segments.values())


def test_session_says_who_is_signed_in_and_what_they_may_do(marketing: TestClient) -> None:
    session = marketing.get(f"{API}/session").json()

    assert session["user"] == "marketing"
    assert session["can_launch"] is True
    assert session["dag"] == {"known": True, "paused": session["dag"]["paused"]}
    assert session["max_message_length"] > 0


# ------------------------------------------------------------------ preview


@pytest.mark.parametrize("audience", [
    {"audience": "all_active"},
    {"audience": "segment", "segment": "whale", "segment_params": {"min_points": 300}},
    {"audience": "segment", "segment": "local", "segment_params": {"zips": ["90210", "10001"]}},
], ids=["all_active", "whale", "local"])
def test_preview_is_the_dag_dry_run_of_the_same_conf(
        marketing: TestClient, program: SeededProgram, migrated_database_url: str,
        audience: dict[str, Any]) -> None:
    form = _form(program, **audience)

    response = marketing.post(f"{API}/preview", json=form)

    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview == _dry_run_preview(form, migrated_database_url)
    assert preview["eligible"] == preview["will_buzz_iphone"] + preview["will_update_google"] > 0
    assert preview["samples"] and all("{" not in s["message"] for s in preview["samples"])
    if audience["audience"] == "all_active":
        assert preview["will_buzz_iphone"] == program.eligible_apple
        assert preview["will_update_google"] == program.eligible_google


def test_preview_of_an_uploaded_csv_is_the_dag_dry_run(
        marketing: TestClient, program: SeededProgram, db: psycopg.Connection, migrated_database_url: str) -> None:
    ids = _member_ids(db, program, 30)
    content = ("Member ID\r\n" + "\r\n".join([*ids, ids[0], "NOT-A-MEMBER-1"]) + "\r\n").encode()
    stored = _upload(marketing, content).json()
    form = _form(program, audience="csv", csv_path=stored["csv_path"])

    preview = marketing.post(f"{API}/preview", json=form).json()

    assert preview == _dry_run_preview(form, migrated_database_url)
    assert preview["targeted"] == 31
    assert preview["duplicates_in_input"] == 1
    assert preview["skipped"]["unknown_member"] == 1
    assert preview["unknown_sample"] == ["NOT-A-MEMBER-1"]


def test_previews_leave_no_campaign_behind(marketing: TestClient, program: SeededProgram,
                                           db: psycopg.Connection) -> None:
    assert marketing.post(f"{API}/preview", json=_form(program)).status_code == 200
    assert marketing.post(f"{API}/preview", json=_form(program, message="{nope}")).status_code == 422

    left = db.execute("SELECT count(*) FROM push_campaigns WHERE dag_id = %s", (PREVIEW_DAG_ID,)).fetchone()
    assert left == (0,)
    history = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id}).json()
    assert history["campaigns"] == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"program_id": "not-a-uuid"}, "program_id must be the UUID"),
    ({"program_id": str(uuid.UUID(int=7))}, "unknown program"),
    ({"message": ""}, "message"),
    ({"message": "Hello {favourite_colour}"}, "favourite_colour"),
    ({"message": "x" * 400}, "160"),
    ({"audience": "segment", "segment": "everyone"}, "segment"),
    ({"audience": "segment", "segment": "whale", "segment_params": {"min_points": "lots"}}, "min_points"),
    ({"audience": "segment", "segment": "whale", "segment_params": {"days": 3}}, "days"),
    ({"audience": "csv"}, "upload a CSV"),
    ({"audience": "csv", "csv_path": "/etc/passwd"}, "not a file uploaded through this page"),
    ({"audience": "csv", "csv_path": f"../../{UPLOAD_SUBDIR}/../../../etc/hosts.csv"}, "not a file uploaded"),
    ({"audience": "sql"}, "audience"),
    ({"surprise": True}, "surprise"),
], ids=["program-not-uuid", "program-unknown", "message-empty", "placeholder-unknown", "message-too-long",
        "segment-unknown", "segment-param-type", "segment-param-unknown", "csv-missing", "csv-outside",
        "csv-traversal", "sql-not-offered", "unknown-field"])
def test_preview_refuses_a_bad_form_with_a_message_that_names_the_problem(
        marketing: TestClient, program: SeededProgram, change: dict[str, Any], expected: str) -> None:
    response = marketing.post(f"{API}/preview", json=_form(program, **change))

    assert response.status_code == 422, response.text
    assert expected in str(response.json()["detail"])


def test_preview_refuses_a_csv_stored_elsewhere_in_the_upload_folder(
        marketing: TestClient, program: SeededProgram, page_env: Path) -> None:
    page_env.mkdir(parents=True)
    other = page_env / "someone-elses.csv"
    other.write_text("member_id\nCUST-0000001\n")

    response = marketing.post(f"{API}/preview", json=_form(program, audience="csv", csv_path=str(other)))

    assert response.status_code == 422
    assert "not a file uploaded through this page" in response.json()["detail"]


# ------------------------------------------------------------------ uploads


def test_an_upload_is_validated_stored_under_a_generated_name_and_kept(marketing: TestClient,
                                                                        page_env: Path) -> None:
    content = b"\xef\xbb\xbfmember_id,email\r\nA-1,a@x\r\nB-2,b@x\r\nA-1,a@x\r\n"

    response = _upload(marketing, content, name="Spring list (final).csv")

    assert response.status_code == 201, response.text
    stored = response.json()
    path = Path(stored["csv_path"])
    assert path.parent == page_env.resolve() / UPLOAD_SUBDIR
    assert path.name.endswith("-spring-list-final.csv") and path.name != "Spring list (final).csv"
    assert path.read_bytes() == content
    assert (stored["ids"], stored["distinct"], stored["duplicates"]) == (3, 2, 1)
    assert stored["sample"] == ["A-1", "B-2", "A-1"]
    assert stored["filename"] == "Spring list (final).csv"


def test_two_uploads_of_the_same_name_never_overwrite(marketing: TestClient) -> None:
    first = _upload(marketing, b"A-1\n").json()["csv_path"]
    second = _upload(marketing, b"B-2\n").json()["csv_path"]

    assert first != second
    assert Path(first).read_bytes() == b"A-1\n"


@pytest.mark.parametrize("name", ["../../../../tmp/evil.csv", "..\\..\\evil.csv", "/etc/cron.d/x.csv",
                                  "sub/dir/../../x.csv"])
def test_a_file_name_cannot_choose_where_the_upload_goes(marketing: TestClient, page_env: Path,
                                                         name: str) -> None:
    response = _upload(marketing, b"member_id\nA-1\n", name=name)

    assert response.status_code == 201, response.text
    path = Path(response.json()["csv_path"])
    assert path.parent == page_env.resolve() / UPLOAD_SUBDIR
    assert ".." not in path.name and "/" not in path.name
    assert [p for p in page_env.rglob("*") if p.is_file()] == [path]


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "empty"),
    (b"member_id\n", "no member ids"),
    (b"member_id\n=cmd|' /C calc'!A0\n", "formula"),
    (b"member_id\nA 1\n", "not a valid member id"),
    (b"PK\x03\x04\x00\x00binary", "binary"),
    ("member_id\nJos\u00e9\n".encode("latin-1"), "UTF-8"),
    (b"name,email\nAnn,a@x\n", "no member id column"),
    (b"member_id;email\nA-1;a@x\n", "not a valid member id"),
], ids=["empty", "header-only", "formula", "space", "binary", "latin-1", "no-id-column", "semicolons"])
def test_an_upload_that_is_not_a_member_id_csv_is_refused_and_not_kept(
        marketing: TestClient, page_env: Path, content: bytes, expected: str) -> None:
    response = _upload(marketing, content)

    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert not list(page_env.rglob("*.csv"))


@pytest.mark.parametrize(("name", "content_type"), [
    ("members.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("members.exe", "application/octet-stream"),
    ("members.csv", "image/png"),
    ("members", "text/csv"),
])
def test_an_upload_of_another_type_is_refused(marketing: TestClient, page_env: Path, name: str,
                                              content_type: str) -> None:
    response = _upload(marketing, b"member_id\nA-1\n", name=name, content_type=content_type)

    assert response.status_code == 415, response.text
    assert not page_env.exists()


def test_an_upload_over_the_size_limit_is_refused(marketing: TestClient, page_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSPUSH_UPLOAD_MAX_BYTES", "1000")

    small = _upload(marketing, b"member_id\n" + b"A-1\n" * 200)
    declared_too_big = _upload(marketing, b"member_id\n" + b"ABCDEFGHIJ\n" * 100_000)
    just_over = _upload(marketing, b"member_id\n" + b"A-1\n" * 300)

    assert small.status_code == 201
    assert declared_too_big.status_code == 413
    assert just_over.status_code == 413
    assert "limit" in just_over.json()["detail"]
    assert len(list(page_env.rglob("*.csv"))) == 1


def test_an_upload_is_counted_under_the_limit_it_was_taken_under(marketing: TestClient, program: SeededProgram,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The page and the DAG's CSV reader share one limit: what the page takes, the count reads (and refuses alike)."""
    content = b"member_id\n" + b"CUST-0000001\n" * 100  # 1,310 bytes
    monkeypatch.setenv("PASSPUSH_UPLOAD_MAX_BYTES", "2000")
    stored = _upload(marketing, content).json()
    form = _form(program, audience="csv", csv_path=stored["csv_path"])
    assert marketing.get(f"{API}/session").json()["max_upload_bytes"] == 2000

    counted = marketing.post(f"{API}/preview", json=form)
    monkeypatch.setenv("PASSPUSH_UPLOAD_MAX_BYTES", "1000")
    refused_upload = _upload(marketing, content)
    refused_count = marketing.post(f"{API}/preview", json=form)

    assert counted.status_code == 200, counted.text
    assert refused_upload.status_code == 413
    assert refused_count.status_code == 422
    assert "is over the" in refused_count.json()["detail"]


def test_an_upload_without_a_file_field_is_refused(marketing: TestClient) -> None:
    response = marketing.post(f"{API}/uploads", data={"note": "no file"})

    assert response.status_code == 422
    assert "'file'" in response.json()["detail"]


# ------------------------------------------------------------------ launch


def _dag_run(client: TestClient, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v2/dags/push_campaign/dagRuns/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_launch_triggers_a_push_campaign_run_with_the_confirmed_count(
        marketing: TestClient, admin: TestClient, program: SeededProgram, migrated_database_url: str) -> None:
    preview = marketing.post(f"{API}/preview", json=_form(program)).json()
    form = _form(program, name="Launch test", confirm_recipients=preview["eligible"])

    response = marketing.post(f"{API}/launch", json=form)

    assert response.status_code == 201, response.text
    launched = response.json()
    assert launched["dag_id"] == "push_campaign"
    assert launched["run_url"] == f"/dags/push_campaign/runs/{quote(launched['run_id'], safe='')}"
    run = _dag_run(admin, launched["run_id"])
    assert run["state"] == "queued"
    assert run["triggering_user_name"] == "marketing"
    assert run["conf"] == {"program_id": program.program_id, "name": "Launch test", "message": MESSAGE,
                           "audience": "all_active", "segment_params": {}, "dry_run": False,
                           "confirm_recipients": preview["eligible"]}

    # Until the run's first task creates the campaign row, the history shows the queued run itself.
    history = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id}).json()
    assert [q["run_id"] for q in history["queued_runs"]] == [launched["run_id"]]
    assert history["queued_runs"][0]["name"] == "Launch test"
    assert history["queued_runs"][0]["audience"] == "All Active Members"

    # The DAG's create_campaign, as the scheduler would run it: now it is a campaign of the history.
    tasks.create_campaign(run["conf"], dag_id="push_campaign", run_id=launched["run_id"],
                          conninfo=migrated_database_url)
    history = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id}).json()
    assert history["queued_runs"] == []
    (campaign,) = history["campaigns"]
    assert campaign["name"] == "Launch test"
    assert (campaign["status"], campaign["run_state"]) == ("PENDING", "queued")
    assert campaign["run_url"] == launched["run_url"]


def test_launch_passes_the_uploaded_csv_by_reference(marketing: TestClient, admin: TestClient,
                                                     program: SeededProgram, db: psycopg.Connection) -> None:
    stored = _upload(marketing, "\n".join(_member_ids(db, program, 12)).encode()).json()

    form = _form(program, audience="csv", csv_path=stored["csv_path"], confirm_recipients=12)

    response = marketing.post(f"{API}/launch", json=form)

    assert response.status_code == 201, response.text
    conf = _dag_run(admin, response.json()["run_id"])["conf"]
    assert conf["audience"] == "csv"
    assert conf["csv_path"] == stored["csv_path"]
    assert Path(conf["csv_path"]).is_file()


@pytest.mark.parametrize(("change", "expected"), [
    ({"confirm_recipients": 0}, "confirm_recipients"),
    ({}, "confirm_recipients"),
    ({"confirm_recipients": 5, "name": "  "}, "name is empty"),
    ({"confirm_recipients": 5, "message": "{oops"}, "message"),
    ({"confirm_recipients": 5, "program_id": str(uuid.UUID(int=9))}, "unknown program"),
])
def test_launch_refuses_what_a_run_would_refuse_and_triggers_nothing(
        marketing: TestClient, admin: TestClient, program: SeededProgram, change: dict[str, Any],
        expected: str) -> None:
    before = admin.get("/api/v2/dags/push_campaign/dagRuns").json()["total_entries"]

    response = marketing.post(f"{API}/launch", json={**_form(program), **change})

    assert response.status_code == 422, response.text
    assert expected in str(response.json()["detail"])
    assert admin.get("/api/v2/dags/push_campaign/dagRuns").json()["total_entries"] == before


# ------------------------------------------------------------------ history and detail


SEND_SECONDS = (0, 1, 3)  # 5 sends in the first second, 5 in the next, none, then 2


def _campaign_with_sends(program: SeededProgram, conninfo: str, db: psycopg.Connection) -> str:
    """A campaign part-way through sending: 12 sent over 4 seconds, 2 failed, the rest pending."""
    conf = _form(program, name="Detail test")
    campaign_id = tasks.create_campaign(conf, dag_id="push_campaign", run_id=f"detail__{uuid.uuid4().hex}",
                                        conninfo=conninfo)
    tasks.resolve_audience(campaign_id, conninfo=conninfo)
    ids = [r[0] for r in db.execute("SELECT member_id FROM push_campaign_recipients WHERE campaign_id = %s"
                                    " AND status = 'PENDING' ORDER BY member_id LIMIT 14", (campaign_id,))]
    start = db.execute("SELECT date_trunc('second', now()) - interval '1 minute'").fetchone()[0]
    for i, member_id in enumerate(ids[:12]):
        db.execute("UPDATE push_campaign_recipients SET status = 'SENT', sent_at = %s, attempts = 1"
                   " WHERE campaign_id = %s AND member_id = %s",
                   (start + timedelta(seconds=SEND_SECONDS[i // 5], milliseconds=50 * (i % 5)), campaign_id,
                    member_id))
    db.execute("UPDATE push_campaign_recipients SET status = 'FAILED', reason = 'http_500', attempts = 3"
               " WHERE campaign_id = %s AND member_id = ANY(%s)", (campaign_id, ids[12:]))
    return campaign_id


def test_history_shows_a_running_campaign_with_live_counts(
        marketing: TestClient, program: SeededProgram, migrated_database_url: str, db: psycopg.Connection) -> None:
    campaign_id = _campaign_with_sends(program, migrated_database_url, db)

    history = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id}).json()

    (row,) = history["campaigns"]
    assert row["id"] == campaign_id
    assert row["status"] == "PROCESSING" and row["final"] is False
    assert (row["sent"], row["failed"]) == (12, 2)
    assert row["skipped"] == program.active - program.eligible_apple - program.eligible_google
    assert row["pending"] == program.eligible_apple + program.eligible_google - 14
    assert row["targeted"] == program.active
    assert row["audience"] == "All Active Members"
    assert row["run_state"] is None  # no such run in Airflow: made by the test, not by a trigger


def test_detail_shows_failures_by_reason_and_sends_per_second(
        marketing: TestClient, program: SeededProgram, migrated_database_url: str, db: psycopg.Connection) -> None:
    campaign_id = _campaign_with_sends(program, migrated_database_url, db)

    detail = marketing.get(f"{API}/campaigns/{campaign_id}").json()

    assert detail["campaign"]["name"] == "Detail test"
    assert detail["campaign"]["message_text"] == MESSAGE
    assert detail["final"] is False
    assert detail["counts"]["SENT"] == 12 and detail["counts"]["FAILED"] == 2
    assert detail["failures"] == [{"status": "FAILED", "reason": "http_500", "count": 2}]
    assert {s["reason"] for s in detail["skipped"]} <= {"opted_out", "no_passkit_id", "duplicate_pass"}
    assert detail["sends"]["bucket"] == "second"
    assert [p["sent"] for p in detail["sends"]["points"]] == [5, 5, 0, 2]  # the quiet second included
    assert detail["sends"]["peak"] == 5
    assert detail["preview"]["eligible"] == program.eligible_apple + program.eligible_google
    assert detail["run"]["run_id"].startswith("detail__") and detail["run"]["state"] is None
    assert detail["lift"]["available"] in (False, True)


def test_a_finished_campaign_uses_its_recorded_counts(
        marketing: TestClient, program: SeededProgram, migrated_database_url: str, db: psycopg.Connection) -> None:
    campaign_id = _campaign_with_sends(program, migrated_database_url, db)
    db.execute("UPDATE push_campaigns SET status = 'COMPLETED_WITH_ERRORS', sent_count = 12,"
               " failed_count = 2, finished_at = now() WHERE id = %s", (campaign_id,))

    (row,) = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id}).json()["campaigns"]

    assert row["final"] is True and row["finished_at"]
    assert (row["status"], row["sent"], row["failed"]) == ("COMPLETED_WITH_ERRORS", 12, 2)


def test_the_detail_has_a_lift_report_exactly_when_the_loyalty_db_has_the_table(
        marketing: TestClient, program: SeededProgram, migrated_database_url: str, db: psycopg.Connection) -> None:
    campaign_id = _campaign_with_sends(program, migrated_database_url, db)
    exists = db.execute("SELECT to_regclass('push_campaign_lift') IS NOT NULL").fetchone()[0]

    lift = marketing.get(f"{API}/campaigns/{campaign_id}").json()["lift"]

    assert lift["available"] is exists
    if exists:  # another feature's table: no figures for a campaign that holds nobody out
        assert "campaign_id" in lift["columns"] and lift["rows"] == []
    else:
        assert lift["note"] == "no push_campaign_lift table or view in the loyalty database yet"


def test_a_lift_relation_is_read_for_the_campaign_and_its_absence_explained(
        program: SeededProgram, migrated_database_url: str, db: psycopg.Connection) -> None:
    from passpush.campaign_page.history import lift_report

    campaign_id = uuid.UUID(_campaign_with_sends(program, migrated_database_url, db))
    view = f"pp_lift_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE VIEW {view} AS SELECT id AS campaign_id, 7 AS window_days, 0.042::numeric AS return_lift"
               " FROM push_campaigns")
    db.execute(f"CREATE VIEW {view}_bad AS SELECT 1 AS window_days")
    try:
        present = lift_report(db, campaign_id, relation=view)
        no_key = lift_report(db, campaign_id, relation=f"{view}_bad")
    finally:
        db.execute(f"DROP VIEW {view}, {view}_bad")
    absent = lift_report(db, campaign_id, relation=view)

    assert present == {"available": True, "columns": ["campaign_id", "window_days", "return_lift"],
                       "rows": [{"campaign_id": campaign_id, "window_days": 7, "return_lift": Decimal("0.042")}]}
    assert no_key == {"available": False, "note": f"{view}_bad has no campaign_id column"}
    assert absent == {"available": False, "note": f"no {view} table or view in the loyalty database yet"}


def _resolved(program: SeededProgram, conninfo: str, **conf: Any) -> str:
    """A campaign created and resolved by the DAG's tasks, as a dry run."""
    campaign_id = tasks.create_campaign(_form(program, dry_run=True, **conf), dag_id="push_campaign",
                                        run_id=uuid.uuid4().hex, conninfo=conninfo)
    tasks.resolve_audience(campaign_id, conninfo=conninfo)
    return campaign_id


def test_a_reader_sees_a_campaign_without_its_member_data(
        viewer: TestClient, marketing: TestClient, program: SeededProgram, migrated_database_url: str,
        db: psycopg.Connection) -> None:
    ids = _member_ids(db, program, 3)
    query = f"SELECT unnest(ARRAY['{ids[0]}', '{ids[1]}', '{ids[2]}', 'SECRET-NO-MEMBER']) AS member_id"
    campaign_id = _resolved(program, migrated_database_url, audience="sql", sql=query)

    launcher = marketing.get(f"{API}/campaigns/{campaign_id}")
    reader = viewer.get(f"{API}/campaigns/{campaign_id}")

    assert launcher.status_code == reader.status_code == 200
    full, redacted = launcher.json(), reader.json()
    assert full["preview"]["samples"] and full["preview"]["unknown_sample"] == ["SECRET-NO-MEMBER"]
    assert full["campaign"]["target_query"] == f"Custom SQL: {query}"
    # The reader gets the counts and the campaign, not who was picked or what they read.
    assert redacted["preview"] == {k: v for k, v in full["preview"].items() if k not in ("samples", "unknown_sample")}
    assert redacted["campaign"]["target_query"] == "Custom SQL (shown to users who may trigger push_campaign)"
    assert redacted["counts"] == full["counts"]
    for secret in ("SECRET-NO-MEMBER", *ids, full["preview"]["samples"][0]["message"], "unnest"):
        assert secret not in reader.text, secret
    # Named columns only: the stored audience and options hold the SQL and test recipients.
    assert {"audience", "options", "csv_upload_url"}.isdisjoint(full["campaign"])
    assert {"name", "message_text", "status", "created_at", "program_name"} <= set(redacted["campaign"])


def test_a_reader_sees_the_history_without_custom_sql_or_test_recipients(
        viewer: TestClient, marketing: TestClient, program: SeededProgram, migrated_database_url: str,
        db: psycopg.Connection) -> None:
    ids = _member_ids(db, program, 2)
    _resolved(program, migrated_database_url, audience="sql", sql=f"SELECT '{ids[0]}' AS member_id")
    _resolved(program, migrated_database_url, test_recipients=ids)
    params = {"program_id": program.program_id}

    full = marketing.get(f"{API}/campaigns", params=params)
    redacted = viewer.get(f"{API}/campaigns", params=params)

    assert sorted(c["audience"] for c in full.json()["campaigns"]) == [
        f"Custom SQL: SELECT '{ids[0]}' AS member_id", f"Test send to 2 members: {ids[0]}, {ids[1]}"]
    assert sorted(c["audience"] for c in redacted.json()["campaigns"]) == [
        "Custom SQL (shown to users who may trigger push_campaign)", "Test send to 2 members"]
    assert not any(member_id in redacted.text for member_id in ids)


def test_an_unknown_campaign_is_a_404_and_a_preview_row_is_not_a_campaign(marketing: TestClient) -> None:
    assert marketing.get(f"{API}/campaigns/{uuid.uuid4()}").status_code == 404
    assert marketing.get(f"{API}/campaigns/not-a-uuid").status_code == 422


def test_history_pages_newest_first(marketing: TestClient, program: SeededProgram,
                                    migrated_database_url: str) -> None:
    for name in ("first", "second", "third"):
        tasks.create_campaign(_form(program, name=name), dag_id="push_campaign", run_id=uuid.uuid4().hex,
                              conninfo=migrated_database_url)

    page1 = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id, "limit": 2}).json()
    page2 = marketing.get(f"{API}/campaigns", params={"program_id": program.program_id, "limit": 2,
                                                      "offset": 2}).json()

    assert [c["name"] for c in page1["campaigns"]] == ["third", "second"]
    assert [c["name"] for c in page2["campaigns"]] == ["first"]
    assert page1["total"] == 3
    assert marketing.get(f"{API}/campaigns", params={"limit": 500}).status_code == 422
