"""Resolve a campaign's audience into ``push_campaign_recipients``, inside Postgres.

The audience source (a built-in segment, a custom read-only query, or an uploaded CSV) fills a
session temp table of member ids; one INSERT ... SELECT then joins it to the loyalty tables,
renders every message, applies suppression and numbers batches (``sql/queries/resolve_audience.sql``).
Member lists never travel through Python lists or XCom.

Custom segment SQL is an admin's query and is contained, not trusted: it runs wrapped as a
sub-select (so only one SELECT fits), in a READ ONLY transaction, with a statement timeout,
and under the least-privilege role ``passpush_segment_reader`` when that role exists.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from passpush import campaigns, queries
from passpush.campaign_spec import GOOGLE_DAILY_UPDATE_LIMIT, MAX_BATCHES, CampaignSpec
from passpush.csv_audience import parse_member_ids, read_bytes
from passpush.errors import AudienceError, MessageError
from passpush.segments import get_segment

log = logging.getLogger(__name__)

SEGMENT_ROLE = "passpush_segment_reader"
DEFAULT_SQL_TIMEOUT_MS = 30_000
ID_COLUMNS = ("member_id", "external_id")
SAMPLE_SIZE = 5


@dataclass
class AudiencePreview:
    targeted: int = 0
    eligible: int = 0
    will_buzz_iphone: int = 0
    will_update_google: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    held_out: int = 0
    duplicates_in_input: int = 0
    unknown_sample: list[str] = field(default_factory=list)
    samples: list[dict[str, str]] = field(default_factory=list)
    batches: int = 0
    batch_size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> str:
        return (f"This will buzz {self.will_buzz_iphone} phones ({self.will_buzz_iphone} iPhones; "
                f"{self.will_update_google} Google passes update silently)")


def _strip_sql(query: str) -> str:
    """One trailing semicolon is how people end a query; anything after it is a second statement."""
    stripped = re.sub(r"[\s;]+$", "", query.strip())
    if not stripped:
        raise AudienceError("the segment SQL is empty")
    return stripped


# A transaction-mode pooler (Supabase's pooler on port 6543, PgBouncer pool_mode=transaction) runs each
# transaction on whichever server session is free: pp_audience is missing there, or another resolution's.
SESSION_LOST = ("the audience table was filled in one database session and read in another: loyalty_db goes "
                "through a transaction-mode pooler (Supabase's pooler on port 6543, PgBouncer pool_mode="
                "transaction). passpush needs session mode (Supabase's pooler on port 5432) or a direct connection")


def _create_audience_table(conn: psycopg.Connection) -> str:
    """Create this session's pp_audience; return the token (its comment) that tells it from another's."""
    token = uuid.uuid4().hex
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS pp_audience")
        conn.execute("CREATE TEMP TABLE pp_audience (member_id text NOT NULL)")
        conn.execute(sql.SQL("COMMENT ON TABLE pp_audience IS {}").format(sql.Literal(token)))
        if _segment_role_usable(conn):
            conn.execute(sql.SQL("GRANT INSERT ON pp_audience TO {}").format(sql.Identifier(SEGMENT_ROLE)))
    return token


def _check_audience_table(conn: psycopg.Connection, filled: Filled) -> None:
    """Inside the resolution's transaction: pp_audience is the one this resolution created and filled."""
    row = conn.execute("SELECT obj_description(to_regclass('pg_temp.pp_audience'), 'pg_class')").fetchone()
    if row is None or row[0] != filled.table:
        raise AudienceError(SESSION_LOST)


# Roles belong to the whole server, grants to one database: the role may exist because another
# database on the server was migrated, with no grant here, or without this user being its member.
_ROLE_USABLE_SQL = """
SELECT pg_has_role(current_user, oid, 'MEMBER'), has_table_privilege(oid, 'passes_master', 'SELECT')
FROM pg_roles WHERE rolname = %s
"""


def _segment_role_usable(conn: psycopg.Connection) -> bool:
    """Whether segments can run as the segment role here: it exists, this user may SET it, and this
    database granted it the loyalty tables (migration 024). Otherwise segments run as this user."""
    row = conn.execute(_ROLE_USABLE_SQL, (SEGMENT_ROLE,)).fetchone()
    if row is None:
        return False
    member, can_read = row
    if not (member and can_read):
        log.warning("role %s exists but %s: segments run as the connection's user; apply migration 024 "
                    "or GRANT %s TO the connection's user", SEGMENT_ROLE,
                    "this user is not its member" if not member else "it has no SELECT on passes_master here",
                    SEGMENT_ROLE)
    return bool(member and can_read)


# Migration 024: runs a query as the segment role, where the query cannot change role again.
SEGMENT_FUNCTION = "passpush_run_segment(text,text)"
CONTAINED_INSERT_SQL = ("INSERT INTO pp_audience (member_id)"
                        " SELECT DISTINCT * FROM passpush_run_segment(%(query)s, %(column)s)")


def _segment_function_available(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT has_function_privilege(to_regprocedure(%s), 'EXECUTE')"
                       " WHERE to_regprocedure(%s) IS NOT NULL", (SEGMENT_FUNCTION, SEGMENT_FUNCTION)).fetchone()
    return bool(row and row[0])


def _session_settings(conn: psycopg.Connection) -> set[tuple[str, str]]:
    return set(conn.execute("SELECT name, setting FROM pg_settings WHERE source = 'session'").fetchall())


def _fill_from_query(conn: psycopg.Connection, query: str, params: dict[str, Any], *,
                     timeout_ms: int, label: str) -> int:
    """Run a segment query read-only and copy its member ids into pp_audience; return how many."""
    # The admin's text, only ever placed inside a sub-select, on lines of its own so that a trailing
    # "-- comment" cannot swallow the closing parenthesis.
    body = sql.SQL("\n{}\n").format(sql.SQL(_strip_sql(query)))
    # No parameters (custom SQL) means None, so a "%" in the query stays a "%" (LIKE 'CUST-%').
    bound = params or None
    try:
        # Nothing may run before this block: on a connection that is not autocommit, a query here would
        # open a transaction, the block would be a savepoint, and SET LOCAL ROLE / statement_timeout
        # would outlive it into the INSERT of the recipients.
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(timeout_ms))))
            if _segment_role_usable(conn):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(SEGMENT_ROLE)))
            settings = _session_settings(conn)
            # binary=True forces the extended query protocol, which accepts a single statement only:
            # "...) AS s; COMMIT; DELETE ..." cannot escape the sub-select and its read-only transaction.
            probe = sql.SQL("SELECT * FROM ({}) AS segment LIMIT 0").format(body)
            cur = conn.execute(probe, bound, binary=True)
            columns = [c.name for c in cur.description or []]
            column = next((c for c in ID_COLUMNS if c in columns), None)
            if column is None:
                raise AudienceError(
                    f"{label} must return a member_id column (got {', '.join(columns) or 'no columns'})")
            if not params and _segment_function_available(conn):
                # Custom SQL: inside the SECURITY DEFINER function no set_config('role', ...) can leave the role.
                cur = conn.execute(CONTAINED_INSERT_SQL, {"query": body.as_string(conn), "column": column},
                                   binary=True)
            else:
                # A built-in segment selects one row per pass: ids repeat only for a member with several
                # passes, whom the resolution reduces to one row anyway. An admin's query may repeat anything.
                distinct = sql.SQL("" if params else "DISTINCT ")
                cur = conn.execute(
                    sql.SQL("INSERT INTO pp_audience (member_id) SELECT {}segment.{}::text FROM ({}) AS segment"
                            " WHERE segment.{} IS NOT NULL").format(
                        distinct, sql.Identifier(column), body, sql.Identifier(column)),
                    bound,
                    binary=True,
                )
            # set_config(name, value, false) outlives the transaction (and a SECURITY DEFINER function):
            # a changed search_path or statement_timeout would follow into the resolution on this
            # connection. Raising here rolls the transaction back, and the changes with it.
            changed = sorted({name for name, _ in _session_settings(conn) ^ settings})
            if changed:
                raise AudienceError(f"{label} changes settings ({', '.join(changed)}): "
                                    "only a single read-only SELECT is allowed")
        return cur.rowcount
    except AudienceError:
        raise
    except psycopg.errors.QueryCanceled as err:
        raise AudienceError(f"{label} took longer than {timeout_ms / 1000:g} s and was cancelled") from err
    except psycopg.errors.ReadOnlySqlTransaction as err:
        raise AudienceError(f"{label} tries to write: only a single read-only SELECT is allowed") from err
    except psycopg.errors.InsufficientPrivilege as err:
        raise AudienceError(f"{label} reads something the segment role may not: {err.diag.message_primary}") from err
    except psycopg.errors.SyntaxError as err:
        raise AudienceError(
            f"{label} is not a single SELECT ({err.diag.message_primary}): "
            "write one read-only query returning member_id") from err
    except psycopg.Error as err:
        raise AudienceError(f"{label} failed: {err.diag.message_primary or err}") from err


class Filled(NamedTuple):
    """What fill_audience wrote to pp_audience."""

    requested: int  # rows written; a built-in segment writes a member with several passes once per pass
    duplicates: int = 0  # ids of a CSV or test send that repeated an earlier one, written once
    table: str = ""  # the token of the pp_audience written to (_create_audience_table)


COPY_CHUNK = 50_000  # ids per write to COPY: one call per chunk instead of one per id
_COPY_SPECIAL = re.compile(r"[\t\r\\]")


def _copy_distinct(conn: psycopg.Connection, ids: Iterable[str]) -> Filled:
    """COPY each id once into pp_audience, in first-seen order."""
    listed = list(ids)
    distinct = list(dict.fromkeys(listed))
    with conn.transaction(), conn.cursor().copy("COPY pp_audience (member_id) FROM STDIN") as copy:
        for start in range(0, len(distinct), COPY_CHUNK):
            chunk = distinct[start:start + COPY_CHUNK]
            text = "\n".join(chunk) + "\n"
            if text.count("\n") == len(chunk) and not _COPY_SPECIAL.search(text):
                copy.write(text)  # one line per id, nothing COPY's text format would read differently
            else:
                for member_id in chunk:  # an id with a tab, newline or backslash: psycopg escapes it
                    copy.write_row((member_id,))
    return Filled(requested=len(distinct), duplicates=len(listed) - len(distinct))


def fill_audience(conn: psycopg.Connection, spec: CampaignSpec) -> Filled:
    """Fill pp_audience from the campaign's source."""
    table = _create_audience_table(conn)
    try:
        return _fill(conn, spec)._replace(table=table)
    except (psycopg.errors.UndefinedTable, AudienceError) as err:
        cause = err if isinstance(err, psycopg.Error) else err.__cause__
        if isinstance(cause, psycopg.errors.UndefinedTable) and "pp_audience" in str(cause):
            raise AudienceError(SESSION_LOST) from err
        raise


def _fill(conn: psycopg.Connection, spec: CampaignSpec) -> Filled:
    if spec.test_recipients:
        return _copy_distinct(conn, spec.test_recipients)
    if spec.audience == "csv":
        assert spec.csv_path is not None
        return _copy_distinct(conn, parse_member_ids(read_bytes(spec.csv_path), source=spec.csv_path))
    if spec.audience == "sql":
        assert spec.sql is not None
        return Filled(_fill_from_query(conn, spec.sql, {}, timeout_ms=DEFAULT_SQL_TIMEOUT_MS,
                                       label="the custom segment SQL"))
    segment = get_segment(spec.segment if spec.audience == "segment" else "all_active")  # type: ignore[arg-type]
    params = {"program_id": spec.program_id, **segment.bind(spec.segment_params)}
    return Filled(_fill_from_query(conn, segment.sql, params, timeout_ms=DEFAULT_SQL_TIMEOUT_MS,
                                   label=f"segment {segment.name!r}"))


class Written(NamedTuple):
    """One group of what a resolution wrote. resolve_audience.sql returns these rows; _COUNT_WRITTEN_SQL
    reads them from the table."""

    status: str
    reason: str | None
    wallet: str | None
    recipients: int
    longest_message: int | None  # of a recipient to send to
    batches: int  # the campaign's, the same on every row
    largest_batch: int | None  # likewise


WrittenCounts = list[Written]

_COUNT_WRITTEN_SQL = """
WITH batches AS (
    SELECT count(*) AS recipients FROM push_campaign_recipients
    WHERE campaign_id = %(campaign_id)s AND batch_no IS NOT NULL GROUP BY batch_no
)
SELECT status, reason, wallet, count(*), max(length(rendered_message)) FILTER (WHERE status = 'PENDING'),
       (SELECT count(*) FROM batches), (SELECT max(recipients) FROM batches)
FROM push_campaign_recipients WHERE campaign_id = %(campaign_id)s GROUP BY 1, 2, 3
"""


def _insert_recipients(conn: psycopg.Connection, campaign_id: str, spec: CampaignSpec,
                       requested: int) -> WrittenCounts:
    query = queries.composed("resolve_audience", rendered=spec.template.to_sql())
    program = campaigns.load_program(conn, spec.program_id)
    try:
        return _run_resolve(conn, query, campaign_id, spec, program.timezone, requested)
    except psycopg.errors.UniqueViolation as err:
        # The statement writes one row per member: a second row can only come from a second resolution.
        raise AudienceError(
            f"campaign {campaign_id} is being resolved by another task at the same time; "
            "let that one finish, then run this one again") from err


def _run_resolve(conn: psycopg.Connection, query: sql.Composed, campaign_id: str, spec: CampaignSpec,
                 program_timezone: str, requested: int) -> WrittenCounts:
    # A test send goes to the team's own passes, however recently they were reached, and holds no one out.
    rows = conn.execute(query, {
        "requested": requested,
        "program_id": spec.program_id,
        "program_timezone": program_timezone,
        "campaign_id": campaign_id,
        "cap_seconds": 0 if spec.is_test else spec.frequency_cap_hours * 3600,
        "recurring_key": None if spec.is_test else spec.recurring_key,
        "cooldown_seconds": spec.cooldown_days * 86400,
        "holdout_basis_points": 0 if spec.is_test else round(spec.holdout_percent * 100),
        "google_daily_limit": GOOGLE_DAILY_UPDATE_LIMIT,
        "batch_size": spec.batch_size,
        "max_batches": MAX_BATCHES,
    }).fetchall()
    return [Written(*row) for row in rows]


def _check_rendered_length(conn: psycopg.Connection, campaign_id: str, limit: int, counts: WrittenCounts) -> None:
    if max((w.longest_message for w in counts if w.longest_message is not None), default=0) <= limit:
        return
    row = conn.execute(
        "SELECT member_id, length(rendered_message), rendered_message FROM push_campaign_recipients"
        " WHERE campaign_id = %s AND status = 'PENDING' AND length(rendered_message) > %s"
        " ORDER BY length(rendered_message) DESC LIMIT 1",
        (campaign_id, limit),
    ).fetchone()
    if row:
        raise MessageError(
            f"the message renders to {row[1]} characters for member {row[0]} ({row[2]!r}), over the "
            f"limit of {limit}: shorten it, use shorter placeholders or raise max_message_length")


def build_preview(conn: psycopg.Connection, campaign_id: str, duplicates: int = 0,
                  counts: WrittenCounts | None = None) -> AudiencePreview:
    """The preview of a resolved campaign, from the counts its resolution returned, else from its rows."""
    if counts is None:
        counts = [Written(*row) for row in conn.execute(_COUNT_WRITTEN_SQL, {"campaign_id": campaign_id})]
    preview = AudiencePreview(duplicates_in_input=duplicates)
    if counts:  # the campaign's batches are on every row
        preview.batches, preview.batch_size = counts[0].batches, counts[0].largest_batch or 0
    for status, reason, wallet, count, *_ in counts:
        preview.targeted += count
        if status == "SKIPPED":
            preview.skipped[reason] = preview.skipped.get(reason, 0) + count
        elif status == "HELD_OUT":
            preview.held_out += count
        else:
            preview.eligible += count
            if wallet == "google":
                preview.will_update_google += count
            else:
                preview.will_buzz_iphone += count
    if preview.skipped.get("unknown_member"):
        preview.unknown_sample = [r[0] for r in conn.execute(
            "SELECT member_id FROM push_campaign_recipients WHERE campaign_id = %s AND reason = 'unknown_member'"
            " ORDER BY member_id LIMIT 10", (campaign_id,))]
    # The first members the campaign is for (a batch number is theirs only), in the primary key's order.
    preview.samples = [
        {"member_id": r[0], "wallet": r[1], "message": r[2]}
        for r in conn.execute(
            "SELECT member_id, wallet, rendered_message FROM push_campaign_recipients"
            " WHERE campaign_id = %s AND batch_no IS NOT NULL ORDER BY member_id LIMIT %s",
            (campaign_id, SAMPLE_SIZE))
    ]
    return preview


def _already_resolved(conn: psycopg.Connection, campaign_id: str) -> bool:
    """Once sending started, the recipient table is the campaign's record: never rebuild it."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status NOT IN ('PENDING', 'SKIPPED')), count(*)"
        " FROM push_campaign_recipients WHERE campaign_id = %s",
        (campaign_id,),
    ).fetchone()
    return bool(row and row[0] > 0)


def resolve(conn: psycopg.Connection, campaign_id: str) -> AudiencePreview:
    """Resolve the audience (idempotent until sending starts) and store the preview on the campaign."""
    campaign = campaigns.get_campaign(conn, campaign_id)
    spec = campaigns.spec_of(campaign)
    # a dry run never sends: its rows (closed by reconcile as CANCELLED dry_run) can always be rebuilt
    if not campaign["dry_run"] and _already_resolved(conn, campaign_id):
        log.info("campaign %s already sending: keeping its recipients", campaign_id)
        return build_preview(conn, campaign_id, (campaign["preview"] or {}).get("duplicates_in_input", 0))
    campaigns.mark_started(conn, campaign_id)
    conn.commit()
    filled = fill_audience(conn, spec)
    with conn.transaction():
        _check_audience_table(conn, filled)
        # Autovacuum never analyzes temp tables: without statistics the planner takes pp_audience for
        # 200 ids and joins a million of them by nested loops (minutes instead of seconds).
        conn.execute("ANALYZE pp_audience")
        # The statement's time goes to sorts, index look-ups and writes, not to expressions that compiled
        # code would speed up: JIT compiled it for 0.5 s and won nothing back (bench/RESULTS.md).
        conn.execute("SET LOCAL jit = off")
        conn.execute("DELETE FROM push_campaign_recipients WHERE campaign_id = %s", (campaign_id,))
        conn.execute("DELETE FROM push_campaign_batches WHERE campaign_id = %s", (campaign_id,))
        counts = _insert_recipients(conn, campaign_id, spec, filled.requested)
        _check_rendered_length(conn, campaign_id, spec.max_message_length, counts)
        preview = build_preview(conn, campaign_id, filled.duplicates, counts)
        conn.execute(
            "UPDATE push_campaigns SET recipient_count = %s, skipped_count = %s, preview = %s,"
            " updated_at = now() WHERE id = %s",
            (preview.targeted, sum(preview.skipped.values()), psycopg.types.json.Jsonb(preview.as_dict()),
             campaign_id),
        )
    conn.execute("DROP TABLE IF EXISTS pp_audience")
    conn.commit()
    log.info("audience of campaign %s: %s", campaign_id, preview.as_dict())
    return preview
