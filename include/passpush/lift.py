"""The lift report: did the campaign bring members back, compared with the held-out group?

For one campaign and a window after it (default 7 days), treated members are compared with held-out
ones (HELD_OUT) on two outcomes: the share who came back (their pass changed after the campaign, within
the window) and the points earned since the audience was resolved. Each difference comes with a 95 %
confidence interval (normal approximation: Wald for the difference of two proportions, Welch for the
difference of two means), and the report is stored in ``push_campaign_lift``.

Treated means assigned to the send (a batch number at resolution), whatever happened at send time, as the
held-out group keeps everyone the random draw put in it: comparing only the members actually reached (SENT)
left a dead pass (404), a quiet-hours skip or a frequency cap on one side only, and showed lift where there
was none. A report is computed once its window has ended, the day after (the ``campaign_lift_report`` DAG):
"came back" is read from the pass's last update, which a later visit moves past the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from passpush.errors import CampaignConfigError

DEFAULT_WINDOW_DAYS = 7
Z_95 = 1.959964

OUTCOMES_SQL = """
WITH campaign AS (
    SELECT coalesce(confirmed_at, started_at, created_at) AS sent_at FROM push_campaigns WHERE id = %(campaign_id)s
)
SELECT CASE WHEN r.status = 'HELD_OUT' THEN 'HELD_OUT' ELSE 'TREATED' END,
       count(*),
       count(*) FILTER (WHERE p.last_updated > c.sent_at
                          AND p.last_updated <= c.sent_at + make_interval(days => %(window_days)s)),
       avg(p.points_balance - r.points_at_resolve)::float8,
       coalesce(var_samp(p.points_balance - r.points_at_resolve), 0)::float8
FROM push_campaign_recipients r
JOIN passes_master p ON p.id = r.pass_id
CROSS JOIN campaign c
WHERE r.campaign_id = %(campaign_id)s AND (r.batch_no IS NOT NULL OR r.status = 'HELD_OUT')
GROUP BY 1
"""

UPSERT_SQL = """
INSERT INTO push_campaign_lift (campaign_id, window_days, treated, held_out, treated_returned, held_out_returned,
    treated_return_rate, held_out_return_rate, return_lift, return_lift_ci_low, return_lift_ci_high,
    treated_points_mean, held_out_points_mean, points_lift, points_lift_ci_low, points_lift_ci_high, computed_at)
VALUES (%(campaign_id)s, %(window_days)s, %(treated)s, %(held_out)s, %(treated_returned)s, %(held_out_returned)s,
    %(treated_return_rate)s, %(held_out_return_rate)s, %(return_lift)s, %(return_lift_ci_low)s,
    %(return_lift_ci_high)s, %(treated_points_mean)s, %(held_out_points_mean)s, %(points_lift)s,
    %(points_lift_ci_low)s, %(points_lift_ci_high)s, now())
ON CONFLICT (campaign_id, window_days) DO UPDATE SET
    treated = EXCLUDED.treated, held_out = EXCLUDED.held_out, treated_returned = EXCLUDED.treated_returned,
    held_out_returned = EXCLUDED.held_out_returned, treated_return_rate = EXCLUDED.treated_return_rate,
    held_out_return_rate = EXCLUDED.held_out_return_rate, return_lift = EXCLUDED.return_lift,
    return_lift_ci_low = EXCLUDED.return_lift_ci_low, return_lift_ci_high = EXCLUDED.return_lift_ci_high,
    treated_points_mean = EXCLUDED.treated_points_mean, held_out_points_mean = EXCLUDED.held_out_points_mean,
    points_lift = EXCLUDED.points_lift, points_lift_ci_low = EXCLUDED.points_lift_ci_low,
    points_lift_ci_high = EXCLUDED.points_lift_ci_high, computed_at = now()
"""


@dataclass(frozen=True)
class GroupOutcome:
    members: int
    returned: int
    points_mean: float
    points_var: float

    @property
    def return_rate(self) -> float:
        return self.returned / self.members if self.members else math.nan


@dataclass(frozen=True)
class LiftReport:
    campaign_id: str
    window_days: int
    treated: int
    held_out: int
    treated_returned: int
    held_out_returned: int
    treated_return_rate: float
    held_out_return_rate: float
    return_lift: float
    return_lift_ci_low: float
    return_lift_ci_high: float
    treated_points_mean: float
    held_out_points_mean: float
    points_lift: float
    points_lift_ci_low: float
    points_lift_ci_high: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        def pct(x: float) -> str:
            return f"{100 * x:.1f} %" if not math.isnan(x) else "n/a"

        return "\n".join([
            f"lift of campaign {self.campaign_id} over {self.window_days} days",
            f"  {'':<18}{'treated':>12}{'held out':>12}",
            f"  {'members':<18}{self.treated:>12}{self.held_out:>12}",
            f"  {'came back':<18}{pct(self.treated_return_rate):>12}{pct(self.held_out_return_rate):>12}",
            f"  {'points earned':<18}{self.treated_points_mean:>12.1f}{self.held_out_points_mean:>12.1f}",
            f"  return lift   {pct(self.return_lift)} (95 % CI {pct(self.return_lift_ci_low)} .. "
            f"{pct(self.return_lift_ci_high)})",
            f"  points lift   {self.points_lift:.1f} (95 % CI {self.points_lift_ci_low:.1f} .. "
            f"{self.points_lift_ci_high:.1f})",
        ])


def difference_of_proportions(treated: GroupOutcome, held_out: GroupOutcome) -> tuple[float, float, float]:
    """Difference of return rates and its 95 % Wald interval."""
    p1, p2 = treated.return_rate, held_out.return_rate
    if not treated.members or not held_out.members:
        return math.nan, math.nan, math.nan
    se = math.sqrt(p1 * (1 - p1) / treated.members + p2 * (1 - p2) / held_out.members)
    diff = p1 - p2
    return diff, diff - Z_95 * se, diff + Z_95 * se


def difference_of_means(treated: GroupOutcome, held_out: GroupOutcome) -> tuple[float, float, float]:
    """Difference of mean points earned and its 95 % Welch interval (normal approximation)."""
    if not treated.members or not held_out.members:
        return math.nan, math.nan, math.nan
    se = math.sqrt(treated.points_var / treated.members + held_out.points_var / held_out.members)
    diff = treated.points_mean - held_out.points_mean
    return diff, diff - Z_95 * se, diff + Z_95 * se


def _groups(conn: psycopg.Connection, campaign_id: str, window_days: int) -> dict[str, GroupOutcome]:
    rows = conn.execute(OUTCOMES_SQL, {"campaign_id": campaign_id, "window_days": window_days}).fetchall()
    groups = {status: GroupOutcome(n, returned, mean or 0.0, var or 0.0) for status, n, returned, mean, var in rows}
    empty = GroupOutcome(0, 0, 0.0, 0.0)
    return {"TREATED": groups.get("TREATED", empty), "HELD_OUT": groups.get("HELD_OUT", empty)}


def _check_window_ended(conn: psycopg.Connection, campaign_id: str, window_days: int) -> None:
    # stored early, a report was final: campaigns_due never computed it again with the whole window
    row = conn.execute(
        "SELECT confirmed_at, confirmed_at + make_interval(days => %s), now() FROM push_campaigns WHERE id = %s",
        (window_days, campaign_id)).fetchone()
    if row is None:
        raise CampaignConfigError(f"unknown campaign {campaign_id!r}")
    confirmed_at, window_end, now = row
    if confirmed_at is None:
        raise CampaignConfigError(f"campaign {campaign_id} was never allowed to send: it has no lift to measure")
    if window_end > now:
        raise CampaignConfigError(
            f"the {window_days}-day window of campaign {campaign_id} ends at {window_end:%Y-%m-%d %H:%M %Z}: "
            "a report before then would be stored as its result; run it after that")


def compute_lift(conn: psycopg.Connection, campaign_id: str, window_days: int = DEFAULT_WINDOW_DAYS) -> LiftReport:
    """Compute and store the lift report of one campaign, once its window has ended."""
    _check_window_ended(conn, campaign_id, window_days)
    groups = _groups(conn, campaign_id, window_days)
    treated, held_out = groups["TREATED"], groups["HELD_OUT"]
    return_lift = difference_of_proportions(treated, held_out)
    points_lift = difference_of_means(treated, held_out)
    report = LiftReport(
        campaign_id, window_days, treated.members, held_out.members, treated.returned, held_out.returned,
        treated.return_rate, held_out.return_rate, *return_lift,
        treated.points_mean, held_out.points_mean, *points_lift,
    )
    conn.execute(UPSERT_SQL, {k: (None if isinstance(v, float) and math.isnan(v) else v)
                              for k, v in report.as_dict().items()})
    return report


def campaigns_due(conn: psycopg.Connection, window_days: int = DEFAULT_WINDOW_DAYS,
                  now: datetime | None = None) -> list[str]:
    """Campaigns with a holdout whose window has ended and whose report is missing."""
    rows = conn.execute(
        "SELECT c.id::text FROM push_campaigns c"
        " LEFT JOIN push_campaign_lift l ON l.campaign_id = c.id AND l.window_days = %(w)s"
        " WHERE c.holdout_percent > 0 AND NOT c.dry_run AND NOT c.is_test AND l.campaign_id IS NULL"
        "   AND c.confirmed_at + make_interval(days => %(w)s) <= coalesce(%(now)s, now())"
        " ORDER BY c.confirmed_at",
        {"w": window_days, "now": now}).fetchall()
    return [r[0] for r in rows]
