"""Recurring campaigns declared in ``include/campaigns.yaml``.

The whole file is validated before any DAG is built, so a bad entry never half-registers DAGs:
the error names the file, the line and the field. Validation reuses ``parse_conf`` (the same
rules as a triggered campaign), with a placeholder program id when none is configured yet.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from passpush.campaign_spec import DEFAULT_COOLDOWN_DAYS, SEGMENTS, parse_conf
from passpush.errors import PassPushError
from passpush.paths import PROJECT_ROOT
from passpush.quiet_hours import DEFAULT_END, DEFAULT_START

CONFIG_ENV = "PASSPUSH_RECURRING_CONFIG"
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "campaigns.yaml"
DEFAULT_HOLDOUT_PERCENT = 10.0
_NAME = re.compile(r"[a-z][a-z0-9_]{0,60}")
_FIELDS = {"name", "title", "program_id", "schedule", "timezone", "audience", "message", "max_recipients",
           "cooldown_days", "holdout_percent", "enabled", "batch_size", "rate_limit_per_second", "quiet_hours",
           "quiet_hours_start", "quiet_hours_end", "quiet_hours_policy"}
_AUDIENCE_FIELDS = {"segment", "params", "all_active"}
_PLACEHOLDER_PROGRAM = "00000000-0000-0000-0000-000000000000"


class RecurringConfigError(PassPushError):
    """The recurring-campaign file is invalid; the message names file, line and field."""


@dataclass(frozen=True)
class RecurringCampaign:
    name: str
    title: str
    program_id: str
    schedule: str
    timezone: str
    message: str
    segment: str | None
    segment_params: dict[str, Any] = field(default_factory=dict)
    max_recipients: int | None = None
    cooldown_days: float = DEFAULT_COOLDOWN_DAYS
    holdout_percent: float = DEFAULT_HOLDOUT_PERCENT
    enabled: bool = True
    batch_size: int = 1000
    rate_limit_per_second: float | None = None
    # Nobody watches a scheduled run: members asleep in their own time zone wait for their morning.
    quiet_hours: bool = True
    quiet_hours_start: str = DEFAULT_START
    quiet_hours_end: str = DEFAULT_END
    quiet_hours_policy: str = "wait"

    @property
    def dag_id(self) -> str:
        return f"recurring_{self.name}"

    @property
    def live(self) -> bool:
        """Scheduled only when enabled and pointed at a program."""
        return self.enabled and bool(self.program_id)

    def conf(self) -> dict[str, Any]:
        """The push_campaign conf of one scheduled run."""
        return {
            "program_id": self.program_id, "name": self.title, "message": self.message,
            "audience": "segment" if self.segment else "all_active", "segment": self.segment,
            "segment_params": self.segment_params, "max_recipients": self.max_recipients,
            "dry_run": not self.live, "holdout_percent": self.holdout_percent, "recurring_key": self.name,
            "cooldown_days": self.cooldown_days, "batch_size": self.batch_size,
            "rate_limit_per_second": self.rate_limit_per_second, "quiet_hours": self.quiet_hours,
            "quiet_hours_start": self.quiet_hours_start, "quiet_hours_end": self.quiet_hours_end,
            "quiet_hours_policy": self.quiet_hours_policy,
        }


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))


def _fail(path: Path, node: yaml.Node | None, message: str) -> RecurringConfigError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return RecurringConfigError(f"{path}{line}: {message}")


def _value_nodes(mapping: yaml.MappingNode) -> dict[str, yaml.Node]:
    return {key.value: value for key, value in mapping.value}


def _check_schedule(path: Path, nodes: dict[str, yaml.Node], entry_node: yaml.Node, cron: Any, tz: Any) -> None:
    from croniter import croniter

    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise _fail(path, nodes.get("schedule", entry_node),
                    f"schedule {cron!r} is not a cron expression (e.g. \"0 10 * * 5\")")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise _fail(path, nodes.get("timezone", entry_node),
                    f"timezone {tz!r} is not an IANA time zone (e.g. America/Los_Angeles)") from err


def _parse_entry(path: Path, node: yaml.Node, entry: Any) -> RecurringCampaign:
    if not isinstance(entry, dict) or not isinstance(node, yaml.MappingNode):
        raise _fail(path, node, "each campaign must be a mapping of fields")
    nodes = _value_nodes(node)
    unknown = set(entry) - _FIELDS
    if unknown:
        first = sorted(unknown)[0]
        raise _fail(path, nodes.get(first), f"unknown field {first!r}; fields: {', '.join(sorted(_FIELDS))}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(path, nodes.get("name", node), f"name {name!r} must be lower-case letters, digits, underscores")
    _check_schedule(path, nodes, node, entry.get("schedule"), entry.get("timezone", "UTC"))
    audience = entry.get("audience") or {}
    _check_audience_keys(path, nodes.get("audience"), audience)
    _check_clocks(path, nodes, entry)
    segment = audience.get("segment") if isinstance(audience, dict) else None
    if not isinstance(audience, dict) or (segment is None and not audience.get("all_active")) or \
            (segment is not None and segment not in SEGMENTS):
        raise _fail(path, nodes.get("audience", node),
                    f"audience must be {{segment: {'|'.join(SEGMENTS)}, params: {{...}}}} or {{all_active: true}}")
    campaign = RecurringCampaign(
        name=name, title=str(entry.get("title") or name), program_id=str(entry.get("program_id") or ""),
        schedule=entry["schedule"], timezone=str(entry.get("timezone", "UTC")), message=entry.get("message"),
        segment=segment, segment_params=dict(audience.get("params") or {}),
        max_recipients=entry.get("max_recipients"), cooldown_days=entry.get("cooldown_days", DEFAULT_COOLDOWN_DAYS),
        holdout_percent=entry.get("holdout_percent", DEFAULT_HOLDOUT_PERCENT),
        enabled=_enabled(path, nodes.get("enabled", node), entry.get("enabled", True)),
        batch_size=entry.get("batch_size", 1000), rate_limit_per_second=entry.get("rate_limit_per_second"),
        quiet_hours=entry.get("quiet_hours", True),
        quiet_hours_start=str(entry.get("quiet_hours_start", DEFAULT_START)),
        quiet_hours_end=str(entry.get("quiet_hours_end", DEFAULT_END)),
        quiet_hours_policy=entry.get("quiet_hours_policy", "wait"),
    )
    _validate_as_conf(path, node, campaign)
    return campaign


def _check_audience_keys(path: Path, node: yaml.Node | None, audience: Any) -> None:
    # a typo such as `parmas:` was ignored: the segment ran with its default parameters
    if not isinstance(audience, dict) or not isinstance(node, yaml.MappingNode):
        return
    unknown = sorted(set(audience) - _AUDIENCE_FIELDS)
    if unknown:
        key_node = next(key for key, _ in node.value if key.value == unknown[0])
        raise _fail(path, key_node, f"unknown audience field {unknown[0]!r}; fields: "
                                    f"{', '.join(sorted(_AUDIENCE_FIELDS))}")


def _check_clocks(path: Path, nodes: dict[str, yaml.Node], entry: dict[str, Any]) -> None:
    # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320, which read as a clock is 13:20
    for key in ("quiet_hours_start", "quiet_hours_end"):
        if key in entry and not isinstance(entry[key], str):
            raise _fail(path, nodes.get(key), f"{key} must be quoted, like \"22:00\": YAML reads "
                                              f"{nodes[key].value} unquoted as the number {entry[key]!r}")


def _enabled(path: Path, node: yaml.Node, value: Any) -> bool:
    # bool("false") is True: a quoted "false" made the campaign live, scheduled and sending for real
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise _fail(path, node, f"enabled must be true or false, got {value!r}")
    return value


def _validate_as_conf(path: Path, node: yaml.Node, campaign: RecurringCampaign) -> None:
    from passpush.segments import get_segment

    conf = {**campaign.conf(), "program_id": campaign.program_id or _PLACEHOLDER_PROGRAM}
    try:
        spec = parse_conf(conf)
        if spec.segment:
            get_segment(spec.segment).bind(spec.segment_params)
    except PassPushError as err:
        raise _fail(path, node, f"campaign {campaign.name!r}: {err}") from err
    _validate_as_form(path, node, campaign)


def _validate_as_form(path: Path, node: yaml.Node, campaign: RecurringCampaign) -> None:
    """The values become the DAG's form defaults: one that its schema refuses (a quoted "10" for a number)
    failed the whole DAG file's import, with no file or line, and took every recurring DAG with it."""
    from airflow.sdk.exceptions import ParamValidationError

    from passpush.campaign_dag import form_params

    for key, param in form_params(**{k: v for k, v in campaign.conf().items() if v is not None}).items():
        try:
            param.resolve(suppress_exception=False)
        except ParamValidationError as err:
            first_line = str(err).splitlines()[0]
            raise _fail(path, _value_nodes(node).get(key, node) if isinstance(node, yaml.MappingNode) else node,
                        f"campaign {campaign.name!r}: {key}: {first_line}") from err


def load_recurring(path: Path | None = None) -> list[RecurringCampaign]:
    """Every campaign of the file, all validated first; raises RecurringConfigError on the first problem."""
    path = path or config_path()
    try:
        text = path.read_text()
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except OSError as err:
        raise RecurringConfigError(f"{path}: cannot read the recurring-campaign file: {err}") from err
    except yaml.YAMLError as err:
        raise RecurringConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("campaigns"), list) or root is None:
        raise _fail(path, root, "expected a top-level 'campaigns:' list")
    entries = _value_nodes(root)["campaigns"].value  # type: ignore[arg-type]
    campaigns = [_parse_entry(path, node, entry) for node, entry in zip(entries, data["campaigns"], strict=True)]
    names = [c.name for c in campaigns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(path, entries[names.index(duplicates[0], names.index(duplicates[0]) + 1)],
                    f"campaign name {duplicates[0]!r} is used twice")
    return campaigns
