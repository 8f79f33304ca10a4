"""The client's wire format and its handling of answers the emulator never gives.

A scripted aiohttp server on localhost (tests/fixtures/scripted_passkit.py) answers each request with a
canned response and records what arrived, so these tests see the exact bytes the client sends (real
HTTP, no mocked transport): the PUT body, the JWT header, URL quoting; and how it reads redirects, HTML
error pages, HTTP-date Retry-After, member bodies that are not members, and error bodies that echo a token.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import jwt
import pytest
from aiohttp import web

from fixtures.scripted_passkit import API_KEY, SECRET, ScriptedServer, answer, run, settings
from passpush.passkit import (
    Outcome,
    PassKitClient,
    PassKitConfigError,
    PassKitHTTPError,
    PassKitSettings,
)

MEMBER = {"id": "PK1", "externalId": "C1", "programId": "P1", "metaData": {"tier": "gold"}}


def test_read_modify_write_puts_only_identity_and_full_metadata() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, MEMBER)
        server.responses[("PUT", "/members/member")] = answer(200, {"id": "PK1"})
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="Double points!", passkit_id="PK1")

        assert result.outcome is Outcome.SENT
        assert result.passkit_id == "PK1"
        get, put = server.seen
        assert (get.method, get.raw_path, get.body) == ("GET", "/members/member/id/PK1", b"")
        assert (put.method, put.raw_path) == ("PUT", "/members/member")
        assert put.headers["Content-Type"] == "application/json"
        # Exactly the identity and the whole map: no operation, no falsey fields, no other member data.
        assert json.loads(put.body) == {
            "id": "PK1",
            "metaData": {"tier": "gold", "marketingMessage": "Double points!"},
        }

    run(scenario)


def test_merge_mode_sends_one_put_with_only_our_key_by_external_id() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("PUT", "/members/member")] = answer(200, {"id": "PK9"})
        async with PassKitClient(settings(server, metadata_update="merge", metadata_key="offer")) as client:
            result = await client.set_marketing_message(
                message="Ünïcode ✓", external_id="C1", program_id="P1"
            )

        assert (result.outcome, result.passkit_id) == (Outcome.SENT, "PK9")
        (put,) = server.seen
        assert json.loads(put.body) == {
            "externalId": "C1",
            "programId": "P1",
            "metaData": {"offer": "Ünïcode ✓"},
        }

    run(scenario)


def test_authorization_is_the_raw_jwt_with_uid_iat_exp() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, MEMBER)
        before = time.time()
        async with PassKitClient(
            settings(server, token_lifetime_seconds=120, clock_skew_seconds=15)
        ) as client:
            await client.get_member("PK1")
            await client.get_member("PK1")

        first, second = (seen.headers["Authorization"] for seen in server.seen)
        assert first == second  # cached, not re-signed per request
        claims = jwt.decode(first, SECRET, algorithms=["HS256"])
        assert claims["uid"] == API_KEY
        assert 120 + 15 <= claims["exp"] - claims["iat"] <= 120 + 15 + 1
        assert int(before) - 15 <= claims["iat"] <= time.time() - 15

    run(scenario)


def test_bearer_scheme_when_configured() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, MEMBER)
        async with PassKitClient(settings(server, auth_scheme="Bearer")) as client:
            await client.get_member("PK1")

        scheme, token = server.seen[0].headers["Authorization"].split(" ")
        assert scheme == "Bearer"
        assert jwt.decode(token, SECRET, algorithms=["HS256"])["uid"] == API_KEY

    run(scenario)


def test_external_id_and_program_id_are_quoted_as_path_segments() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/externalId/")] = answer(200, MEMBER)
        async with PassKitClient(settings(server)) as client:
            await client.get_member_by_external_id("P 1", "CUST/12?x=ä#")

        assert server.seen[0].raw_path == "/members/member/externalId/P%201/CUST%2F12%3Fx%3D%C3%A4%23"

    run(scenario)


def test_base_url_path_prefix_is_kept() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/passkit/members/member/id/")] = answer(200, MEMBER)
        prefixed = PassKitSettings(base_url=server.url + "/passkit/", api_key=API_KEY, api_secret=SECRET)
        async with PassKitClient(prefixed) as client:
            assert (await client.get_member("PK1"))["id"] == "PK1"

    run(scenario)


def test_redirect_is_fatal_and_names_the_location() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(
            301, b"", {"Location": "https://api.pub1.passkit.io/members/member/id/PK1"}
        )
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert result.outcome is Outcome.FATAL
        assert result.http_status == 301
        assert result.error is not None and "redirected to https://api.pub1.passkit.io/" in result.error
        assert len(server.seen) == 1  # not followed

    run(scenario)


def test_html_error_page_from_a_proxy_is_retryable_with_readable_text() -> None:
    async def scenario(server: ScriptedServer) -> None:
        page = "<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>"
        server.responses[("GET", "/members/member/id/")] = answer(502, page, {"Content-Type": "text/html"})
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert result.outcome is Outcome.RETRYABLE
        assert result.error == "HTTP 502: <html> <body> <h1>502 Bad Gateway</h1> </body> </html>"
        assert result.retry_after is None

    run(scenario)


def test_retry_after_as_http_date() -> None:
    async def scenario(server: ScriptedServer) -> None:
        when = format_datetime(datetime.fromtimestamp(time.time() + 20, UTC), usegmt=True)
        server.responses[("GET", "/members/member/id/")] = answer(
            429, {"code": 8, "message": "slow down", "details": []}, {"Retry-After": when}
        )
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert (result.outcome, result.http_status, result.error) == (
            Outcome.RETRYABLE,
            429,
            "HTTP 429: slow down",
        )
        assert result.retry_after is not None and 17 <= result.retry_after <= 20

    run(scenario)


def test_an_error_body_echoing_the_token_never_leaks_it() -> None:
    def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": f"bad header {request.headers['Authorization']}"}, status=400)

    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = echo
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        token = server.seen[0].headers["Authorization"]
        assert result.outcome is Outcome.PERMANENT
        assert result.error == "HTTP 400: bad header <token>"
        assert token not in repr(result)

    run(scenario)


def test_an_error_body_echoing_a_token_replaced_while_in_flight_never_leaks_it() -> None:
    # The slow request left with token 1; a request sent after the refresh carries token 2, and only then
    # does the first one get its answer, echoing token 1 (still valid until its exp).
    second_arrived = asyncio.Event()

    async def slow_echo(request: web.Request) -> web.StreamResponse:
        await second_arrived.wait()
        return web.json_response({"code": 3, "message": f"bad header {request.headers['Authorization']}"},
                                 status=400)

    def member(_request: web.Request) -> web.StreamResponse:
        second_arrived.set()
        return web.json_response(MEMBER)

    async def scenario(server: ScriptedServer) -> None:
        server.responses[("PUT", "/members/member")] = slow_echo  # type: ignore[assignment]
        server.responses[("GET", "/members/member/id/")] = member
        # 2 s tokens are replaced after 1 s
        quick = settings(server, token_lifetime_seconds=2, clock_skew_seconds=0, metadata_update="merge")
        async with PassKitClient(quick) as client:
            slow = asyncio.create_task(client.set_marketing_message(message="hi", passkit_id="PK1"))
            await asyncio.sleep(1.1)
            await client.get_member("PK1")
            result = await slow

        put, get = server.seen
        assert put.headers["Authorization"] != get.headers["Authorization"]  # the token was replaced
        assert result.error == "HTTP 400: bad header <token>"

    run(scenario)


def test_member_body_that_is_not_json_is_retryable_and_not_written() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, "not json")
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert (result.outcome, result.http_status) == (Outcome.RETRYABLE, 200)
        assert [seen.method for seen in server.seen] == ["GET"]

    run(scenario)


@pytest.mark.parametrize("body", [{}, {"metaData": {}}, {"member": MEMBER}])
def test_member_body_without_an_id_is_retryable_and_not_written(body: dict[str, Any]) -> None:
    # On a server that replaces metaData, a PUT of our key alone would wipe every other key.
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, body)
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert (result.outcome, result.http_status) == (Outcome.RETRYABLE, 200)
        assert [seen.method for seen in server.seen] == ["GET"]

    run(scenario)


@pytest.mark.parametrize("body", [
    {"externalId": "C1", "programId": "P1", "metaData": {"tier": "gold"}},  # named by its external id alone
    {"result": MEMBER},  # in the envelope of PassKit's list answers
], ids=["external_id_alone", "result_envelope"])
def test_a_member_in_another_shape_keeps_its_other_metadata_keys(body: dict[str, Any]) -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, body)
        server.responses[("PUT", "/members/member")] = answer(200, {"id": "PK1"})
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert (result.outcome, result.passkit_id) == (Outcome.SENT, "PK1")
        assert json.loads(server.seen[1].body)["metaData"] == {"tier": "gold", "marketingMessage": "hi"}

    run(scenario)


def test_member_without_metadata_gets_a_map_with_only_our_key() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("GET", "/members/member/id/")] = answer(200, {"id": "PK1", "metaData": None})
        server.responses[("PUT", "/members/member")] = answer(200, {})
        async with PassKitClient(settings(server)) as client:
            result = await client.set_marketing_message(message="hi", passkit_id="PK1")

        assert (result.outcome, result.passkit_id) == (Outcome.SENT, "PK1")  # id from the GET
        assert json.loads(server.seen[1].body)["metaData"] == {"marketingMessage": "hi"}

    run(scenario)


def test_enrol_answer_without_id_is_an_http_error() -> None:
    async def scenario(server: ScriptedServer) -> None:
        server.responses[("POST", "/members/member")] = answer(200, {"ok": True})
        async with PassKitClient(settings(server)) as client:
            with pytest.raises(PassKitHTTPError, match="answered 200 without an id"):
                await client.enrol_member({"programId": "P1", "tierId": "base", "externalId": "C1"})

    run(scenario)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"message": "", "passkit_id": "PK1"}, "message must be a non-empty string, got ''"),
        ({"message": "hi"}, "identify the member by passkit_id, or by external_id and program_id"),
        ({"message": "hi", "external_id": "C1"}, "program_id=None"),
        ({"message": "hi", "passkit_id": ""}, "passkit_id=''"),
    ],
)
def test_bad_arguments_raise_before_any_request(arguments: dict[str, Any], message: str) -> None:
    async def scenario(server: ScriptedServer) -> None:
        async with PassKitClient(settings(server)) as client:
            with pytest.raises(PassKitConfigError, match=message):
                await client.set_marketing_message(**arguments)

        assert server.seen == []

    run(scenario)


def test_client_used_outside_async_with_raises_and_consumes_no_rate() -> None:
    calls: list[int] = []

    async def limiter() -> None:
        calls.append(1)

    async def scenario(server: ScriptedServer) -> None:
        client = PassKitClient(settings(server), before_request=limiter)
        with pytest.raises(PassKitConfigError, match="not open"):
            await client.set_marketing_message(message="hi", passkit_id="PK1")
        async with client:
            with pytest.raises(PassKitConfigError, match="already open"):
                await client.__aenter__()
        with pytest.raises(PassKitConfigError, match="not open"):
            await client.get_member("PK1")

    run(scenario)
    assert calls == []
