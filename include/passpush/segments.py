"""Built-in audience segments, one SQL file each in ``sql/segments/``.

A segment file starts with a header that the trigger form and the campaign page read:

    -- name: whale
    -- description: Big spenders: active members holding more than N points.
    -- param: min_points int 500 Points balance above which a member counts

Parameters are bound by psycopg (``%(min_points)s``), never formatted into the SQL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from passpush.errors import CampaignConfigError
from passpush.paths import SEGMENTS_DIR

_PARAM = re.compile(r"--\s*param:\s*(\w+)\s+(int|float|list|text)\s+(\S+)\s*(.*)")


@dataclass(frozen=True)
class SegmentParam:
    name: str
    type: str
    default: Any
    description: str


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    params: tuple[SegmentParam, ...]
    sql: str

    def bind(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with the given params, each coerced to its declared type."""
        known = {p.name for p in self.params}
        unknown = set(given) - known
        if unknown:
            raise CampaignConfigError(
                f"segment {self.name!r} has no parameter {', '.join(sorted(unknown))}; "
                f"its parameters: {', '.join(sorted(known)) or 'none'}"
            )
        return {p.name: _coerce(self.name, p, given.get(p.name, p.default)) for p in self.params}


def _coerce(segment: str, param: SegmentParam, value: Any) -> Any:
    try:
        if param.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return _not_negative(segment, param, int(value))
        if param.type == "float":
            return float(value)
        if param.type == "list":
            # list() of a dict is its keys ({"90210": 1} -> ["90210"]): only a string or a list is a list
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple) or not all(_is_list_item(v) for v in items):
                raise TypeError(value)
            cleaned = [str(v).strip() for v in items if str(v).strip()]
            if not cleaned:
                raise ValueError(value)
            return cleaned
        return str(value)
    except (TypeError, ValueError) as err:
        raise CampaignConfigError(
            f"segment {segment!r} parameter {param.name!r} must be a {param.type}, got {value!r}"
        ) from err


def _not_negative(segment: str, param: SegmentParam, number: int) -> int:
    # Every int parameter is a count (days, points): a negative one turns the segment inside out,
    # e.g. slumber with days -5 selects every active member.
    if number < 0:
        raise CampaignConfigError(f"segment {segment!r} parameter {param.name!r} must be 0 or more, got {number}")
    return number


def _is_list_item(value: Any) -> bool:
    """A ZIP code or id: text or a whole number, never null, a flag or a nested object."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def _parse(text: str, fallback_name: str) -> Segment:
    name, description, params = fallback_name, "", []
    for line in text.splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("-- description:"):
            description = line.split(":", 1)[1].strip()
        elif match := _PARAM.match(line):
            pname, ptype, raw_default, pdesc = match.groups()
            default = json.loads(raw_default) if ptype in {"list", "int", "float"} else raw_default
            params.append(SegmentParam(pname, ptype, default, pdesc.strip()))
    return Segment(name=name, description=description, params=tuple(params), sql=text)


@cache
def load_segments() -> dict[str, Segment]:
    return {path.stem: _parse(path.read_text(), path.stem) for path in sorted(SEGMENTS_DIR.glob("*.sql"))}


def get_segment(name: str) -> Segment:
    segments = load_segments()
    if name not in segments:
        raise CampaignConfigError(f"unknown segment {name!r}; choose one of {', '.join(sorted(segments))}")
    return segments[name]
