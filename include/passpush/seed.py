"""Synthetic loyalty programs for the demo, the tests and the benchmarks.

Deterministic for a given seed: the same seed gives the same members, ids and balances,
so a failing test or a benchmark can be replayed. Rows go to Postgres with COPY and members
are enrolled in the PassKit emulator in bulk, both fast enough for a million members.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

log = logging.getLogger(__name__)

FIRST_NAMES = ["Ava", "Liam", "Mia", "Noah", "Zoe", "Ethan", "Emma", "Lucas", "Sofia", "Omar",
               "Chloe", "Mateo", "Grace", "Ken", "Aria", "Leo", "Maya", "Sam", "Nina", "Jon"]
LAST_NAMES = ["Garcia", "Smith", "Nguyen", "Kim", "Patel", "Brown", "Lopez", "Chen", "Khan", "Rossi"]
# 90210 is over-represented on purpose: the "local" segment's examples use it.
ZIPS = ["90210", "90001", "94103", "10001", "60601", "73301", "98101", "33101", "02108", "80202"]
ZIP_WEIGHTS = [0.10, 0.12, 0.10, 0.12, 0.10, 0.08, 0.10, 0.10, 0.09, 0.09]
TIMEZONES = ["America/Los_Angeles", "America/New_York", "America/Chicago", "America/Denver", "Europe/London"]
TZ_WEIGHTS = [0.40, 0.30, 0.15, 0.10, 0.05]
INACTIVE_STATUSES = ["EXPIRED", "DELETED", "SUSPENDED"]
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class SeedSpec:
    members: int = 5000
    seed: int = 42
    name: str = "Demo Coffee Rewards"
    apple_share: float = 0.70
    inactive_share: float = 0.03
    opted_out_share: float = 0.02
    missing_passkit_id_share: float = 0.01
    activity_days: int = 120


@dataclass(frozen=True)
class SeededProgram:
    program_id: str
    passkit_program_id: str
    members: int
    active: int
    apple_active: int
    eligible_apple: int  # active, enrolled in PassKit, not opted out: who a broadcast buzzes
    eligible_google: int


def _passkit_like_id(rng: np.random.Generator, n: int) -> np.ndarray:
    """22-character base62 ids, the shape of PassKit's member and program ids."""
    digits = rng.integers(0, 62, size=(n, 22))
    alphabet = np.array(list(BASE62))
    return np.array(["".join(row) for row in alphabet[digits]])


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.bytes(16 * n)
    return [str(uuid.UUID(bytes=raw[i * 16:(i + 1) * 16], version=4)) for i in range(n)]


def generate(spec: SeedSpec, now: datetime | None = None) -> tuple[dict, pd.DataFrame]:
    """Build the program row and a frame of members (users and passes joined)."""
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(spec.seed)
    n = spec.members
    program = {
        "id": _uuids(rng, 1)[0],
        "name": spec.name,
        "passkit_program_id": str(_passkit_like_id(rng, 1)[0]),
        "passkit_tier_id": "base",
        "timezone": "America/Los_Angeles",
    }
    points = np.round(rng.lognormal(mean=5.5, sigma=1.0, size=n)).astype(np.int64)
    tiers = np.where(points >= 2000, "Gold", np.where(points >= 500, "Silver", "Bronze"))
    status = np.where(rng.random(n) < spec.inactive_share, rng.choice(INACTIVE_STATUSES, n), "ACTIVE")
    passkit_ids = _passkit_like_id(rng, n).astype(object)
    passkit_ids[rng.random(n) < spec.missing_passkit_id_share] = None
    first = rng.choice(FIRST_NAMES, n).astype(object)
    first[rng.random(n) < 0.03] = None  # some members never gave a first name: fallbacks matter
    seconds_ago = rng.uniform(0, spec.activity_days * 86400, n)
    frame = pd.DataFrame({
        "user_id": _uuids(rng, n),
        "pass_id": _uuids(rng, n),
        "first_name": first,
        "last_name": rng.choice(LAST_NAMES, n),
        "zip": rng.choice(ZIPS, n, p=ZIP_WEIGHTS),
        "timezone": rng.choice(TIMEZONES, n, p=TZ_WEIGHTS),
        "external_id": [f"CUST-{i:07d}" for i in range(1, n + 1)],
        "passkit_internal_id": passkit_ids,
        "status": status,
        "points_balance": points,
        "tier": tiers,
        "wallet": np.where(rng.random(n) < spec.apple_share, "apple", "google"),
        "opted_out": rng.random(n) < spec.opted_out_share,
        "last_updated": [now - timedelta(seconds=float(s)) for s in seconds_ago],
    })
    frame["email"] = frame["external_id"].str.lower() + "@example.com"
    return program, frame


def _copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    columns = ", ".join(frame.columns)
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())


def write_to_database(conn: psycopg.Connection, program: dict, frame: pd.DataFrame) -> None:
    """Insert the program, its users and passes in one transaction, with COPY."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO programs (id, name, passkit_program_id, passkit_tier_id, timezone)"
            " VALUES (%(id)s, %(name)s, %(passkit_program_id)s, %(passkit_tier_id)s, %(timezone)s)",
            program,
        )
        users = frame[["user_id", "first_name", "last_name", "email", "zip", "timezone"]].rename(
            columns={"user_id": "id"})
        _copy_frame(conn, "users", users)
        passes = frame[["pass_id", "user_id", "external_id", "passkit_internal_id", "status",
                        "points_balance", "tier", "wallet", "opted_out", "last_updated"]].rename(
            columns={"pass_id": "id"})
        passes.insert(1, "program_id", program["id"])
        _copy_frame(conn, "passes_master", passes)


def emulator_members(program: dict, frame: pd.DataFrame) -> Iterator[dict]:
    """Members as PassKit knows them; passes without a PassKit id were never enrolled."""
    enrolled = frame[frame["passkit_internal_id"].notna()]
    for row in enrolled.itertuples(index=False):
        yield {
            "id": row.passkit_internal_id,
            "externalId": row.external_id,
            "programId": program["passkit_program_id"],
            "tierId": program["passkit_tier_id"],
            "points": float(row.points_balance),
            # A missing first name is NaN in the frame, and NaN is truthy: test the type, not the value.
            "person": {"forename": row.first_name if isinstance(row.first_name, str) else "",
                       "surname": row.last_name},
            # A key passpush does not own: the tests check it survives every campaign.
            "metaData": {"memberSince": "2024", "favouriteStore": row.zip},
            "wallet": row.wallet,
            "status": "ACTIVE" if row.status == "ACTIVE" else "EXPIRED",
        }


def enrol_existing(conninfo: str, program_id: str, emulator_control: object) -> int:
    """Enrol a program already in Postgres into a fresh emulator (which keeps members in memory only)."""
    with psycopg.connect(conninfo) as conn:
        program_row = conn.execute("SELECT id::text, passkit_program_id, coalesce(passkit_tier_id, 'base')"
                                   " FROM programs WHERE id = %s", (program_id,)).fetchone()
        if program_row is None:
            raise ValueError(f"unknown program {program_id!r}")
        cur = conn.execute(
            "SELECT p.passkit_internal_id, p.external_id, p.points_balance, p.wallet, p.status, u.first_name,"
            " u.last_name, u.zip FROM passes_master p LEFT JOIN users u ON u.id = p.user_id"
            " WHERE p.program_id = %s", (program_id,))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description or []])
    program = {"id": program_row[0], "passkit_program_id": program_row[1], "passkit_tier_id": program_row[2]}
    frame["first_name"] = frame["first_name"].fillna("")
    ids = emulator_control.bulk_enrol(emulator_members(program, frame))  # type: ignore[attr-defined]
    return len(ids)


def summarize(program: dict, frame: pd.DataFrame) -> SeededProgram:
    active = frame["status"] == "ACTIVE"
    eligible = active & frame["passkit_internal_id"].notna() & ~frame["opted_out"]
    return SeededProgram(
        program_id=program["id"],
        passkit_program_id=program["passkit_program_id"],
        members=len(frame),
        active=int(active.sum()),
        apple_active=int((active & (frame["wallet"] == "apple")).sum()),
        eligible_apple=int((eligible & (frame["wallet"] == "apple")).sum()),
        eligible_google=int((eligible & (frame["wallet"] == "google")).sum()),
    )


def seed_program(conninfo: str, spec: SeedSpec, emulator_control: object | None = None) -> SeededProgram:
    """Generate a program, write it to Postgres and, when given an emulator, enrol its members there."""
    program, frame = generate(spec)
    with psycopg.connect(conninfo) as conn:
        write_to_database(conn, program, frame)
    if emulator_control is not None:
        emulator_control.bulk_enrol(emulator_members(program, frame))  # type: ignore[attr-defined]
    summary = summarize(program, frame)
    log.info("seeded program %s with %d members (%d active)", summary.program_id, summary.members, summary.active)
    return summary


def simulate_response(conninfo: str, campaign_id: str, *, base_return_rate: float, return_lift: float,
                      base_points: float = 20.0, points_lift: float = 0.0, window_days: int = 7,
                      seed: int = 7) -> None:
    """Pretend members reacted to a campaign: held-out members come back with ``base_return_rate``,
    reached ones (SENT) with ``base_return_rate + return_lift``, members the send did not reach at the base
    rate; those who come back earn points.

    Lets a test check that the lift report recovers an effect that is known in advance.
    """
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
        conn.execute(
            """
            WITH ref AS (
                SELECT coalesce(confirmed_at, started_at, created_at) AS t FROM push_campaigns WHERE id = %(c)s
            ),
            reacted AS (
                SELECT r.pass_id, r.status FROM push_campaign_recipients r
                WHERE r.campaign_id = %(c)s AND (r.batch_no IS NOT NULL OR r.status = 'HELD_OUT')
                  AND random() < %(base)s + CASE WHEN r.status = 'SENT' THEN %(lift)s ELSE 0 END
            )
            UPDATE passes_master p
            SET last_updated = (SELECT t FROM ref) + random() * make_interval(days => %(window)s),
                points_balance = p.points_balance + round(
                    (%(points)s + CASE WHEN reacted.status = 'SENT' THEN %(points_lift)s ELSE 0 END)
                    * (0.5 + random()))
            FROM reacted WHERE p.id = reacted.pass_id
            """,
            {"c": campaign_id, "base": base_return_rate, "lift": return_lift, "window": window_days,
             "points": base_points, "points_lift": points_lift},
        )
