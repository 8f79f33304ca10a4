"""Quiet hours: nobody is buzzed at night in their own time zone.

The window is local wall-clock time, ``[start, end)``, wrapping midnight when start > end (the
default 21:00-09:00). A member's zone is ``users.timezone``, falling back to the program's; it is
snapshotted on the recipient row when the audience is resolved. The sender claims only members
outside their window (SQL function ``passpush_in_quiet_hours``, migration 027); the others either
wait (the ``send_batch`` task defers, freeing its worker slot, until the earliest window ends) or
are skipped with reason ``quiet_hours``, as the campaign says.

The Python functions here mirror the SQL ones, for previews and for tests with a frozen clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from passpush.errors import CampaignConfigError

DEFAULT_START = "21:00"
DEFAULT_END = "09:00"
POLICIES = ("wait", "skip")


def parse_clock(value: str, key: str) -> time:
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise CampaignConfigError(f"{key} must be a local time like 21:00, got {value!r}") from err


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    policy: str = "wait"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise CampaignConfigError(f"quiet_hours_policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")

    def contains(self, at: datetime, tz: str) -> bool:
        """Whether ``at`` falls in the window in zone ``tz``."""
        local = at.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def window_end(self, at: datetime, tz: str) -> datetime:
        """The next local ``end`` after ``at``: when a member inside the window may be buzzed."""
        zone = ZoneInfo(tz)
        local = at.astimezone(zone)
        candidate = datetime.combine(local.date(), self.end, tzinfo=zone)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=zone)
        return candidate.astimezone(UTC)
