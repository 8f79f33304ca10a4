"""The SQL migrations under yoyo: idempotent, recorded, and keeping the originally specified schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from passpush import sending
from passpush.db.embedded import drop_database, ensure_database
from passpush.db.migrations import apply_migrations, yoyo_url
from passpush.paths import MIGRATIONS_DIR

pytestmark = pytest.mark.postgres

MIGRATION_IDS = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))


def _with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture
def empty_database(migrated_database_url: str) -> Iterator[str]:
    """A brand-new database on the test server, dropped afterwards."""
    admin = _with_dbname(migrated_database_url, "postgres")
    name = f"passpush_mig_{uuid.uuid4().hex[:10]}"
    ensure_database(admin, name)
    try:
        yield _with_dbname(migrated_database_url, name)
    finally:
        drop_database(admin, name)


def _tables(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}


def test_first_run_applies_every_file_in_order_and_the_second_run_nothing(empty_database: str) -> None:
    assert _tables(empty_database) == set()

    assert apply_migrations(empty_database) == MIGRATION_IDS
    tables = _tables(empty_database)
    assert {"programs", "users", "passes_master", "push_campaigns", "push_campaign_recipients",
            "passpush_rate_limits"} <= tables

    recorded = "SELECT migration_id, applied_at_utc FROM _yoyo_migration ORDER BY 1"
    with psycopg.connect(empty_database) as conn:
        before = conn.execute(recorded).fetchall()
    assert apply_migrations(empty_database) == []
    assert apply_migrations(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        after = conn.execute(recorded).fetchall()
        applied_log = conn.execute(
            "SELECT migration_id FROM _yoyo_log WHERE operation = 'apply'"
            " ORDER BY created_at_utc, migration_id").fetchall()
    assert _tables(empty_database) == tables
    assert after == before
    assert [m for m, _ in after] == MIGRATION_IDS
    assert [m for (m,) in applied_log] == MIGRATION_IDS  # each file applied exactly once


def test_session_database_is_up_to_date(migrated_database_url: str, db: psycopg.Connection) -> None:
    assert apply_migrations(migrated_database_url) == []
    recorded = [r[0] for r in db.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1")]
    assert recorded == MIGRATION_IDS


def test_rerunning_a_file_by_hand_changes_nothing(empty_database: str) -> None:
    """Every file is written to be re-runnable (IF NOT EXISTS), so a half-recorded apply cannot break."""
    apply_migrations(empty_database)
    with psycopg.connect(empty_database) as conn:
        columns = conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                               " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
        for migration_id in MIGRATION_IDS:
            conn.execute((MIGRATIONS_DIR / f"{migration_id}.sql").read_text())
        assert conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                            " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall() == columns


@pytest.mark.parametrize(
    ("conninfo", "url"),
    [
        ("postgresql://u:p@h:5433/db", "postgresql+psycopg://u:p@h:5433/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+psycopg://u@h/db?sslmode=require"),
        ("host=h port=5433 dbname=db user=u password=p sslmode=require",
         "postgresql+psycopg://u:p@h:5433/db?sslmode=require"),
        ("host=/tmp/pg dbname=db user=postgres", "postgresql+psycopg://postgres@/db?host=/tmp/pg"),
    ],
)
def test_yoyo_url(conninfo: str, url: str) -> None:
    assert yoyo_url(conninfo) == url


# The notification manager's original push_campaigns columns, each with its original default.
ORIGINAL_PUSH_CAMPAIGNS = {
    "id": ("uuid", "gen_random_uuid()"),
    "program_id": ("uuid", None),
    "name": ("text", None),
    "message_text": ("text", None),
    "target_query": ("text", None),
    "csv_upload_url": ("text", None),
    "status": ("text", "'PENDING'::text"),
    "sent_count": ("integer", "0"),
    "failed_count": ("integer", "0"),
    "created_at": ("timestamp with time zone", "now()"),
}


def test_push_campaigns_keeps_every_original_column_and_default(db: psycopg.Connection) -> None:
    columns = {name: (data_type, default) for name, data_type, default in db.execute(
        "SELECT column_name, data_type, column_default FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'push_campaigns'")}
    assert {k: columns.get(k) for k in ORIGINAL_PUSH_CAMPAIGNS} == ORIGINAL_PUSH_CAMPAIGNS
    nullable = dict(db.execute(
        "SELECT column_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'push_campaigns'").fetchall())
    assert (nullable["program_id"], nullable["name"], nullable["message_text"]) == ("NO", "NO", "NO")
    primary_key = db.execute(
        "SELECT kcu.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)"
        " WHERE tc.table_name = 'push_campaigns' AND tc.constraint_type = 'PRIMARY KEY'").fetchall()
    assert primary_key == [("id",)]


def test_a_minimal_campaign_row_gets_the_original_defaults(db: psycopg.Connection) -> None:
    row = db.execute(
        "INSERT INTO push_campaigns (program_id, name, message_text) VALUES (gen_random_uuid(), 'n', 'm')"
        " RETURNING id, status, sent_count, failed_count, created_at IS NOT NULL, target_query,"
        " csv_upload_url"
    ).fetchone()
    assert row is not None
    assert isinstance(row[0], uuid.UUID)
    assert row[1:] == ("PENDING", 0, 0, True, None, None)
    db.execute("DELETE FROM push_campaigns WHERE id = %s", (row[0],))


def test_recipients_are_unique_per_campaign_and_member(db: psycopg.Connection) -> None:
    campaign_id = db.execute("INSERT INTO push_campaigns (program_id, name, message_text)"
                             " VALUES (gen_random_uuid(), 'unique', 'm') RETURNING id").fetchone()[0]
    other_id = db.execute("INSERT INTO push_campaigns (program_id, name, message_text)"
                          " VALUES (gen_random_uuid(), 'other', 'm') RETURNING id").fetchone()[0]
    try:
        insert = "INSERT INTO push_campaign_recipients (campaign_id, member_id) VALUES (%s, %s)"
        db.execute(insert, (campaign_id, "CUST-1"))
        db.execute(insert, (campaign_id, "CUST-2"))
        db.execute(insert, (other_id, "CUST-1"))  # the same member in another campaign is fine
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute(insert, (campaign_id, "CUST-1"))
        status = db.execute("SELECT status FROM push_campaign_recipients WHERE campaign_id = %s AND"
                            " member_id = 'CUST-1'", (campaign_id,)).fetchone()
        assert status == ("PENDING",)
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id, status)"
                       " VALUES (%s, 'CUST-3', 'DELIVERED')", (campaign_id,))
    finally:
        db.execute("DELETE FROM push_campaigns WHERE id IN (%s, %s)", (campaign_id, other_id))
    remaining = db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id IN (%s, %s)",
                           (campaign_id, other_id)).fetchone()
    assert remaining == (0,)  # recipients go with their campaign


def test_member_ids_compare_bytewise_and_the_senders_look_ups_still_use_the_primary_key(
        db: psycopg.Connection) -> None:
    """Migration 031: the primary key compares member ids as bytes, and the sender's write-back, which
    joins the key to ids from a parameter array (default collation), still finds rows through it."""
    collation = db.execute("SELECT collation_name FROM information_schema.columns"
                           " WHERE table_name = 'push_campaign_recipients' AND column_name = 'member_id'").fetchone()
    assert collation == ("C",)
    with db.transaction(force_rollback=True):
        campaign_id = db.execute("INSERT INTO push_campaigns (program_id, name, message_text)"
                                 " VALUES (gen_random_uuid(), 'collation', 'm') RETURNING id").fetchone()[0]
        db.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id)"
                   " SELECT %s, 'CUST-' || i FROM generate_series(1, 5000) i", (campaign_id,))
        db.execute("ANALYZE push_campaign_recipients")
        plan = "\n".join(r[0] for r in db.execute(
            "EXPLAIN " + sending.WRITE_SQL,
            {"campaign_id": campaign_id, "member_ids": ["CUST-2", "CUST-1"], "statuses": ["SENT"] * 2,
             "reasons": [None] * 2, "errors": [None] * 2, "http_statuses": [200] * 2, "attempts": [1] * 2}))
    assert "push_campaign_recipients_pkey" in plan and "member_id" in plan.split("Index Cond")[1], plan
    ordered = [r[0] for r in db.execute("SELECT m::text COLLATE \"C\" FROM unnest(ARRAY['b', 'B', 'a', 'A']) m"
                                        " ORDER BY 1")]
    assert ordered == ["A", "B", "a", "b"]  # bytes, not a dictionary's order


def test_a_retried_create_finds_its_campaign(db: psycopg.Connection) -> None:
    insert = ("INSERT INTO push_campaigns (program_id, name, message_text, dag_id, dag_run_id)"
              " VALUES (gen_random_uuid(), 'n', 'm', 'push_campaign', %s)")
    run_id = f"manual__{uuid.uuid4()}"
    db.execute(insert, (run_id,))
    try:
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute(insert, (run_id,))
    finally:
        db.execute("DELETE FROM push_campaigns WHERE dag_run_id = %s", (run_id,))


# ---- the recipient -> campaign reference (migration 028: checked per statement, not per row) -------


def _campaign(db: psycopg.Connection, name: str) -> uuid.UUID:
    return db.execute("INSERT INTO push_campaigns (program_id, name, message_text)"
                      " VALUES (gen_random_uuid(), %s, 'm') RETURNING id", (name,)).fetchone()[0]


def test_a_recipient_must_name_an_existing_campaign(db: psycopg.Connection) -> None:
    campaign_id, missing = _campaign(db, "exists"), uuid.uuid4()
    try:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match=f"campaign {missing} does not exist"):
            db.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id) VALUES (%s, 'CUST-1')",
                       (missing,))
        # One statement with a good and a bad campaign fails whole: nothing of it is written.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            db.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id)"
                       " SELECT c, 'CUST-' || n FROM unnest(ARRAY[%s, %s]::uuid[]) AS c, generate_series(1, 50) AS n",
                       (campaign_id, missing))
        assert db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id IN (%s, %s)",
                          (campaign_id, missing)).fetchone() == (0,)
    finally:
        db.execute("DELETE FROM push_campaigns WHERE id = %s", (campaign_id,))


def test_a_recipient_never_moves_to_another_campaign(db: psycopg.Connection) -> None:
    first, second = _campaign(db, "first"), _campaign(db, "second")
    try:
        db.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id) VALUES (%s, 'CUST-1')", (first,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="cannot move"):
            db.execute("UPDATE push_campaign_recipients SET campaign_id = %s WHERE campaign_id = %s",
                       (second, first))
        # What the sender does to a row is not affected.
        db.execute("UPDATE push_campaign_recipients SET status = 'SENT', sent_at = now() WHERE campaign_id = %s",
                   (first,))
        assert db.execute("SELECT campaign_id, status FROM push_campaign_recipients WHERE member_id = 'CUST-1'"
                          " AND campaign_id IN (%s, %s)", (first, second)).fetchall() == [(first, "SENT")]
    finally:
        db.execute("DELETE FROM push_campaigns WHERE id IN (%s, %s)", (first, second))


def test_a_campaign_being_filled_cannot_be_deleted_under_it(migrated_database_url: str,
                                                          db: psycopg.Connection) -> None:
    """The inserting transaction locks its campaign as a foreign key would: a DELETE waits for it."""
    campaign_id = _campaign(db, "being filled")
    with psycopg.connect(migrated_database_url) as filling, psycopg.connect(migrated_database_url) as deleting:
        filling.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id)"
                        " SELECT %s, 'CUST-' || n FROM generate_series(1, 10) AS n", (campaign_id,))
        deleting.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            deleting.execute("DELETE FROM push_campaigns WHERE id = %s", (campaign_id,))
        deleting.rollback()
        filling.commit()
        deleting.execute("DELETE FROM push_campaigns WHERE id = %s", (campaign_id,))
        deleting.commit()
    assert db.execute("SELECT count(*) FROM push_campaign_recipients WHERE campaign_id = %s",
                      (campaign_id,)).fetchone() == (0,)


def test_recipients_go_when_campaigns_are_truncated(empty_database: str) -> None:
    apply_migrations(empty_database)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        campaign_id = _campaign(conn, "truncated")
        conn.execute("INSERT INTO push_campaign_recipients (campaign_id, member_id) VALUES (%s, 'CUST-1')",
                     (campaign_id,))
        conn.execute("TRUNCATE push_campaigns CASCADE")  # CASCADE: the lift table still has a foreign key
        assert conn.execute("SELECT count(*) FROM push_campaign_recipients").fetchone() == (0,)


# ---- campaign ids in creation order (migration 033) ---------------------------------------------------


def test_new_campaign_ids_are_version_7_uuids_carrying_the_database_clock(db: psycopg.Connection) -> None:
    before, first, second, after = db.execute(
        "SELECT clock_timestamp(), passpush_new_campaign_id(), passpush_new_campaign_id(), clock_timestamp()"
    ).fetchone()
    for made in (first, second):
        assert (made.version, made.variant) == (7, uuid.RFC_4122)
        millis = made.int >> 80  # the top 48 bits
        assert int(before.timestamp() * 1000) <= millis <= int(after.timestamp() * 1000)
    assert first != second  # most likely the same millisecond: the random bits tell them apart


def test_a_later_campaign_id_sorts_after_an_earlier_one_in_the_database(db: psycopg.Connection) -> None:
    ids = []
    for _ in range(5):
        ids.append(db.execute("SELECT passpush_new_campaign_id()").fetchone()[0])
        db.execute("SELECT pg_sleep(0.002)")  # a new millisecond
    # uuid ordering in PostgreSQL is bytewise, the order of the primary key (campaign_id, member_id)
    in_database = [r[0] for r in db.execute("SELECT id FROM unnest(%s::uuid[]) AS id ORDER BY id", (ids,))]
    assert in_database == ids


def test_push_campaigns_keeps_random_ids_for_other_writers(db: psycopg.Connection) -> None:
    made = db.execute("INSERT INTO push_campaigns (program_id, name, message_text)"
                      " VALUES (gen_random_uuid(), 'other writer', 'm') RETURNING id").fetchone()[0]
    try:
        assert made.version == 4
    finally:
        db.execute("DELETE FROM push_campaigns WHERE id = %s", (made,))
