"""Recurring campaigns: the config file (good and bad) and the DAGs generated from it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from passpush.recurring import RecurringConfigError, load_recurring

DAGS = Path(__file__).resolve().parents[2] / "dags"
GOOD = """\
campaigns:
  - name: slumber_winback
    title: Slumber win-back
    program_id: ""
    schedule: "0 10 * * 5"
    timezone: America/Los_Angeles
    audience: {segment: slumber, params: {days: 30}}
    message: "We miss you! You have {points} points waiting."
    max_recipients: 1000
  - name: whales_monthly
    program_id: 3f2b8a4e-1c0d-4e5f-9a8b-7c6d5e4f3a2b
    schedule: "0 9 1 * *"
    timezone: Europe/London
    audience: {segment: whale, params: {min_points: 2000}}
    message: "Thanks {first_name|friend}!"
    holdout_percent: 5
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaigns.yaml"
    path.write_text(text)
    return path


def test_shipped_file_declares_the_slumber_winback_not_live_until_a_program_is_set() -> None:
    (campaign,) = load_recurring()
    assert campaign.name == "slumber_winback"
    assert campaign.segment == "slumber" and campaign.segment_params == {"days": 30}
    assert "{points} points waiting" in campaign.message
    assert campaign.cooldown_days == 30 and campaign.holdout_percent == 10
    assert not campaign.live
    assert campaign.conf()["dry_run"] is True
    assert campaign.conf()["quiet_hours"] is True  # unattended runs never buzz anyone at night


def test_good_file(tmp_path: Path) -> None:
    first, second = load_recurring(_write(tmp_path, GOOD))
    assert (first.dag_id, first.live, first.holdout_percent) == ("recurring_slumber_winback", False, 10)
    assert (second.live, second.timezone, second.holdout_percent) == (True, "Europe/London", 5)
    conf = second.conf()
    assert conf["recurring_key"] == "whales_monthly" and conf["dry_run"] is False
    assert conf["audience"] == "segment" and conf["segment_params"] == {"min_points": 2000}


@pytest.mark.parametrize(("change", "line", "words"), [
    (("schedule: \"0 9 1 * *\"", "schedule: \"every monday\""), 12, "cron"),
    (("timezone: Europe/London", "timezone: Mars/Olympus"), 13, "IANA"),
    (("segment: whale", "segment: dolphins"), 14, "audience"),
    (("message: \"Thanks {first_name|friend}!\"", "message: \"Hi {nmae}\""), 10, "unknown placeholder"),
    (("min_points: 2000", "min_pints: 2000"), 10, "no parameter"),
    (("holdout_percent: 5", "holdout_percent: 90"), 10, "holdout_percent"),
    (("holdout_percent: 5", "holdout_prcent: 5"), 16, "unknown field"),
    (("holdout_percent: 5", "quiet_hours_end: \"breakfast\""), 10, "quiet_hours_end"),
    (("name: whales_monthly", "name: slumber_winback"), 10, "used twice"),
    (("holdout_percent: 5", "enabled: \"no\""), 16, "enabled must be true or false, got 'no'"),
    (("holdout_percent: 5", "enabled:"), 16, "enabled must be true or false, got None"),
    # a typo inside audience ran the segment with its default parameters (whale: 500 points, not 2000)
    (("params: {min_points: 2000}", "parmas: {min_points: 2000}"), 14, "unknown audience field 'parmas'"),
    # YAML reads an unquoted 22:00 as 1320, which read as a clock was 13:20
    (("holdout_percent: 5", "quiet_hours_start: 22:00"), 16, 'must be quoted, like "22:00"'),
    # values the DAG's form refuses failed the import of every recurring DAG, with no file or line
    (("holdout_percent: 5", 'holdout_percent: "5"'), 16, "holdout_percent: '5' is not of type 'number'"),
    (("holdout_percent: 5", 'batch_size: "500"'), 16, "batch_size: '500' is not of type 'integer'"),
])
def test_bad_file_names_file_line_and_problem(tmp_path: Path, change: tuple[str, str], line: int,
                                              words: str) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(RecurringConfigError) as err:
        load_recurring(path)
    assert f"{path}:{line}:" in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize(("enabled", "live"), [("\"false\"", False), ("\"False\"", False), ("false", False),
                                             ("\"true\"", True), ("true", True)])
def test_enabled_as_quoted_text_means_what_it_says(tmp_path: Path, enabled: str, live: bool) -> None:
    _, second = load_recurring(_write(tmp_path, GOOD + f"    enabled: {enabled}\n"))
    assert second.live is live
    assert second.conf()["dry_run"] is not live


def test_invalid_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecurringConfigError, match="not valid YAML"):
        load_recurring(_write(tmp_path, "campaigns: [\n  - name: x"))


def _parse_dags(config: Path) -> subprocess.CompletedProcess[str]:
    probe = textwrap.dedent(f"""
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS / "recurring_campaigns.py")!r})
        print("DAGS", sorted(bag.dags))
        for dag_id, dag in sorted(bag.dags.items()):
            print("SCHEDULE", dag_id, getattr(dag.timetable, "expression", None), sorted(dag.tags))
        print("ERRORS", list(bag.import_errors.values()))
    """)
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PASSPUSH_RECURRING_CONFIG": str(config)})


@pytest.mark.airflow
def test_one_dag_per_campaign_scheduled_only_when_live(tmp_path: Path) -> None:
    out = _parse_dags(_write(tmp_path, GOOD)).stdout
    assert "DAGS ['recurring_slumber_winback', 'recurring_whales_monthly']" in out
    assert "SCHEDULE recurring_whales_monthly 0 9 1 * *" in out
    assert "SCHEDULE recurring_slumber_winback None" in out
    assert "ERRORS []" in out


@pytest.mark.airflow
def test_a_bad_file_registers_no_dag_and_reports_the_line(tmp_path: Path) -> None:
    config = _write(tmp_path, GOOD.replace("timezone: Europe/London", "timezone: Mars/Olympus"))
    out = _parse_dags(config).stdout
    assert "DAGS []" in out
    assert f"{config}:13" in out and "IANA" in out
