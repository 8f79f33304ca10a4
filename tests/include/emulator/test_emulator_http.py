"""The emulator over real HTTP, through the launcher: JWT checks, each route's status codes in both
error shapes, rate limiting, every injected fault, bursts, revoked credentials, the inspection
endpoints, and the launcher and command line themselves."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from passpush.emulator.control import (
    EmulatorControl,
    EmulatorError,
    EmulatorProcess,
    make_jwt,
    start_emulator,
)
from passpush.emulator.server import STATE_KEY, build_parser, create_app, settings_from

pytestmark = pytest.mark.emulator

PROGRAM = "prog-http"
COUNT = f"/members/count/{PROGRAM}"


@pytest.fixture
def http(emulator: EmulatorProcess, emulator_control: EmulatorControl) -> Iterator[httpx.Client]:
    """A client authenticated like PassKit's examples (raw token), on a freshly reset emulator."""
    with httpx.Client(base_url=emulator.url, headers={"Authorization": emulator.token()},
                      timeout=5.0) as client:
        yield client


def enrol(http: httpx.Client, external_id: str, **fields: Any) -> str:
    response = http.post("/members/member",
                         json={"externalId": external_id, "programId": PROGRAM, "tierId": "base", **fields})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def put_offer(http: httpx.Client, external_id: str, text: str, **kwargs: Any) -> httpx.Response:
    return http.put("/members/member", json={"externalId": external_id, "programId": PROGRAM,
                                             "metaData": {"marketingMessage": text}}, **kwargs)


def member(http: httpx.Client, external_id: str) -> dict[str, Any]:
    response = http.get(f"/members/member/externalId/{PROGRAM}/{external_id}")
    assert response.status_code == 200, response.text
    return response.json()


# ---- JWT ----------------------------------------------------------------------------------------


def test_valid_raw_token_and_bearer_accepted_by_default(http: httpx.Client,
                                                         emulator: EmulatorProcess) -> None:
    enrol(http, "C1")
    assert http.get(f"/members/member/externalId/{PROGRAM}/C1").status_code == 200
    bearer = {"Authorization": f"Bearer {emulator.token()}"}
    assert http.get(f"/members/member/externalId/{PROGRAM}/C1", headers=bearer).status_code == 200


def test_bearer_refused_when_accept_bearer_is_off(http: httpx.Client, emulator: EmulatorProcess,
                                                  emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    emulator_control.configure(accept_bearer=False)
    path = f"/members/member/externalId/{PROGRAM}/C1"
    assert http.get(path, headers={"Authorization": f"Bearer {emulator.token()}"}).status_code == 401
    assert http.get(path).status_code == 200


@pytest.mark.parametrize(
    "token_kwargs",
    [
        {"api_secret": "not-the-emulator-secret-0123456789ab"},
        {"api_key": "someone-else"},
        {"lifetime_seconds": -30, "iat_offset_seconds": -90},
        {"iat_offset_seconds": 300, "lifetime_seconds": 900},
    ],
    ids=["bad-signature", "wrong-uid", "expired", "iat-in-the-future"],
)
def test_bad_tokens_are_401(http: httpx.Client, emulator: EmulatorProcess,
                            token_kwargs: dict[str, Any]) -> None:
    kwargs = {"api_key": emulator.api_key, "api_secret": emulator.api_secret, **token_kwargs}
    response = http.post(COUNT, json={}, headers={"Authorization": make_jwt(**kwargs)})
    assert response.status_code == 401
    assert "error" in response.json()


def test_missing_or_garbage_authorization_is_401(http: httpx.Client) -> None:
    assert http.post(COUNT, json={}, headers={"Authorization": ""}).status_code == 401
    assert http.post(COUNT, json={}, headers={"Authorization": "x.y.z"}).status_code == 401


def test_iat_in_the_future_says_token_used_before_issued(http: httpx.Client,
                                                         emulator: EmulatorProcess) -> None:
    token = make_jwt(emulator.api_key, emulator.api_secret, iat_offset_seconds=120)
    response = http.post(COUNT, json={}, headers={"Authorization": token})
    assert response.json() == {"error": "token used before issued"}


def test_forbidden_key_is_403(http: httpx.Client, emulator: EmulatorProcess,
                              emulator_control: EmulatorControl) -> None:
    emulator_control.configure(forbidden_keys=[emulator.api_key])
    assert http.post(COUNT, json={}).status_code == 403


def test_credentials_revoked_halfway(http: httpx.Client, emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    assert put_offer(http, "C1", "first").status_code == 200
    emulator_control.configure(api_secret="rotated-secret-0123456789abcdefghij")
    assert put_offer(http, "C1", "second").status_code == 401
    emulator_control.reset(config=True)
    enrol(http, "C1")
    emulator_control.configure(credentials_revoked=True)
    assert put_offer(http, "C1", "third").status_code == 401


# ---- routes and error shapes ----------------------------------------------------------------------


def test_enrol_get_update_by_both_identities(http: httpx.Client) -> None:
    member_id = enrol(http, "C1", metaData={"memberSince": "2024"}, points=10)
    assert len(member_id) == 22
    assert http.get(f"/members/member/id/{member_id}").json()["externalId"] == "C1"
    assert put_offer(http, "C1", "Hello").json() == {"id": member_id}
    response = http.put("/members/member", json={"id": member_id, "points": 20})
    assert response.json() == {"id": member_id}
    body = member(http, "C1")
    assert body["metaData"] == {"memberSince": "2024", "marketingMessage": "Hello"}
    assert body["points"] == 20
    assert set(body) >= {"id", "externalId", "programId", "tierId", "points", "secondaryPoints", "tierPoints",
                         "metaData", "person", "optOut", "status", "created", "updated"}


def test_points_zero_is_ignored_by_patch_but_set_by_points_set(http: httpx.Client) -> None:
    enrol(http, "C1", points=10)
    http.put("/members/member", json={"externalId": "C1", "programId": PROGRAM, "points": 0})
    assert member(http, "C1")["points"] == 10
    response = http.put("/members/member/points/set",
                        json={"externalId": "C1", "programId": PROGRAM, "points": 0})
    assert response.status_code == 200 and response.json()["points"] == 0


@pytest.mark.parametrize(("mode", "expected"), [("merge", {"memberSince": "2024", "marketingMessage": "Hi"}),
                                                ("replace", {"marketingMessage": "Hi"})])
def test_metadata_mode(http: httpx.Client, emulator_control: EmulatorControl, mode: str,
                       expected: dict[str, str]) -> None:
    emulator_control.configure(metadata_mode=mode)
    enrol(http, "C1", metaData={"memberSince": "2024"})
    put_offer(http, "C1", "Hi")
    assert member(http, "C1")["metaData"] == expected


def test_list_is_ndjson_and_count_totals(http: httpx.Client) -> None:
    for n in range(5):
        enrol(http, f"C{n}", points=n)
    response = http.post(f"/members/member/list/{PROGRAM}", json={"filters": {"limit": 3}})
    lines = [json.loads(line) for line in response.text.splitlines() if line]
    assert [line["result"]["externalId"] for line in lines] == ["C0", "C1", "C2"]
    filters = {"filterGroups": [{"fieldFilters": [{"filterField": "points", "filterValue": "2",
                                                   "filterOperator": "gte"}]}]}
    assert http.post(f"/members/count/{PROGRAM}", json={"filters": filters}).json() == {"total": 3}


# (request, status, gRPC code) for each error a route can answer.
ERROR_CASES = [
    (("PUT", "/members/member", {"externalId": "nobody", "programId": PROGRAM}), 404, 5),
    (("PUT", "/members/member", {"metaData": {"marketingMessage": "x"}}), 400, 3),
    (("PUT", "/members/member", "{not json"), 400, 3),
    (("GET", "/members/member/id/AAAAAAAAAAAAAAAAAAAAAA", None), 404, 5),
    (("GET", f"/members/member/externalId/{PROGRAM}/nobody", None), 404, 5),
    (("POST", "/members/member", {"externalId": "C1", "programId": PROGRAM}), 400, 3),
    (("POST", "/members/member", {"externalId": "EXISTS", "programId": PROGRAM, "tierId": "base"}), 409, 6),
    (("PUT", "/members/member/points/set", {"externalId": "no", "programId": PROGRAM, "points": 1}), 404, 5),
]


@pytest.mark.parametrize("shape", ["legacy", "grpc"])
@pytest.mark.parametrize(("request_spec", "status", "grpc_code"), ERROR_CASES,
                         ids=[f"{r[0]} {r[1]} {s}" for r, s, _ in ERROR_CASES])
def test_error_statuses_and_shapes(http: httpx.Client, emulator_control: EmulatorControl, shape: str,
                                   request_spec: tuple[str, str, Any], status: int, grpc_code: int) -> None:
    enrol(http, "EXISTS")
    emulator_control.configure(error_shape=shape)
    method, path, body = request_spec
    content = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
    response = http.request(method, path, content=content)
    assert response.status_code == status
    payload = response.json()
    if shape == "legacy":
        assert set(payload) == {"error"} and payload["error"]
    else:
        assert payload["code"] == grpc_code and payload["message"] and payload["details"] == []


# ---- rate limit, latency, faults -----------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_answers_with_retry_after_and_is_counted_apart(
        http: httpx.Client, emulator_control: EmulatorControl, status: int) -> None:
    emulator_control.configure(rate_limit_per_second=5, rate_limit_burst=2, rate_limit_status=status)
    answers = [http.post(COUNT, json={}) for _ in range(12)]
    limited = [r for r in answers if r.status_code == status]
    assert answers[0].status_code == 200 and len(limited) >= 6
    assert all(r.headers["Retry-After"] == "1" for r in limited)
    stats = emulator_control.stats()
    assert stats["rate_limited"] == len(limited) and stats["faults_total"] == 0
    assert stats["requests"]["POST /members/count/{programId}"][str(status)] == len(limited)


def test_latency_is_applied(http: httpx.Client, emulator_control: EmulatorControl) -> None:
    emulator_control.configure(latency_ms_min=150, latency_ms_max=160)
    started = time.monotonic()
    assert http.post(COUNT, json={}).status_code == 200
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(("fault", "status"), [("fault_503", 503), ("fault_429", 429), ("fault_500", 500)])
def test_error_faults_do_not_apply_the_update(http: httpx.Client, emulator_control: EmulatorControl,
                                              fault: str, status: int) -> None:
    enrol(http, "C1")
    emulator_control.configure(**{fault: 1.0})
    response = put_offer(http, "C1", "Hello")
    assert response.status_code == status
    assert (response.headers.get("Retry-After") == "1") == (status == 429)
    emulator_control.configure(**{fault: 0.0})
    assert "marketingMessage" not in member(http, "C1")["metaData"]
    assert emulator_control.stats()["faults"] == {str(status): 1}


def test_drop_closes_the_connection_before_applying(http: httpx.Client,
                                                    emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    emulator_control.configure(fault_drop=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        put_offer(http, "C1", "Hello")
    emulator_control.configure(fault_drop=0.0)
    assert "marketingMessage" not in member(http, "C1")["metaData"]
    assert emulator_control.notifications() == []


def test_drop_after_apply_applies_then_closes(http: httpx.Client,
                                              emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    emulator_control.configure(fault_drop_after_apply=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        put_offer(http, "C1", "Hello")
    emulator_control.configure(fault_drop_after_apply=0.0)
    assert member(http, "C1")["metaData"]["marketingMessage"] == "Hello"
    assert [n["text"] for n in emulator_control.notifications(external_id="C1")] == ["Hello"]
    # The client's retry of the in-doubt request carries the same value: no second buzz.
    assert put_offer(http, "C1", "Hello").status_code == 200
    assert emulator_control.notification_summary(PROGRAM)["max_per_member"] == 1
    assert emulator_control.stats()["faults"] == {"drop_after_apply": 1}


def test_hang_outlasts_the_client_timeout_then_applies(http: httpx.Client,
                                                       emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    emulator_control.configure(fault_hang=1.0, hang_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        put_offer(http, "C1", "Hello", timeout=0.2)
    assert time.monotonic() - started < 0.45
    emulator_control.configure(fault_hang=0.0)
    assert "marketingMessage" not in member(http, "C1")["metaData"]
    time.sleep(0.5)
    # The server finished the request after the client gave up: a timeout is an in-doubt outcome.
    assert member(http, "C1")["metaData"]["marketingMessage"] == "Hello"
    assert emulator_control.stats()["faults"] == {"hang": 1}


def test_burst_answers_503_for_n_seconds(http: httpx.Client, emulator_control: EmulatorControl) -> None:
    emulator_control.configure(burst_503_seconds=0.5)
    assert http.post(COUNT, json={}).status_code == 503
    time.sleep(0.6)
    assert http.post(COUNT, json={}).status_code == 200
    assert emulator_control.stats()["faults"] == {"burst_503": 1}


def test_fail_members_forces_a_status(http: httpx.Client, emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    enrol(http, "C2")
    emulator_control.configure(fail_members={"C1": 404})
    assert put_offer(http, "C1", "Hello").status_code == 404
    assert put_offer(http, "C2", "Hello").status_code == 200


def test_seeded_faults_repeat_after_reset(http: httpx.Client, emulator_control: EmulatorControl) -> None:
    def statuses() -> list[int]:
        emulator_control.configure(fault_503=0.5)
        return [http.post(COUNT, json={}).status_code for _ in range(20)]

    first = statuses()
    emulator_control.reset()
    assert statuses() == first and {200, 503} <= set(first)


# ---- wallet rules and inspection ------------------------------------------------------------------


def test_notification_summary_catches_a_double_buzz(http: httpx.Client,
                                                    emulator_control: EmulatorControl) -> None:
    a = enrol(http, "A")
    enrol(http, "B")
    enrol(http, "C", metaData={"marketingMessage": "Hello"})
    for external_id, text in (("A", "Hello"), ("A", "Hello again"), ("B", "Hello"), ("C", "Hello")):
        assert put_offer(http, external_id, text).status_code == 200
    summary = emulator_control.notification_summary(PROGRAM)
    assert summary == {"total": 3, "members": 2, "max_per_member": 2, "members_over_1": 1,
                       "per_member_over_1": [{"passId": a, "externalId": "A", "count": 2}]}
    listed = emulator_control.notifications(pass_id=a)
    assert [n["text"] for n in listed] == ["Hello", "Hello again"] and listed[0]["time"].endswith("Z")


def test_google_passes_silent_and_quota_with_clock_advance(http: httpx.Client,
                                                           emulator_control: EmulatorControl) -> None:
    member_id = enrol(http, "G1", wallet="google")
    for n in range(4):
        assert put_offer(http, "G1", f"offer {n}").status_code == 200
    stats = emulator_control.stats()
    assert (stats["notifications"], stats["silent_updates"], stats["google_quota_exceeded"]) == (0, 3, 1)
    emulator_control.advance_clock(24 * 3600 + 1)
    assert put_offer(http, "G1", "offer 4").status_code == 200
    assert emulator_control.stats()["silent_updates"] == 4
    assert emulator_control.member(member_id)["wallet"] == "google"


def test_bulk_enrol_json_and_ndjson_keep_order(emulator: EmulatorProcess,
                                               emulator_control: EmulatorControl) -> None:
    rows = [{"externalId": f"B{n}", "programId": PROGRAM, "tierId": "base", "wallet": "google"}
            for n in range(5)]
    ids = emulator_control.bulk_enrol(rows, chunk_size=2)
    assert len(set(ids)) == 5
    assert [emulator_control.member(i)["externalId"] for i in ids] == [r["externalId"] for r in rows]
    response = httpx.post(f"{emulator.url}/_emulator/members/bulk",
                          json=[{"id": "FixedId0000000000000001", "externalId": "J1", "programId": PROGRAM,
                                 "tierId": "base"}])
    assert response.json() == {"ids": ["FixedId0000000000000001"]}
    with pytest.raises(EmulatorError) as err:
        emulator_control.bulk_enrol([{"externalId": "B0", "programId": PROGRAM, "tierId": "base"}])
    assert err.value.status == 409
    assert emulator_control.health()["members"] == 6


def test_config_redacts_secret_and_rejects_unknown_settings(emulator_control: EmulatorControl) -> None:
    config = emulator_control.config()
    assert config["api_secret"] == "***" and config["seed"] is not None
    with pytest.raises(EmulatorError) as err:
        emulator_control.configure(fault_404=0.5)
    assert err.value.status == 400 and "fault_503" in str(err.value)


def test_stats_and_request_log_never_hold_the_token_or_secret(http: httpx.Client, emulator: EmulatorProcess,
                                                              emulator_control: EmulatorControl) -> None:
    enrol(http, "C1")
    put_offer(http, "C1", "Hello")
    log = emulator_control.request_log()
    assert [(row["route"], row["status"]) for row in log] == [("POST /members/member", 200),
                                                              ("PUT /members/member", 200)]
    stats = emulator_control.stats()
    assert stats["requests"]["PUT /members/member"] == {"200": 1} and stats["peak_rps"] >= 1
    dumped = json.dumps([log, stats, emulator_control.config()])
    token = http.headers["Authorization"]
    assert token not in dumped and emulator.api_secret not in dumped


def test_refreshed_token_header_when_enabled(http: httpx.Client, emulator_control: EmulatorControl) -> None:
    assert "X-Passkit-Token" not in http.post(COUNT, json={}).headers
    emulator_control.configure(refresh_token_header=True)
    refreshed = http.post(COUNT, json={}).headers["X-Passkit-Token"]
    assert http.post(COUNT, json={}, headers={"Authorization": refreshed}).status_code == 200


# ---- launcher and command line ------------------------------------------------------------------


def test_launcher_rejects_bad_settings_before_spawning() -> None:
    with pytest.raises(EmulatorError, match="metadata_mode"):
        start_emulator(metadata_mode="sometimes")


def test_launcher_context_manager_stops_the_process(tmp_path: Any) -> None:
    with start_emulator(log_path=tmp_path / "emu.log", error_shape="grpc", uvloop=False) as emu:
        assert emu.control.config()["error_shape"] == "grpc"
    assert not emu.running()
    assert "listening on" in (tmp_path / "emu.log").read_text()


def test_cli_flags_override_env_and_config_json() -> None:
    args = build_parser().parse_args(["--rate-limit", "50", "--latency-ms", "50-150", "--fault-503", "0.1",
                                      "--config-json", '{"error_shape": "grpc", "seed": 1}'])
    env = {"PASSKIT_EMULATOR_SEED": "9", "PASSKIT_EMULATOR_METADATA_MODE": "replace"}
    settings = settings_from(args, env)
    assert (settings.rate_limit_per_second, settings.latency_ms_min, settings.latency_ms_max) == (50, 50, 150)
    assert (settings.fault_503, settings.error_shape, settings.seed, settings.metadata_mode) == (
        0.1, "grpc", 1, "replace")


def test_a_blocked_event_loop_is_counted_as_a_stall() -> None:
    async def serve_and_block() -> dict[str, Any]:
        app = create_app()
        runner = web.AppRunner(app)
        await runner.setup()  # starts the loop watcher
        try:
            await asyncio.sleep(0.05)
            time.sleep(0.08)  # what a long garbage collection or a starved CPU does to the loop
            await asyncio.sleep(0.05)
            return app[STATE_KEY].stats.to_json()["loop_stalls"]
        finally:
            await runner.cleanup()

    stalls = asyncio.run(serve_and_block())
    assert stalls["count"] >= 1 and stalls["longest_ms"] >= 60


@pytest.mark.parametrize("freeze_heap", [True, False])
def test_the_emulator_process_freezes_what_survives_a_full_collection(freeze_heap: bool) -> None:
    async def serve_and_collect() -> int:
        runner = web.AppRunner(create_app(freeze_heap=freeze_heap))
        await runner.setup()
        try:
            await asyncio.sleep(0.02)  # serving
            gc.collect()  # a full collection, as the heap's growth sets one off while serving
            await asyncio.sleep(0.05)
            return gc.get_freeze_count()
        finally:
            await runner.cleanup()

    gc.unfreeze()
    try:
        frozen = asyncio.run(serve_and_collect())
    finally:
        gc.unfreeze()  # this test process is not the emulator's: give its heap back to the collector
    assert (frozen > 0) is freeze_heap
