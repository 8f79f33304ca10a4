"""The campaign's public contract: the conf keys of ``push_campaign`` and their validation.

The same ``CampaignSpec`` is built from the Airflow trigger form, a JSON conf, the campaign page
and the recurring-campaign file, so every entry point validates the same way. Errors name the
key, the bad value and the valid choices.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from passpush.errors import CampaignConfigError
from passpush.quiet_hours import DEFAULT_END, DEFAULT_START, POLICIES, QuietHours, parse_clock
from passpush.rendering import DEFAULT_MAX_LENGTH, Template, check_length, parse_template
from passpush.segments import get_segment

AUDIENCES = ("all_active", "segment", "sql", "csv")
SEGMENTS = ("slumber", "whale", "local")

# PassKit documents no rate limit; the product's own default per program (facts sheet).
DEFAULT_RATE_LIMIT = 50.0
MAX_RATE_LIMIT = 5000.0
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 100_000
# Keeps mapped send_batch tasks well under Airflow's max_map_length (1024) for any audience:
# batches grow instead of multiplying once an audience is larger than batch_size * MAX_BATCHES.
MAX_BATCHES = 256
DEFAULT_FREQUENCY_CAP_HOURS = 24.0
GOOGLE_DAILY_UPDATE_LIMIT = 3
DEFAULT_COOLDOWN_DAYS = 30.0
MAX_HOLDOUT_PERCENT = 50.0
QUIET_HOURS_BY_DEFAULT = False


@dataclass(frozen=True)
class CampaignSpec:
    program_id: str
    name: str
    message: str
    audience: str = "all_active"
    segment: str | None = None
    segment_params: dict[str, Any] = field(default_factory=dict)
    sql: str | None = None
    csv_path: str | None = None
    dry_run: bool = False
    confirm_recipients: int | None = None
    max_recipients: int | None = None
    rate_limit_per_second: float | None = None  # None: the PassKit connection's setting, else the default
    batch_size: int = DEFAULT_BATCH_SIZE
    max_message_length: int = DEFAULT_MAX_LENGTH
    frequency_cap_hours: float = DEFAULT_FREQUENCY_CAP_HOURS
    test_recipients: tuple[str, ...] = ()  # a test send: only these members, recorded as a test
    holdout_percent: float = 0.0
    recurring_key: str | None = None  # set by recurring campaigns: enables the cool-down
    cooldown_days: float = DEFAULT_COOLDOWN_DAYS
    quiet_hours: bool = QUIET_HOURS_BY_DEFAULT
    quiet_hours_start: str = DEFAULT_START
    quiet_hours_end: str = DEFAULT_END
    quiet_hours_policy: str = "wait"

    @property
    def quiet_window(self) -> QuietHours | None:
        if not self.quiet_hours:
            return None
        return QuietHours(parse_clock(self.quiet_hours_start, "quiet_hours_start"),
                          parse_clock(self.quiet_hours_end, "quiet_hours_end"), self.quiet_hours_policy)

    @property
    def is_test(self) -> bool:
        return bool(self.test_recipients)

    @property
    def template(self) -> Template:
        return parse_template(self.message)

    def describe_audience(self) -> str:
        """Human description stored in push_campaigns.target_query."""
        if self.test_recipients:
            return f"Test send to {len(self.test_recipients)} members: {', '.join(self.test_recipients[:5])}"
        if self.audience == "all_active":
            return "All Active Members"
        if self.audience == "segment":
            params = ", ".join(f"{k}={v}" for k, v in sorted(self.segment_params.items()))
            return f"Segment {self.segment}" + (f" ({params})" if params else "")
        if self.audience == "sql":
            return f"Custom SQL: {self.sql}"
        return f"CSV upload: {self.csv_path}"

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def _given(conf: dict[str, Any], key: str, default: Any) -> Any:
    """The key's value, or the default when it is missing, null or "" (an empty form field).

    Not any falsy value: false, 0, [] or {} in a text or list key is a value of the wrong shape, and
    `or default` read audience false as all_active, every member, and test_recipients 0 as no test send.
    """
    value = conf.get(key)
    return default if value is None or value == "" else value


def _int(conf: dict[str, Any], key: str, *, minimum: int, maximum: int | None = None) -> int | None:
    value = conf.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):  # int(True) is 1: a checkbox is not a count
        raise CampaignConfigError(f"{key} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as err:  # OverflowError: infinity (YAML's .inf)
        raise CampaignConfigError(f"{key} must be a whole number, got {value!r}") from err
    if isinstance(value, float) and not value.is_integer():
        raise CampaignConfigError(f"{key} must be a whole number, got {value!r}")
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise CampaignConfigError(f"{key} must be {bound}, got {value!r}")
    return number


def _float(conf: dict[str, Any], key: str, *, minimum: float, maximum: float) -> float | None:
    value = conf.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise CampaignConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise CampaignConfigError(f"{key} must be a number, got {value!r}") from err
    if not (minimum <= number <= maximum):
        raise CampaignConfigError(f"{key} must be between {minimum:g} and {maximum:g}, got {value!r}")
    return number


def _bool(conf: dict[str, Any], key: str, default: bool) -> bool:
    value = conf.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise CampaignConfigError(f"{key} must be true or false, got {value!r}")


def _test_recipients(conf: dict[str, Any]) -> tuple[str, ...]:
    value = _given(conf, "test_recipients", ())
    if isinstance(value, str):
        value = [v for v in value.replace("\n", ",").split(",")]
    if not isinstance(value, list | tuple):
        raise CampaignConfigError(f"test_recipients must be a list of member ids, got {value!r}")
    for entry in value:
        _check_test_recipient(entry)
    ids = tuple(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))
    if len(ids) > 100:
        raise CampaignConfigError(f"test_recipients has {len(ids)} members; a test send is for at most 100")
    return ids


def _check_test_recipient(entry: Any) -> None:
    # Ids stay free text like passes_master.external_id: the CSV rules (VALID_ID) guard spreadsheet
    # exports, not ids typed here. But str() would make null the id "None" and a float "1.0".
    if isinstance(entry, bool) or not isinstance(entry, str | int):
        raise CampaignConfigError(f"test_recipients must hold member ids (text or whole numbers), got {entry!r}")


def _recurring_key(conf: dict[str, Any]) -> str | None:
    value = conf.get("recurring_key")
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.replace("_", "").replace("-", "").isalnum():
        raise CampaignConfigError(f"recurring_key must be a plain name, got {value!r}")
    return value


def _quiet_hours(conf: dict[str, Any]) -> dict[str, Any]:
    policy = _given(conf, "quiet_hours_policy", "wait")
    if policy not in POLICIES:
        raise CampaignConfigError(f"quiet_hours_policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    start = _given(conf, "quiet_hours_start", DEFAULT_START)
    end = _given(conf, "quiet_hours_end", DEFAULT_END)
    parse_clock(start, "quiet_hours_start")
    parse_clock(end, "quiet_hours_end")
    return {"quiet_hours": _bool(conf, "quiet_hours", QUIET_HOURS_BY_DEFAULT), "quiet_hours_start": start,
            "quiet_hours_end": end, "quiet_hours_policy": policy}


def _program_id(conf: dict[str, Any]) -> str:
    value = conf.get("program_id")
    try:
        return str(uuid.UUID(str(value)))
    except (TypeError, ValueError) as err:
        raise CampaignConfigError(
            f"program_id must be the UUID of a row in programs, got {value!r}"
        ) from err


def _audience(conf: dict[str, Any]) -> dict[str, Any]:
    audience = _given(conf, "audience", "all_active")
    if audience not in AUDIENCES:
        raise CampaignConfigError(f"unknown audience {audience!r}; choose one of {', '.join(AUDIENCES)}")
    out: dict[str, Any] = {"audience": audience, "segment_params": {}}
    if audience == "segment":
        segment = conf.get("segment")
        if segment not in SEGMENTS:
            raise CampaignConfigError(
                f"audience 'segment' needs segment set to one of {', '.join(SEGMENTS)}, got {segment!r}"
            )
        params = conf.get("segment_params") or {}
        if not isinstance(params, dict):
            raise CampaignConfigError(f"segment_params must be an object, got {params!r}")
        get_segment(segment).bind(params)  # an unknown or mistyped parameter fails now, not at resolve
        out.update(segment=segment, segment_params=params)
    elif audience == "sql":
        query = conf.get("sql")
        if not isinstance(query, str) or not query.strip():
            raise CampaignConfigError("audience 'sql' needs sql: a SELECT returning a member_id column")
        out["sql"] = query
    elif audience == "csv":
        path = conf.get("csv_path")
        if not isinstance(path, str) or not path.strip():
            raise CampaignConfigError("audience 'csv' needs csv_path: a file path or URI of the member id list")
        out["csv_path"] = path.strip()
    return out


def _refuse_nul(value: Any, where: str) -> None:
    # PostgreSQL text cannot hold NUL: a name, SQL, path or segment value with one failed deep in the
    # database with a driver error that named neither the key nor the character
    if isinstance(value, str) and "\x00" in value:
        raise CampaignConfigError(f"{where} contains a NUL character (\\x00) at position {value.index(chr(0)) + 1}")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_nul(item, f"{where}[{index}]")


def parse_conf(conf: dict[str, Any]) -> CampaignSpec:
    """Validate a trigger conf and return the campaign it describes."""
    # the message's own check (passpush.rendering) says more: where in the template the character is
    _refuse_nul({key: value for key, value in conf.items() if key != "message"}, "")
    name = _given(conf, "name", "")
    if not isinstance(name, str):  # str() made a list ["Weekend"] the history name "['Weekend']"
        raise CampaignConfigError(f"name must be text, got {name!r}")
    name = name.strip()
    if not name:
        raise CampaignConfigError("name is empty: give the campaign a name people will recognise in the history")
    max_length = _int(conf, "max_message_length", minimum=1, maximum=2000) or DEFAULT_MAX_LENGTH
    message = conf.get("message")
    template = parse_template(message if isinstance(message, str) else None)
    check_length(template, max_length)
    rate = _float(conf, "rate_limit_per_second", minimum=0.1, maximum=MAX_RATE_LIMIT)
    cap = _float(conf, "frequency_cap_hours", minimum=0, maximum=24 * 365)
    holdout = _float(conf, "holdout_percent", minimum=0, maximum=MAX_HOLDOUT_PERCENT)
    cooldown = _float(conf, "cooldown_days", minimum=0, maximum=365)
    return CampaignSpec(
        program_id=_program_id(conf),
        name=name,
        message=template.source,
        dry_run=_bool(conf, "dry_run", False),
        confirm_recipients=_int(conf, "confirm_recipients", minimum=0),
        max_recipients=_int(conf, "max_recipients", minimum=0),
        rate_limit_per_second=rate,
        batch_size=_int(conf, "batch_size", minimum=1, maximum=MAX_BATCH_SIZE) or DEFAULT_BATCH_SIZE,
        max_message_length=max_length,
        frequency_cap_hours=DEFAULT_FREQUENCY_CAP_HOURS if cap is None else cap,
        test_recipients=_test_recipients(conf),
        holdout_percent=holdout or 0.0,
        recurring_key=_recurring_key(conf),
        cooldown_days=DEFAULT_COOLDOWN_DAYS if cooldown is None else cooldown,
        **_quiet_hours(conf),
        **_audience(conf),
    )
