"""PassKitClient against the PassKit emulator over real HTTP: classification, auth, faults, metaData.

`emulator_control` hands each test an emulator reset to its launch settings; `emu` adds program P1
(template field `meta.marketingMessage` with change message "%@"), and each test enrols its own members.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from passpush.emulator import EmulatorControl, EmulatorProcess
from passpush.passkit import (
    Outcome,
    PassKitAuthError,
    PassKitClient,
    PassKitConflictError,
    PassKitNotFoundError,
    PassKitSettings,
    PassKitTimeoutError,
    PassKitTransportError,
    SendResult,
)

pytestmark = pytest.mark.emulator

PROGRAM = "P1"
OTHER_KEYS = {"tier": "gold", "store": "Leeds", "optInSource": "app"}


@pytest.fixture
def emu(emulator: EmulatorProcess, emulator_control: EmulatorControl) -> EmulatorProcess:
    """The emulator at launch settings (reset by `emulator_control`), with program P1 and nothing else."""
    emulator_control.create_program(program_id=PROGRAM, template={"meta.marketingMessage": "%@"})
    return emulator


def enrol(emu: EmulatorProcess, count: int = 1, **fields: Any) -> list[str]:
    members = [
        {
            "externalId": f"C{i}",
            "programId": PROGRAM,
            "tierId": "base",
            "metaData": dict(OTHER_KEYS),
            **fields,
        }
        for i in range(count)
    ]
    return emu.control.bulk_enrol(members)


def settings(emu: EmulatorProcess, **overrides: Any) -> PassKitSettings:
    values: dict[str, Any] = {"base_url": emu.url, "api_key": emu.api_key, "api_secret": emu.api_secret}
    values.update(overrides)
    return PassKitSettings(**values)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


async def send(
    emu: EmulatorProcess,
    message: str = "Double points!",
    client_settings: dict[str, Any] | None = None,
    **identity: str,
) -> SendResult:
    async with PassKitClient(settings(emu, **(client_settings or {}))) as client:
        return await client.set_marketing_message(message=message, **identity)


def metadata(emu: EmulatorProcess, passkit_id: str) -> dict[str, str]:
    return emu.control.member(passkit_id)["metaData"]


def requests_by_route(emu: EmulatorProcess) -> dict[str, dict[str, int]]:
    return emu.control.stats()["requests"]


# ---- success, UNCHANGED, identification ----------------------------------------------------------


def test_send_by_passkit_id_sets_the_text_and_buzzes_once(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)

    result = run(send(emu, passkit_id=pid))

    assert result == SendResult(Outcome.SENT, 200, None, None, pid)
    assert metadata(emu, pid) == {**OTHER_KEYS, "marketingMessage": "Double points!"}
    assert [n["text"] for n in emu.control.notifications(pass_id=pid)] == ["Double points!"]


def test_send_by_external_id_and_program_id(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu, externalId="CUST/0001 ä")

    result = run(send(emu, external_id="CUST/0001 ä", program_id=PROGRAM))

    assert (result.outcome, result.passkit_id) == (Outcome.SENT, pid)
    assert metadata(emu, pid)["marketingMessage"] == "Double points!"


def test_same_text_again_is_unchanged_without_a_put(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    run(send(emu, passkit_id=pid))

    again = run(send(emu, passkit_id=pid))

    assert again == SendResult(Outcome.UNCHANGED, 200, None, None, pid)
    assert requests_by_route(emu)["PUT /members/member"] == {"200": 1}
    assert len(emu.control.notifications(pass_id=pid)) == 1


def test_a_new_text_after_an_old_one_is_sent(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu, metaData={**OTHER_KEYS, "marketingMessage": "Old offer"})

    result = run(send(emu, message="New offer", passkit_id=pid))

    assert result.outcome is Outcome.SENT
    assert [n["text"] for n in emu.control.notifications(pass_id=pid)] == ["New offer"]


# ---- metaData is never wiped ---------------------------------------------------------------------


@pytest.mark.parametrize("server_mode", ["merge", "replace"])
def test_read_modify_write_keeps_other_metadata_keys_in_both_server_modes(
    emu: EmulatorProcess, server_mode: str
) -> None:
    emu.control.configure(metadata_mode=server_mode)
    (pid,) = enrol(emu)

    result = run(send(emu, passkit_id=pid, client_settings={"metadata_update": "read_modify_write"}))

    assert result.outcome is Outcome.SENT
    assert metadata(emu, pid) == {**OTHER_KEYS, "marketingMessage": "Double points!"}


def test_merge_setting_on_a_merging_server_keeps_keys_with_one_request(emu: EmulatorProcess) -> None:
    emu.control.configure(metadata_mode="merge")
    (pid,) = enrol(emu)

    result = run(send(emu, passkit_id=pid, client_settings={"metadata_update": "merge"}))

    assert result.outcome is Outcome.SENT
    assert metadata(emu, pid) == {**OTHER_KEYS, "marketingMessage": "Double points!"}
    assert emu.control.stats()["requests_total"] == 1


def test_merge_setting_on_a_replacing_server_wipes_other_keys(emu: EmulatorProcess) -> None:
    # The documented danger: only use metadata_update="merge" where the account is known to merge.
    emu.control.configure(metadata_mode="replace")
    (pid,) = enrol(emu)

    result = run(send(emu, passkit_id=pid, client_settings={"metadata_update": "merge"}))

    assert result.outcome is Outcome.SENT
    assert metadata(emu, pid) == {"marketingMessage": "Double points!"}


def test_custom_metadata_key(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)

    run(send(emu, passkit_id=pid, client_settings={"metadata_key": "weekendOffer"}))

    assert metadata(emu, pid) == {**OTHER_KEYS, "weekendOffer": "Double points!"}


# ---- classification of error answers --------------------------------------------------------------


@pytest.mark.parametrize("error_shape", ["legacy", "grpc"])
def test_unknown_member_is_permanent_with_the_message_of_either_error_shape(
    emu: EmulatorProcess, error_shape: str
) -> None:
    emu.control.configure(error_shape=error_shape)

    result = run(send(emu, passkit_id="NoSuchMember00000000000"))

    assert result == SendResult(Outcome.PERMANENT, 404, "HTTP 404: member NoSuchMember00000000000 not found")


@pytest.mark.parametrize(
    ("status", "outcome", "retry_after"),
    [
        (400, Outcome.PERMANENT, None),
        (404, Outcome.PERMANENT, None),
        (409, Outcome.RETRYABLE, None),
        (422, Outcome.PERMANENT, None),
        (403, Outcome.FATAL, None),
        (500, Outcome.RETRYABLE, None),
        (501, Outcome.PERMANENT, None),
        (502, Outcome.RETRYABLE, None),
        (503, Outcome.RETRYABLE, 0.25),
        (504, Outcome.RETRYABLE, None),
    ],
)
@pytest.mark.parametrize("error_shape", ["legacy", "grpc"])
def test_each_status_class_is_classified(
    emu: EmulatorProcess, status: int, outcome: Outcome, retry_after: float | None, error_shape: str
) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fail_members={"C0": status}, error_shape=error_shape)

    result = run(send(emu, passkit_id=pid))

    assert result == SendResult(outcome, status, f"HTTP {status}: forced failure for member C0", retry_after)


def test_429_carries_retry_after_from_the_header(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fault_429=1.0)

    result = run(send(emu, passkit_id=pid))

    assert result == SendResult(Outcome.RETRYABLE, 429, "HTTP 429: resource exhausted", 1.0)


def test_rate_limited_503_prefers_retry_after_over_the_250ms_default(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(rate_limit_per_second=1, rate_limit_burst=1, rate_limit_status=503)

    async def twice() -> list[SendResult]:
        async with PassKitClient(settings(emu)) as client:
            return [await client.set_marketing_message(message=m, passkit_id=pid) for m in ("a", "b")]

    results = run(twice())

    # The first send's GET takes the only token; its PUT and the next GET are limited.
    assert [(r.outcome, r.http_status, r.retry_after) for r in results] == [(Outcome.RETRYABLE, 503, 1.0)] * 2


def test_500_fault_is_retryable_without_a_hint(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fault_500=1.0, error_shape="grpc")

    result = run(send(emu, passkit_id=pid))

    assert result == SendResult(Outcome.RETRYABLE, 500, "HTTP 500: unexpected error")


def test_503_burst_then_recovery(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(burst_503_seconds=0.5)

    async def during_and_after() -> tuple[SendResult, SendResult]:
        async with PassKitClient(settings(emu)) as client:
            during = await client.set_marketing_message(message="hi", passkit_id=pid)
            await asyncio.sleep(0.6)
            return during, await client.set_marketing_message(message="hi", passkit_id=pid)

    during, after = run(during_and_after())

    assert during == SendResult(Outcome.RETRYABLE, 503, "HTTP 503: service unavailable", 0.25)
    assert after.outcome is Outcome.SENT


# ---- no answer: timeouts and dropped connections --------------------------------------------------


def test_hanging_server_times_out_as_retryable(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fault_hang=1.0, hang_seconds=5)
    started = time.monotonic()

    result = run(send(emu, passkit_id=pid, client_settings={"timeout_seconds": 0.3}))

    assert result == SendResult(Outcome.RETRYABLE, None, "timeout after 0.3s on GET")
    assert time.monotonic() - started < 2.0


def test_dropped_connection_is_retryable_and_not_silently_replayed(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fault_drop=1.0)
    calls: list[float] = []

    async def limiter() -> None:
        calls.append(time.monotonic())

    async def one() -> SendResult:
        async with PassKitClient(settings(emu), before_request=limiter) as client:
            return await client.set_marketing_message(message="hi", passkit_id=pid)

    result = run(one())

    assert result == SendResult(Outcome.RETRYABLE, None, "connection dropped on GET")
    # aiohttp would replay an idempotent GET/PUT once on a dropped connection; one attempt means one.
    assert emu.control.stats()["requests_total"] == 1
    assert len(calls) == 1


def test_put_dropped_after_apply_is_in_doubt_then_confirmed_unchanged(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fault_drop_after_apply=1.0)

    blind = run(send(emu, passkit_id=pid, client_settings={"metadata_update": "merge"}))
    emu.control.configure(fault_drop_after_apply=0.0)
    retry = run(send(emu, passkit_id=pid))

    assert blind == SendResult(Outcome.RETRYABLE, None, "connection dropped on PUT", in_doubt=True)
    assert retry == SendResult(Outcome.UNCHANGED, 200, None, None, pid)
    assert len(emu.control.notifications(pass_id=pid)) == 1


def test_raising_calls_raise_transport_errors(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(fault_hang=1.0, hang_seconds=5)

    async def get() -> None:
        async with PassKitClient(settings(emu, timeout_seconds=0.2)) as client:
            await client.get_member(pid)

    with pytest.raises(PassKitTimeoutError, match=r"timeout after 0\.2s on GET") as caught:
        run(get())
    assert caught.value.retryable and caught.value.status is None


def test_unreachable_host_is_a_transport_error(emu: EmulatorProcess) -> None:
    async def check() -> None:
        unreachable = PassKitSettings(base_url="http://127.0.0.1:9", api_key="k", api_secret="s" * 32)
        async with PassKitClient(unreachable) as client:
            await client.check_credentials()

    with pytest.raises(PassKitTransportError, match="cannot connect on GET"):
        run(check())


# ---- auth: JWT, schemes, refresh ------------------------------------------------------------------


def test_wrong_secret_is_fatal_and_check_credentials_names_the_fix(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    wrong = {"api_secret": "not-the-secret-0123456789abcdefgh"}

    result = run(send(emu, passkit_id=pid, client_settings=wrong))

    async def check() -> None:
        async with PassKitClient(settings(emu, **wrong)) as client:
            await client.check_credentials()

    assert result == SendResult(Outcome.FATAL, 401, "HTTP 401: token signature invalid")
    with pytest.raises(
        PassKitAuthError, match=r"check the API key \(connection login\), the API secret"
    ) as caught:
        run(check())
    assert caught.value.status == 401
    assert "not-the-secret" not in str(caught.value)


def test_unknown_api_key_is_fatal(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)

    result = run(send(emu, passkit_id=pid, client_settings={"api_key": "someone-else"}))

    assert result == SendResult(Outcome.FATAL, 401, "HTTP 401: token uid is not a known API key")


def test_key_without_permission_is_fatal_403(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(forbidden_keys=["limited-key"])
    limited = {"api_key": "limited-key"}

    result = run(send(emu, passkit_id=pid, client_settings=limited))

    async def check() -> None:
        async with PassKitClient(settings(emu, **limited)) as client:
            await client.check_credentials(PROGRAM)

    assert (result.outcome, result.http_status) == (Outcome.FATAL, 403)
    with pytest.raises(PassKitAuthError, match="'limited-key' is authenticated but lacks permission"):
        run(check())


@pytest.mark.parametrize("accept_bearer", [True, False])
def test_raw_token_is_always_accepted(emu: EmulatorProcess, accept_bearer: bool) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(accept_bearer=accept_bearer)

    assert run(send(emu, passkit_id=pid)).outcome is Outcome.SENT


def test_bearer_scheme_works_where_accepted(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(accept_bearer=True)

    assert run(send(emu, passkit_id=pid, client_settings={"auth_scheme": "Bearer"})).outcome is Outcome.SENT


def test_bearer_scheme_refused_is_fatal_and_check_credentials_suggests_raw(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)
    emu.control.configure(accept_bearer=False)

    result = run(send(emu, passkit_id=pid, client_settings={"auth_scheme": "Bearer"}))

    async def check() -> None:
        async with PassKitClient(settings(emu, auth_scheme="Bearer")) as client:
            await client.check_credentials()

    assert result == SendResult(
        Outcome.FATAL, 401, "HTTP 401: Bearer scheme not accepted: send the raw token"
    )
    with pytest.raises(PassKitAuthError, match=r"set auth_scheme '' \(raw token\) instead of 'Bearer'"):
        run(check())


def test_short_lived_token_is_refreshed_before_it_expires(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu)

    async def across_expiry() -> list[SendResult]:
        async with PassKitClient(settings(emu, token_lifetime_seconds=1)) as client:
            first = await client.set_marketing_message(message="one", passkit_id=pid)
            # The first token's exp is at most ceil(now) + 1: wait until it has certainly passed.
            await asyncio.sleep(math.ceil(time.time()) + 1.1 - time.time())
            return [first, await client.set_marketing_message(message="two", passkit_id=pid)]

    results = run(across_expiry())

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert "401" not in requests_by_route(emu)["GET /members/member/id/{id}"]


def test_expired_credentials_mid_campaign_are_fatal(emu: EmulatorProcess) -> None:
    (pid,) = enrol(emu, count=2)[:1]
    second_pid = emu.control.bulk_enrol([{"externalId": "X1", "programId": PROGRAM, "tierId": "base"}])[0]

    async def revoke_between() -> tuple[SendResult, SendResult]:
        async with PassKitClient(settings(emu)) as client:
            first = await client.set_marketing_message(message="hi", passkit_id=pid)
            emu.control.configure(credentials_revoked=True)
            return first, await client.set_marketing_message(message="hi", passkit_id=second_pid)

    first, second = run(revoke_between())

    assert first.outcome is Outcome.SENT
    assert second == SendResult(Outcome.FATAL, 401, "HTTP 401: API credentials revoked")


# ---- before_request: every HTTP request consumes rate --------------------------------------------


def test_before_request_is_awaited_once_per_http_request(emu: EmulatorProcess) -> None:
    pids = enrol(emu, count=3)
    calls: list[int] = []

    async def limiter() -> None:
        calls.append(1)
        await asyncio.sleep(0)

    async def mixed() -> list[int]:
        counts = []
        async with PassKitClient(settings(emu), before_request=limiter) as client:
            for call in (
                client.set_marketing_message(message="hi", passkit_id=pids[0]),  # GET + PUT
                client.set_marketing_message(message="hi", passkit_id=pids[0]),  # GET (unchanged)
                client.get_member(pids[1]),
                client.get_member_by_external_id(PROGRAM, "C2"),
                client.check_credentials(),
                client.check_credentials(PROGRAM),
                client.enrol_member({"externalId": "NEW", "programId": PROGRAM, "tierId": "base"}),
            ):
                before = len(calls)
                await call
                counts.append(len(calls) - before)
        async with PassKitClient(settings(emu, metadata_update="merge"), before_request=limiter) as client:
            before = len(calls)
            await client.set_marketing_message(message="bye", passkit_id=pids[2])  # PUT only
            counts.append(len(calls) - before)
        return counts

    counts = run(mixed())

    assert counts == [2, 1, 1, 1, 1, 1, 1, 1]
    assert emu.control.stats()["requests_total"] == len(calls) == 9


def test_concurrent_sends_share_one_pool(emu: EmulatorProcess) -> None:
    pids = enrol(emu, count=200)

    async def many() -> list[SendResult]:
        async with PassKitClient(settings(emu, max_connections=8)) as client:
            return await asyncio.gather(
                *(
                    client.set_marketing_message(message=f"offer {i}", passkit_id=p)
                    for i, p in enumerate(pids)
                )
            )

    results = run(many())

    assert {r.outcome for r in results} == {Outcome.SENT}
    assert [r.passkit_id for r in results] == pids
    assert emu.control.notification_summary(PROGRAM)["max_per_member"] == 1


def test_timeout_counts_only_the_request_not_the_wait_for_a_pooled_connection(emu: EmulatorProcess) -> None:
    pids = enrol(emu, count=6)
    emu.control.configure(latency_ms_min=200, latency_ms_max=200)
    tight = settings(emu, max_connections=2, timeout_seconds=0.45)

    async def three_waves() -> list[dict[str, Any]]:
        async with PassKitClient(tight) as client:
            return await asyncio.gather(*(client.get_member(pid) for pid in pids))

    started = time.monotonic()
    members = run(three_waves())

    # 6 requests of 200 ms over 2 connections take 3 waves (~0.6 s), longer than one 0.45 s timeout.
    assert [m["id"] for m in members] == pids
    assert time.monotonic() - started >= 0.6


# ---- the raising calls ----------------------------------------------------------------------------


def test_get_enrol_and_their_typed_errors(emu: EmulatorProcess) -> None:
    async def scenario() -> None:
        async with PassKitClient(settings(emu)) as client:
            new_id = await client.enrol_member(
                {"externalId": "E1", "programId": PROGRAM, "tierId": "base", "metaData": {"tier": "silver"}}
            )
            assert (await client.get_member(new_id))["metaData"] == {"tier": "silver"}
            assert (await client.get_member_by_external_id(PROGRAM, "E1"))["id"] == new_id
            with pytest.raises(PassKitConflictError, match="E1 already exists") as conflict:
                await client.enrol_member({"externalId": "E1", "programId": PROGRAM, "tierId": "base"})
            assert conflict.value.status == 409
            with pytest.raises(PassKitNotFoundError, match="get member id='nope': HTTP 404") as missing:
                await client.get_member("nope")
            assert not missing.value.retryable
            with pytest.raises(PassKitNotFoundError, match="externalId='E2'"):
                await client.get_member_by_external_id(PROGRAM, "E2")
            await client.check_credentials()
            await client.check_credentials(PROGRAM)

    run(scenario())
