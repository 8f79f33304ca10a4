"""Message templates: ``"Hi {first_name|there}, {points} points waiting!"``.

A template is parsed once into literal text and placeholders. Placeholders come from a fixed
list of member fields; ``{name|fallback}`` uses the fallback when the member's value is empty.
The same parsed template renders in Python (previews, tests) and compiles to one SQL
expression, so a million recipients are rendered inside Postgres while resolving the audience.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from psycopg import sql

from passpush.errors import MessageError

# Lock screens show about two lines of a pass notification before truncating with "…";
# 160 characters keeps the whole offer visible on an iPhone and inside Google's message body.
DEFAULT_MAX_LENGTH = 160

# Placeholder -> SQL expression over the audience query's aliases (p = passes_master, u = users).
PLACEHOLDERS: dict[str, str] = {
    "points": "trim_scale(p.points_balance)::text",
    "first_name": "u.first_name",
    "last_name": "u.last_name",
    "tier": "p.tier",
    "member_id": "p.external_id",
    "zip": "u.zip",
}

# Numbers are never blank: their fallback is for a missing value only, and their expression (the rounding
# of every member's points) is then evaluated once per row instead of twice.
_NUMERIC = {"points"}

_TOKEN = re.compile(r"\{([^{}]*)\}")
# A value made only of these is blank and takes the fallback like an empty one: "Hi {first_name|there}"
# with first_name "   " is "Hi there", not "Hi    ". _BLANK_SQL is the same set, for btrim.
_BLANK = " \t\n\r\f\v\u00a0"
_BLANK_SQL = sql.SQL(r"(E' \t\n\r\f\x0B' || chr(160))")
_BLANK_CODES_SQL = sql.SQL(", ").join(sql.Literal(code) for code in [0, *map(ord, _BLANK)])  # ascii('') is 0


@dataclass(frozen=True)
class Placeholder:
    name: str
    fallback: str | None


Part = str | Placeholder


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[Part, ...]

    @property
    def placeholders(self) -> set[str]:
        return {p.name for p in self.parts if isinstance(p, Placeholder)}

    def render(self, values: dict[str, object]) -> str:
        """Render for one member; an empty, blank or missing value takes the fallback (or stays empty)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values.get(part.name)
            text = _format_value(value)
            out.append(text if text.strip(_BLANK) else (part.fallback or ""))
        return "".join(out)

    def to_sql(self) -> sql.Composable:
        """One SQL text expression that renders the template per row; literals are bound, never formatted."""
        pieces: list[sql.Composable] = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(_text_literal(part))
                continue
            column = sql.SQL(PLACEHOLDERS[part.name])
            fallback = _text_literal(part.fallback or "")
            if part.name in _NUMERIC:
                pieces.append(sql.SQL("coalesce({}, {})").format(column, fallback))
            else:
                # a value that does not start blank is not blank: btrim only for the few that do
                pieces.append(sql.SQL("CASE WHEN ascii({}) NOT IN ({}) OR btrim({}, {}) <> '' THEN {} ELSE {} END")
                              .format(column, _BLANK_CODES_SQL, column, _BLANK_SQL, column, fallback))
        if not pieces:
            return sql.Literal("")
        # Every piece is non-NULL (literals, values or their fallbacks), so || is safe; concat() would cap a
        # template at 100 parts.
        return sql.SQL("({})").format(sql.SQL(" || ").join(pieces))


def _text_literal(text: str) -> sql.Composable:
    """A quoted literal without a bare "%": the expression goes into queries that also bind parameters,
    where psycopg would read "50% off" as a placeholder. chr(37) is "%"."""
    if "%" not in text:
        return sql.Literal(text)
    pieces = sql.SQL(" || chr(37) || ").join(sql.Literal(piece) for piece in text.split("%"))
    return sql.SQL("({})").format(pieces)


def _format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    # Postgres numerics arrive as Decimal("120.00") or Decimal("120.50"); members see "120" or "120.5",
    # as trim_scale() gives in SQL. Text values are shown as they are, as in SQL.
    if isinstance(value, Decimal | float) and re.fullmatch(r"-?\d+\.\d+", text):
        return text.rstrip("0").rstrip(".")
    return text


def parse_template(source: str | None) -> Template:
    """Parse and validate a template; raise MessageError naming the culprit."""
    if source is None or not source.strip():
        raise MessageError("the message is empty: write the text members should see on their lock screen")
    if "\x00" in source:  # the one character PostgreSQL text cannot store; other control characters it can
        raise MessageError(f"the message contains a NUL character (\\x00) at position {source.index(chr(0)) + 1}: "
                           "PostgreSQL cannot store it, remove it")
    parts: list[Part] = []
    position = 0
    for match in _TOKEN.finditer(source):
        if match.start() > position:
            parts.append(source[position:match.start()])
        parts.append(_parse_placeholder(match.group(1), source))
        position = match.end()
    tail = source[position:]
    if "{" in tail or "}" in tail or any("{" in p or "}" in p for p in parts if isinstance(p, str)):
        raise MessageError(f"unbalanced brace in message {source!r}: placeholders look like {{points}}")
    if tail:
        parts.append(tail)
    return Template(source=source, parts=tuple(parts))


def _parse_placeholder(body: str, source: str) -> Placeholder:
    name, sep, fallback = body.partition("|")
    name = name.strip()
    if name not in PLACEHOLDERS:
        known = ", ".join(f"{{{n}}}" for n in sorted(PLACEHOLDERS))
        raise MessageError(f"unknown placeholder {{{body}}} in message {source!r}; known placeholders: {known}")
    return Placeholder(name=name, fallback=fallback if sep else None)


def longest_possible_literal_length(template: Template) -> int:
    """Length of the fixed text: a lower bound on every rendered message, checked before any SQL runs."""
    return sum(len(p) for p in template.parts if isinstance(p, str))


def check_length(template: Template, max_length: int) -> None:
    fixed = longest_possible_literal_length(template)
    if fixed > max_length:
        raise MessageError(
            f"the message is {fixed} characters before personalisation, over the limit of {max_length}: "
            "shorten it or raise max_message_length"
        )
