"""How the batch sender records answers the emulator never gives (a scripted stand-in over real HTTP):
a read answered 200 without a member, and a pass that already shows the text after a retry."""

from __future__ import annotations

from fixtures.scripted_passkit import ScriptedServer, answer, answers, run, settings
from passpush import sending
from passpush.passkit import PassKitClient

MESSAGE = "Double points!"
OLD = {"id": "PK1", "metaData": {"marketingMessage": "old text", "tier": "gold"}}
SHOWING = {"id": "PK1", "metaData": {"marketingMessage": MESSAGE, "tier": "gold"}}


async def _deliver(server: ScriptedServer, *, in_doubt: bool = False,
                   **overrides: object) -> tuple[sending.RowOutcome, sending.SendSummary]:
    async with PassKitClient(settings(server, **overrides)) as client:
        sender = sending.BatchSender(None, client, "c1", 0,  # type: ignore[arg-type]  # no rows are written
                                     sending.SendOptions(rate_limit_per_second=100, max_attempts=3))
        await sender.deliver(sending.Recipient("m1", "PK1", MESSAGE, in_doubt=in_doubt))
    (row,) = sender._pending
    return row, sender.summary


def test_merge_in_doubt_check_answered_200_without_a_member_is_retried_not_counted_as_sent() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, b"")

        row, summary = await _deliver(server, in_doubt=True, metadata_update="merge")

        assert {seen.method for seen in server.seen} == {"GET"}  # nothing was written
        assert (row.status, row.http_status, summary.sent) == ("RETRYABLE", 200, 0)

    run(scenario)


def test_already_showing_after_a_503_on_the_read_is_skipped_not_counted_as_sent() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answers(answer(503, {"error": "unavailable"}),
                                                                   answer(200, SHOWING))

        row, summary = await _deliver(server)

        assert [seen.method for seen in server.seen] == ["GET", "GET"]  # nothing was ever written
        assert (row.status, row.reason, row.attempts) == ("SKIPPED", "already_showing", 2)
        assert (summary.sent, summary.skipped, summary.in_doubt_verified) == (0, 1, 0)

    run(scenario)


def test_already_showing_after_a_put_without_a_clear_answer_is_confirmed_sent() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answers(answer(200, OLD), answer(200, SHOWING))
        server.responses[("PUT", "/members/member")] = answer(504, {"code": 4, "message": "deadline exceeded"})

        row, summary = await _deliver(server)

        assert [seen.method for seen in server.seen] == ["GET", "PUT", "GET"]
        assert (row.status, row.reason) == ("SENT", "confirmed_in_doubt")
        assert (summary.sent, summary.in_doubt_verified) == (1, 1)

    run(scenario)


def test_already_showing_after_a_put_refused_with_429_is_skipped() -> None:
    # a 429 is a refusal: nothing was applied, so the text on the pass was not ours
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answers(answer(200, OLD), answer(200, SHOWING))
        server.responses[("PUT", "/members/member")] = answer(429, {"code": 8, "message": "slow down"},
                                                              {"Retry-After": "0"})

        row, _ = await _deliver(server)

        assert (row.status, row.reason) == ("SKIPPED", "already_showing")

    run(scenario)



def test_retries_exhausted_after_a_put_without_a_clear_answer_stay_in_doubt() -> None:
    # The PUT may have been applied: whoever claims the row next must verify it, not take the text on the
    # pass for somebody else's ("already_showing") and count a delivered buzz as skipped.
    async def scenario(server: ScriptedServer) -> None:
        unavailable = answer(503, {"error": "unavailable"})
        server.responses[("GET", "/members/member/id/")] = answers(answer(200, OLD), unavailable, unavailable)
        server.responses[("PUT", "/members/member")] = answer(504, {"code": 4, "message": "deadline exceeded"})

        row, _ = await _deliver(server)  # three attempts

        assert [seen.method for seen in server.seen] == ["GET", "PUT", "GET", "GET"]
        assert (row.status, row.reason) == ("RETRYABLE", "in_doubt_unverified")

    run(scenario)
