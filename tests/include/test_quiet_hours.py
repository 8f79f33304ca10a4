"""Quiet hours across time zones, with the clock frozen (never slept): the window arithmetic, the SQL
functions the sender uses, and the sender waiting for or skipping members who are asleep."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import psycopg
import pytest

from passpush import campaigns, sending, tasks
from passpush.emulator.control import EmulatorProcess
from passpush.passkit import PassKitSettings
from passpush.quiet_hours import QuietHours

NIGHT = QuietHours(time(21), time(9))
ZONES = ["America/Los_Angeles", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney"]


@pytest.mark.parametrize(("at", "tz", "quiet"), [
    ("2026-11-25T12:00:00+00:00", "America/Los_Angeles", True),   # 04:00
    ("2026-11-25T12:00:00+00:00", "Europe/London", False),        # 12:00
    ("2026-11-25T21:00:00+00:00", "Europe/London", True),         # 21:00 sharp: the window starts
    ("2026-11-25T09:00:00+00:00", "Europe/London", False),        # 09:00 sharp: the window has ended
    ("2026-11-25T12:00:00+00:00", "Asia/Tokyo", True),            # 21:00
    ("2026-07-01T16:30:00+00:00", "America/New_York", False),     # 12:30 in summer time
])
def test_window_contains(at: str, tz: str, quiet: bool) -> None:
    assert NIGHT.contains(datetime.fromisoformat(at), tz) is quiet


def test_window_end_is_the_next_local_morning() -> None:
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert NIGHT.window_end(at, "America/Los_Angeles") == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert NIGHT.window_end(at, "Asia/Tokyo") == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def test_window_end_across_a_daylight_saving_change() -> None:
    # The night of 2026-03-08 in New York loses an hour: 09:00 local is 13:00 UTC that morning.
    at = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    assert NIGHT.window_end(at, "America/New_York") == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_a_daytime_window_does_not_wrap() -> None:
    siesta = QuietHours(time(13), time(15))
    assert siesta.contains(datetime(2026, 11, 25, 14, 0, tzinfo=UTC), "UTC")
    assert not siesta.contains(datetime(2026, 11, 25, 16, 0, tzinfo=UTC), "UTC")


@pytest.mark.postgres
def test_sql_functions_agree_with_python(db: psycopg.Connection) -> None:
    start = datetime(2026, 3, 7, 0, 0, tzinfo=UTC)
    for hour in range(0, 72, 1):
        at = start + timedelta(hours=hour, minutes=17)
        for tz in ZONES:
            quiet, end = db.execute(
                "SELECT passpush_in_quiet_hours(%s, %s, %s, %s), passpush_quiet_hours_end(%s, %s, %s)",
                (at, tz, NIGHT.start, NIGHT.end, at, tz, NIGHT.end)).fetchone()
            assert quiet is NIGHT.contains(at, tz), (at, tz)
            if quiet:
                assert end == NIGHT.window_end(at, tz), (at, tz)


def _campaign_in_zones(url: str, seed_loyalty, emulator: EmulatorProcess, db: psycopg.Connection,
                       policy: str) -> tuple[str, dict[str, int]]:
    program = seed_loyalty(120, emulator)
    # Give every member one of two zones: London (awake at 12:00 UTC) and Los Angeles (asleep).
    db.execute("UPDATE users u SET timezone = CASE WHEN p.points_balance::int %% 2 = 0 THEN 'Europe/London'"
               " ELSE 'America/Los_Angeles' END FROM passes_master p WHERE p.user_id = u.id AND p.program_id = %s",
               (program.program_id,))
    conf = {"program_id": program.program_id, "name": "quiet", "message": "Hi {first_name|there}", "dry_run": False,
            "quiet_hours": True, "quiet_hours_policy": policy}
    campaign_id = tasks.create_campaign(conf, dag_id="quiet", run_id=str(uuid.uuid4()), conninfo=url)
    preview = tasks.resolve_audience(campaign_id, conninfo=url)
    with psycopg.connect(url) as conn:
        campaigns.confirm(conn, campaign_id, preview["eligible"], "confirm_recipients")
    zones = dict(db.execute("SELECT timezone, count(*) FROM push_campaign_recipients WHERE campaign_id = %s"
                            " AND status = 'PENDING' GROUP BY 1", (campaign_id,)).fetchall())
    return campaign_id, zones


def _send(url: str, campaign_id: str, emulator: EmulatorProcess, policy: str, now: datetime) -> sending.SendSummary:
    settings = PassKitSettings(base_url=emulator.url, api_key=emulator.api_key, api_secret=emulator.api_secret,
                               metadata_update="merge")
    options = sending.SendOptions(rate_limit_per_second=2000, quiet_hours=QuietHours(time(21), time(9), policy),
                                  clock=lambda: now)
    return sending.send_batch(url, campaign_id, 0, settings, options)


@pytest.mark.postgres
@pytest.mark.emulator
def test_members_asleep_wait_until_their_morning(migrated_database_url, seed_loyalty, emulator,
                                                 emulator_control, db) -> None:
    campaign_id, zones = _campaign_in_zones(migrated_database_url, seed_loyalty, emulator, db, "wait")

    noon_utc = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    first = _send(migrated_database_url, campaign_id, emulator, "wait", noon_utc)
    assert first.sent == zones["Europe/London"]
    assert first.waiting == zones["America/Los_Angeles"]
    assert first.next_opening == "2026-11-25T17:00:00+00:00"  # 09:00 in Los Angeles

    morning_in_la = datetime(2026, 11, 25, 17, 0, 5, tzinfo=UTC)
    second = _send(migrated_database_url, campaign_id, emulator, "wait", morning_in_la)
    assert (second.sent, second.waiting) == (zones["America/Los_Angeles"], 0)


@pytest.mark.postgres
@pytest.mark.emulator
def test_members_asleep_are_skipped_when_the_campaign_says_so(migrated_database_url, seed_loyalty, emulator,
                                                              emulator_control, db) -> None:
    campaign_id, zones = _campaign_in_zones(migrated_database_url, seed_loyalty, emulator, db, "skip")

    summary = _send(migrated_database_url, campaign_id, emulator, "skip", datetime(2026, 11, 25, 12, 0, tzinfo=UTC))

    assert summary.sent == zones["Europe/London"] and summary.waiting == 0
    skipped = db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s"
                         " AND reason = 'quiet_hours'", (campaign_id,)).fetchone()[0]
    assert skipped == zones["America/Los_Angeles"]


@pytest.mark.postgres
@pytest.mark.emulator
@pytest.mark.parametrize("metadata_update", ["read_modify_write", "merge"])
def test_rows_left_in_doubt_wait_for_the_morning_too(metadata_update, migrated_database_url, seed_loyalty, emulator,
                                                     emulator_control, db) -> None:
    """A worker claimed rows just before its members' night began and died before its requests left; the
    retry comes at night. Verifying a row writes it when the first request never landed: not before 09:00."""
    campaign_id, zones = _campaign_in_zones(migrated_database_url, seed_loyalty, emulator, db, "wait")
    program_id = db.execute("SELECT p.passkit_program_id FROM push_campaigns c JOIN programs p ON p.id = c.program_id"
                            " WHERE c.id = %s", (campaign_id,)).fetchone()[0]
    asleep = [r[0] for r in db.execute(
        "SELECT member_id FROM push_campaign_recipients WHERE campaign_id = %s AND status = 'PENDING'"
        " AND timezone = 'America/Los_Angeles' AND wallet = 'apple' ORDER BY member_id LIMIT 5", (campaign_id,))]
    db.execute("UPDATE push_campaign_recipients SET status = 'SENDING' WHERE campaign_id = %s AND member_id = ANY(%s)",
               (campaign_id, asleep))
    settings = PassKitSettings(base_url=emulator.url, api_key=emulator.api_key, api_secret=emulator.api_secret,
                               metadata_update=metadata_update)

    def send(now: datetime) -> sending.SendSummary:
        options = sending.SendOptions(rate_limit_per_second=2000, quiet_hours=NIGHT, clock=lambda: now)
        return sending.send_batch(migrated_database_url, campaign_id, 0, settings, options)

    night = send(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # 04:00 in Los Angeles
    woken = {e["externalId"] for e in emulator_control.notifications(program_id=program_id)}
    assert not woken & set(asleep)
    assert night.waiting == zones["America/Los_Angeles"]  # the rows in doubt included: the task defers
    assert night.next_opening == "2026-11-25T17:00:00+00:00"

    morning = send(datetime(2026, 11, 25, 17, 0, 5, tzinfo=UTC))
    assert (morning.sent, morning.waiting) == (zones["America/Los_Angeles"], 0)
    assert emulator_control.notification_summary(program_id)["max_per_member"] == 1
