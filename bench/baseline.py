"""Scenario 5: the naive sender as it was first specified, implemented once, for comparison only.

Loop over the member ids; look each pass id up with its own query; send the PUTs in chunks of 10
and wait for each chunk; no rate limiter, no retry. Whatever fails is simply counted as failed.
The message is rendered in Python from the same template as passpush's campaigns.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import psycopg

from passpush.emulator.control import make_jwt

CHUNK = 10


@dataclass
class NaiveResult:
    members: int = 0
    sent: int = 0
    failed: int = 0
    status_429: int = 0
    no_pass: int = 0
    seconds: float = 0.0


def _render(template: str, points: object) -> str:
    text = str(points)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return template.replace("{points}", text)


async def _put(session: aiohttp.ClientSession, url: str, token: str, passkit_id: str, text: str) -> int | None:
    body = {"id": passkit_id, "metaData": {"marketingMessage": text}}
    try:
        async with session.put(f"{url}/members/member", json=body, headers={"Authorization": token}) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return None


def _count(result: NaiveResult, status: int | None) -> None:
    if status == 200:
        result.sent += 1
        return
    result.failed += 1
    result.status_429 += status == 429


async def _send(args: dict[str, Any], members: list[str], result: NaiveResult) -> None:
    token = make_jwt(args["api_key"], args["api_secret"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
            await psycopg.AsyncConnection.connect(args["conninfo"], autocommit=True) as conn:
        for start in range(0, len(members), CHUNK):
            targets = []
            for member_id in members[start:start + CHUNK]:
                cur = await conn.execute(
                    "SELECT passkit_internal_id, points_balance FROM passes_master"
                    " WHERE program_id = %s AND external_id = %s", (args["program_id"], member_id))
                row = await cur.fetchone()
                if row is None or not row[0]:
                    result.no_pass += 1
                    continue
                targets.append((row[0], _render(args["message"], row[1])))
            statuses = await asyncio.gather(*(_put(session, args["url"], token, pid, text)
                                              for pid, text in targets))
            for status in statuses:
                _count(result, status)


def run_naive(args: dict[str, Any]) -> dict[str, Any]:
    """Send ``args['message']`` to the first ``args['limit']`` active members, naively."""
    with psycopg.connect(args["conninfo"]) as conn:
        members = [r[0] for r in conn.execute(
            "SELECT external_id FROM passes_master WHERE program_id = %s AND status = 'ACTIVE'"
            " ORDER BY external_id LIMIT %s", (args["program_id"], args["limit"]))]
    result = NaiveResult(members=len(members))
    started = time.monotonic()
    asyncio.run(_send(args, members, result))
    result.seconds = time.monotonic() - started
    return asdict(result)
