"""Recurring-campaign mechanics against real Postgres: cool-down, test sends, the holdout group, and a
lift report that recovers an effect simulated in advance."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from passpush import campaigns, lift, sending, tasks
from passpush.emulator.control import EmulatorControl, EmulatorProcess
from passpush.errors import CampaignConfigError
from passpush.passkit import PassKitSettings
from passpush.seed import SeededProgram, simulate_response

pytestmark = [pytest.mark.postgres]


def _resolve(url: str, program: SeededProgram, **conf: object) -> tuple[str, dict]:
    conf = {"program_id": program.program_id, "name": "t", "message": "Hi {first_name|there}", "dry_run": False,
            **conf}
    campaign_id = tasks.create_campaign(conf, dag_id="test", run_id=str(uuid.uuid4()), conninfo=url)
    preview = tasks.resolve_audience(campaign_id, conninfo=url)
    with psycopg.connect(url) as conn:
        campaigns.confirm(conn, campaign_id, preview["eligible"], "confirm_recipients")
    return campaign_id, preview


def _send_all(url: str, campaign_id: str, emulator: EmulatorProcess) -> sending.SendSummary:
    settings = PassKitSettings(base_url=emulator.url, api_key=emulator.api_key, api_secret=emulator.api_secret,
                               metadata_update="merge")
    return sending.send_batch(url, campaign_id, None, settings, sending.SendOptions(rate_limit_per_second=2000))


def _members(db: psycopg.Connection, campaign_id: str, status: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT member_id FROM push_campaign_recipients WHERE campaign_id = %s"
                                     " AND status = %s", (campaign_id, status))}


@pytest.mark.emulator
def test_cooldown_skips_members_reached_by_the_same_recurring_campaign(
        migrated_database_url, program, emulator, emulator_control: EmulatorControl, db) -> None:
    first, _ = _resolve(migrated_database_url, program, recurring_key="weekly", frequency_cap_hours=0)
    _send_all(migrated_database_url, first, emulator)
    reached = _members(db, first, "SENT")

    again, preview = _resolve(migrated_database_url, program, recurring_key="weekly", frequency_cap_hours=0,
                              message="Another week, {first_name|there}")
    _, other_preview = _resolve(migrated_database_url, program, recurring_key="monthly",
                                    frequency_cap_hours=0, message="Monthly news, {first_name|there}")

    assert reached and preview["skipped"]["cooldown"] == len(reached)
    assert {r[0] for r in db.execute("SELECT member_id FROM push_campaign_recipients WHERE campaign_id = %s"
                                     " AND reason = 'cooldown'", (again,))} == reached
    assert "cooldown" not in other_preview["skipped"]


def _reasons(db: psycopg.Connection, campaign_id: str, reason: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT member_id FROM push_campaign_recipients WHERE campaign_id = %s"
                                     " AND reason = %s", (campaign_id, reason))}


def test_only_a_run_allowed_to_send_cools_down_its_held_out_members(migrated_database_url, seed_loyalty,
                                                                     db) -> None:
    """Each dry run (and each run cancelled before sending) drew a fresh holdout that was then locked out."""
    url, program = migrated_database_url, seed_loyalty(400)
    weekly = {"recurring_key": "weekly", "holdout_percent": 20, "frequency_cap_hours": 0}
    base = {"program_id": program.program_id, "name": "t", "message": "Hi {first_name|there}", **weekly}
    for dry_run in (True, False):  # a preview, and a run that never got its confirmation
        unsent = tasks.create_campaign({**base, "dry_run": dry_run}, dag_id="test", run_id=str(uuid.uuid4()),
                                       conninfo=url)
        tasks.resolve_audience(unsent, conninfo=url)
        assert _members(db, unsent, "HELD_OUT")
    allowed, _ = _resolve(url, program, **weekly)  # confirmed: its held-out group is the lift's control
    held = _members(db, allowed, "HELD_OUT")

    again, _ = _resolve(url, program, **weekly, message="Another week, {first_name|there}")

    assert held and _reasons(db, again, "cooldown") == held


def test_a_delivery_in_doubt_counts_as_reached_for_the_cooldown(migrated_database_url, seed_loyalty, db) -> None:
    """reconcile closes a request that may have landed as FAILED in_doubt_unverified: its phone may have buzzed."""
    url, program = migrated_database_url, seed_loyalty(100)
    first, _ = _resolve(url, program, recurring_key="weekly", frequency_cap_hours=0)
    in_doubt = {r[0] for r in db.execute(
        "UPDATE push_campaign_recipients SET status = 'FAILED', reason = 'in_doubt_unverified', updated_at = now()"
        " WHERE campaign_id = %s AND member_id IN (SELECT member_id FROM push_campaign_recipients"
        " WHERE campaign_id = %s AND status = 'PENDING' ORDER BY member_id LIMIT 5) RETURNING member_id",
        (first, first))}

    again, _ = _resolve(url, program, recurring_key="weekly", frequency_cap_hours=0, message="Again, {points}")

    assert len(in_doubt) == 5 and _reasons(db, again, "cooldown") == in_doubt


@pytest.mark.emulator
def test_a_test_send_reaches_only_the_test_recipients(migrated_database_url, program, emulator,
                                                      emulator_control: EmulatorControl, db) -> None:
    team = [r[0] for r in db.execute(
        "SELECT external_id FROM passes_master WHERE program_id = %s AND status = 'ACTIVE' AND NOT opted_out"
        " AND passkit_internal_id IS NOT NULL ORDER BY external_id LIMIT 3", (program.program_id,))]

    campaign_id, preview = _resolve(migrated_database_url, program, test_recipients=team)
    summary = _send_all(migrated_database_url, campaign_id, emulator)

    assert preview["targeted"] == 3 and summary.sent == 3
    row = db.execute("SELECT is_test, target_query FROM push_campaigns WHERE id = %s", (campaign_id,)).fetchone()
    assert row[0] is True and row[1].startswith("Test send to 3 members")
    assert _members(db, campaign_id, "SENT") == set(team)
    assert emulator_control.stats()["requests_total"] == 3


def test_holdout_is_a_reproducible_random_share_that_is_never_sent(migrated_database_url, seed_loyalty, db) -> None:
    program = seed_loyalty(2000)
    campaign_id, preview = _resolve(migrated_database_url, program, holdout_percent=20)
    held = _members(db, campaign_id, "HELD_OUT")
    total = preview["eligible"] + preview["held_out"]

    assert 0.16 * total < len(held) < 0.24 * total
    assert db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s"
                      " AND status = 'HELD_OUT' AND batch_no IS NOT NULL", (campaign_id,)).fetchone()[0] == 0
    # re-resolving the same campaign keeps the same group; another campaign draws another one
    tasks.resolve_audience(campaign_id, conninfo=migrated_database_url)
    assert _members(db, campaign_id, "HELD_OUT") == held
    other, _ = _resolve(migrated_database_url, program, holdout_percent=20, frequency_cap_hours=0)
    assert _members(db, other, "HELD_OUT") != held


def _sent_days_ago(db: psycopg.Connection, campaign_id: str, days: int) -> None:
    """Every assigned member SENT, the campaign confirmed `days` ago: its lift window may have ended."""
    db.execute("UPDATE push_campaigns SET confirmed_at = now() - make_interval(days => %s) WHERE id = %s",
               (days, campaign_id))
    db.execute("UPDATE push_campaign_recipients SET status = 'SENT', sent_at = now() - make_interval(days => %s)"
               " WHERE campaign_id = %s AND status = 'PENDING'", (days, campaign_id))
    # the seeded activity stops before the campaign: who comes back is what each test simulates
    db.execute("UPDATE passes_master p SET last_updated = c.confirmed_at - interval '1 day'"
               " FROM push_campaigns c WHERE c.id = %s AND p.program_id = c.program_id"
               " AND p.last_updated >= c.confirmed_at", (campaign_id,))


def test_lift_report_recovers_a_known_effect(migrated_database_url, seed_loyalty, db) -> None:
    program = seed_loyalty(6000)
    campaign_id, _ = _resolve(migrated_database_url, program, holdout_percent=50)
    _sent_days_ago(db, campaign_id, 8)
    simulate_response(migrated_database_url, campaign_id, base_return_rate=0.20, return_lift=0.10,
                      base_points=40, points_lift=20)

    with psycopg.connect(migrated_database_url) as conn:
        report = lift.compute_lift(conn, campaign_id, window_days=7)

    assert report.treated > 2000 and report.held_out > 2000
    assert report.return_lift_ci_low < 0.10 < report.return_lift_ci_high
    assert report.return_lift_ci_low > 0  # the effect is detected, not just compatible
    assert 0.15 < report.held_out_return_rate < 0.25
    assert report.points_lift_ci_low > 0
    stored = db.execute("SELECT treated, held_out, return_lift FROM push_campaign_lift WHERE campaign_id = %s"
                        " AND window_days = 7", (campaign_id,)).fetchone()
    assert stored == (report.treated, report.held_out, pytest.approx(report.return_lift))
    assert "return lift" in report.format()


def test_no_effect_gives_an_interval_around_zero(migrated_database_url, seed_loyalty, db) -> None:
    program = seed_loyalty(4000)
    campaign_id, _ = _resolve(migrated_database_url, program, holdout_percent=50)
    _sent_days_ago(db, campaign_id, 8)
    simulate_response(migrated_database_url, campaign_id, base_return_rate=0.3, return_lift=0.0, seed=11)

    with psycopg.connect(migrated_database_url) as conn:
        report = lift.compute_lift(conn, campaign_id)

    assert report.return_lift_ci_low < 0 < report.return_lift_ci_high


def test_members_the_send_did_not_reach_stay_in_the_treated_group(migrated_database_url, seed_loyalty, db) -> None:
    """Dead passes (404) are in both groups; comparing only SENT with everyone held out showed lift."""
    program = seed_loyalty(4000)
    campaign_id, _ = _resolve(migrated_database_url, program, holdout_percent=50)
    _sent_days_ago(db, campaign_id, 8)
    # 15 % of the members have a dead pass and never come back: the send fails for those in the treated group
    dead = "('x' || substr(md5(r.member_id), 1, 4))::bit(16)::int %% 100 < 15"
    db.execute(f"UPDATE push_campaign_recipients r SET status = 'FAILED', reason = 'http_404', sent_at = NULL"
               f" WHERE campaign_id = %s AND status = 'SENT' AND {dead}", (campaign_id,))
    confirmed_at = db.execute("SELECT confirmed_at FROM push_campaigns WHERE id = %s", (campaign_id,)).fetchone()[0]
    db.execute(f"UPDATE passes_master p SET last_updated = %s + interval '1 day' FROM push_campaign_recipients r"
               f" WHERE r.campaign_id = %s AND p.id = r.pass_id AND NOT ({dead}) AND random() < 0.3",
               (confirmed_at, campaign_id))  # no effect: the living come back at 30 % in both groups

    with psycopg.connect(migrated_database_url) as conn:
        report = lift.compute_lift(conn, campaign_id)

    failed = db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s AND status = 'FAILED'",
                        (campaign_id,)).fetchone()[0]
    assert failed > 100 and report.treated == failed + len(_members(db, campaign_id, "SENT"))
    assert report.return_lift_ci_low < 0 < report.return_lift_ci_high  # SENT only: +4.5 points, "significant"


def test_a_lift_report_waits_for_its_window_to_end(migrated_database_url, seed_loyalty, db) -> None:
    program = seed_loyalty(200)
    campaign_id, _ = _resolve(migrated_database_url, program, holdout_percent=50)
    _sent_days_ago(db, campaign_id, 3)
    never_sent = tasks.create_campaign({"program_id": program.program_id, "name": "t", "message": "Hi",
                                        "holdout_percent": 50}, dag_id="test", run_id=str(uuid.uuid4()),
                                       conninfo=migrated_database_url)

    with psycopg.connect(migrated_database_url) as conn:
        with pytest.raises(CampaignConfigError, match=r"the 7-day window of campaign .* ends at .*run it after that"):
            lift.compute_lift(conn, campaign_id)
        with pytest.raises(CampaignConfigError, match="was never allowed to send"):
            lift.compute_lift(conn, never_sent)
        assert lift.compute_lift(conn, campaign_id, window_days=2).window_days == 2

    assert db.execute("SELECT window_days FROM push_campaign_lift WHERE campaign_id = %s",
                      (campaign_id,)).fetchall() == [(2,)]


def test_the_lift_command_says_why_it_cannot_report_yet(migrated_database_url, seed_loyalty, db,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from passpush import cli

    program = seed_loyalty(50)
    campaign_id, _ = _resolve(migrated_database_url, program, holdout_percent=50)

    assert cli.main(["lift", campaign_id, "--url", migrated_database_url]) == 2
    assert capsys.readouterr().err.startswith(f"passpush lift: the 7-day window of campaign {campaign_id} ends at")


def test_interval_arithmetic() -> None:
    treated, held = lift.GroupOutcome(1000, 300, 10.0, 4.0), lift.GroupOutcome(1000, 200, 8.0, 4.0)
    diff, _, high = lift.difference_of_proportions(treated, held)
    assert diff == pytest.approx(0.1)
    assert high - diff == pytest.approx(1.959964 * (0.3 * 0.7 / 1000 + 0.2 * 0.8 / 1000) ** 0.5)
    diff, _, high = lift.difference_of_means(treated, held)
    assert (diff, high - diff) == (pytest.approx(2.0), pytest.approx(1.959964 * (8 / 1000) ** 0.5))
