"""The PassKit emulator's HTTP server (aiohttp) and its ``passpush-emulator`` command.

PassKit routes (JWT in ``Authorization``; errors as ``{"error"}`` or ``{"code","message","details"}``):

    PUT  /members/member                                  update (PATCH or PUT) -> {"id"}
    POST /members/member                                  enrol -> {"id"}
    GET  /members/member/id/{id}                          -> member
    GET  /members/member/externalId/{programId}/{externalId} -> member
    PUT  /members/member/points/set                       set balances -> member
    POST /members/member/list/{programId}                 {"filters"} -> NDJSON {"result": member}
    POST /members/count/{programId}                       {"filters"} -> {"total": n}

Every PassKit request goes through one pipeline, in this order: rate limit (429/503 + Retry-After),
JWT check (401/403), latency, 503 burst, one fault die roll (drop, drop-after-apply, hang, 503,
429, 500), the route itself (fail_members forced codes live there), then drop-after-apply.

Control and inspection routes live under ``/_emulator/`` without auth: health, config, reset,
programs, members/bulk, members/{id}, stats, notifications, notifications/summary, requests/log,
clock. See ``passpush.emulator.control`` for a client.

The hot path is kept lean on purpose (the benchmark measures the product, not this server): no
access log, no per-request logging, cached JWT verification, plain dict lookups.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from passpush.emulator.state import (
    GRPC_CODES,
    ApiError,
    EmulatorState,
    Settings,
    SettingsError,
    iso_time,
    mint_token,
)

log = logging.getLogger(__name__)

ENV_PREFIX = "PASSKIT_EMULATOR_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
READY_LINE = "PassKit emulator listening on {url}"
MAX_BODY_BYTES = 1 << 30  # bulk seeding of 1,000,000 members fits in one request
JSON_TYPE = "application/json"
RETRY_AFTER = {"Retry-After": "1"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RouteImpl = Callable[[web.Request, EmulatorState, bytes], Awaitable[web.StreamResponse]]
ControlImpl = Callable[[web.Request, EmulatorState], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------------------------
# responses
# --------------------------------------------------------------------------------------------


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type=JSON_TYPE, headers=headers)


def error_response(settings: Settings, status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """An error body in the configured shape: PassKit's older gateway or plain grpc-gateway."""
    if settings.error_shape == "grpc":
        payload: dict[str, Any] = {"code": GRPC_CODES.get(status, 2), "message": message, "details": []}
    else:
        payload = {"error": message}
    return json_response(status, payload, headers)


def parse_json(raw: bytes, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; 400 when malformed (or empty when ``required``)."""
    if not raw.strip():
        if required:
            raise ApiError(400, "request body is empty: expected a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise ApiError(400, f"malformed JSON body: {err}") from err
    if not isinstance(body, dict):
        raise ApiError(400, f"expected a JSON object, got {type(body).__name__}")
    return body


def _drop(request: web.Request) -> None:
    """Close the connection without an answer (the client sees 'server disconnected')."""
    if request.transport is not None:
        request.transport.close()


# --------------------------------------------------------------------------------------------
# the PassKit pipeline
# --------------------------------------------------------------------------------------------


def passkit_route(state: EmulatorState, name: str, impl: RouteImpl) -> Handler:
    """Wrap a route with rate limit, auth, latency and faults, and count what it answered."""

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        state.stats.arrival(started)
        response, outcome = await _pipeline(request, state, impl, started)
        state.stats.response(name, outcome)
        if state.settings.request_log_size:
            state.request_log.append((time.time(), request.method, request.path, name, outcome,
                                      round((time.monotonic() - started) * 1000.0, 2)))
        return response

    return handle


async def _pipeline(request: web.Request, state: EmulatorState, impl: RouteImpl,
                    started: float) -> tuple[web.StreamResponse, int | str]:
    settings = state.settings
    limiter = state.limiter
    if limiter is not None and not limiter.take(started):
        state.stats.rate_limited += 1
        return _reply(error_response(settings, settings.rate_limit_status, "rate limit exceeded",
                                     RETRY_AFTER))
    denied = state.auth.check(request.headers.get("Authorization"), settings)
    if denied is not None:
        return _reply(error_response(settings, denied.status, denied.message))
    # Read the whole request before any sleep: a client that gives up during latency or a hang
    # has still delivered its request, and the server goes on to apply it (the in-doubt case).
    raw = await request.read()
    generation = state.generation
    delay = state.draw_latency()
    if delay:
        await asyncio.sleep(delay)
    early = await _injected_fault(request, state)
    if isinstance(early, web.StreamResponse) or early == "dropped":
        return _reply(early) if isinstance(early, web.StreamResponse) else (early, "dropped")
    if state.generation != generation:
        # A reset happened while this request slept: it belongs to an earlier test, do not apply it.
        return _reply(error_response(state.settings, 503, "emulator was reset while the request waited"))
    try:
        response = await impl(request, state, raw)
    except ApiError as err:
        response = error_response(state.settings, err.status, err.message)
    except ConnectionResetError:  # the client left while a list was streaming
        return web.Response(status=499), "client_gone"
    if early == "drop_after_apply":
        state.stats.faults["drop_after_apply"] += 1
        _drop(request)
        return response, "dropped"
    if state.settings.refresh_token_header and response.status == 200 and not response.prepared:
        response.headers["X-Passkit-Token"] = mint_token(state.settings, time.time())
    return response, response.status


def _reply(response: web.StreamResponse) -> tuple[web.StreamResponse, int]:
    return response, response.status


async def _injected_fault(request: web.Request,
                          state: EmulatorState) -> web.StreamResponse | str | None:
    """An error response, "dropped", "drop_after_apply" (to do after the route) or None."""
    settings = state.settings
    if state.burst_until and state.in_burst(time.monotonic()):
        state.stats.faults["burst_503"] += 1
        return error_response(settings, 503, "service unavailable")
    fault = state.draw_fault()
    if fault is None or fault == "drop_after_apply":
        return fault
    state.stats.faults[fault] += 1
    if fault == "drop":
        _drop(request)
        return "dropped"
    if fault == "hang":
        await asyncio.sleep(settings.hang_seconds)
        return None  # then answer normally, long after the client gave up
    if fault == "429":
        return error_response(settings, 429, "resource exhausted", RETRY_AFTER)
    message = "service unavailable" if fault == "503" else "unexpected error"
    return error_response(settings, int(fault), message)


# --------------------------------------------------------------------------------------------
# PassKit routes
# --------------------------------------------------------------------------------------------


async def update_member(request: web.Request, state: EmulatorState, raw: bytes) -> web.StreamResponse:
    member = state.update_member(parse_json(raw))
    return json_response(200, {"id": member.id})


async def enrol_member(request: web.Request, state: EmulatorState, raw: bytes) -> web.StreamResponse:
    member = state.enrol(parse_json(raw))
    return json_response(200, {"id": member.id})


async def get_member_by_id(request: web.Request, state: EmulatorState, raw: bytes) -> web.StreamResponse:
    return json_response(200, state.get_by_id(request.match_info["id"]).to_json())


async def get_member_by_external_id(request: web.Request, state: EmulatorState,
                                    raw: bytes) -> web.StreamResponse:
    match = request.match_info
    return json_response(200, state.get_by_external(match["programId"], match["externalId"]).to_json())


async def set_points(request: web.Request, state: EmulatorState, raw: bytes) -> web.StreamResponse:
    return json_response(200, state.set_points(parse_json(raw)).to_json())


async def list_members(request: web.Request, state: EmulatorState, raw: bytes) -> web.StreamResponse:
    """Newline-delimited ``{"result": member}``, streamed in chunks (a program may be huge)."""
    body = parse_json(raw, required=False)
    members = state.list_members(request.match_info["programId"], body.get("filters"))
    response = web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE})
    await response.prepare(request)
    lines: list[str] = []
    for member in members:
        lines.append(json.dumps({"result": member.to_json()}, separators=(",", ":")))
        if len(lines) >= 1000:
            await response.write(("\n".join(lines) + "\n").encode())
            lines.clear()
    if lines:
        await response.write(("\n".join(lines) + "\n").encode())
    await response.write_eof()
    return response


async def count_members(request: web.Request, state: EmulatorState, raw: bytes) -> web.StreamResponse:
    body = parse_json(raw, required=False)
    return json_response(200, {"total": state.count_members(request.match_info["programId"],
                                                            body.get("filters"))})


PASSKIT_ROUTES: tuple[tuple[str, str, RouteImpl], ...] = (
    ("PUT", "/members/member", update_member),
    ("POST", "/members/member", enrol_member),
    ("GET", "/members/member/id/{id}", get_member_by_id),
    ("GET", "/members/member/externalId/{programId}/{externalId}", get_member_by_external_id),
    ("PUT", "/members/member/points/set", set_points),
    ("POST", "/members/member/list/{programId}", list_members),
    ("POST", "/members/count/{programId}", count_members),
)


# --------------------------------------------------------------------------------------------
# control routes
# --------------------------------------------------------------------------------------------


def control_route(state: EmulatorState, impl: ControlImpl) -> Handler:
    """No auth, no faults; bad input answers 400/404 ``{"error"}`` naming the problem."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await impl(request, state)
        except SettingsError as err:
            return json_response(400, {"error": str(err)})
        except ApiError as err:
            return json_response(err.status, {"error": err.message})

    return handle


async def health(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, {"status": "ok", "pid": os.getpid(), "members": len(state.members),
                               "programs": len(state.programs),
                               "uptime_seconds": round(time.time() - state.stats.started, 3)})


async def get_config(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, state.config_json())


async def put_config(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    state.configure(parse_json(await request.read()))
    return json_response(200, state.config_json())


async def reset(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    body = parse_json(await request.read(), required=False)
    state.reset(config=bool(body.get("config")))
    return json_response(200, {"status": "reset", "config_reset": bool(body.get("config"))})


async def create_program(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, state.create_program(parse_json(await request.read())).to_json())


async def list_programs(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, {"programs": [p.to_json() for p in state.programs.values()]})


async def bulk_enrol(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    """A JSON list or NDJSON of members; all or nothing; answers the ids in input order."""
    raw = await request.read()
    try:
        if raw.lstrip()[:1] == b"[":
            records = json.loads(raw)
        else:
            records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    except ValueError as err:
        raise ApiError(400, f"malformed JSON or NDJSON body: {err}") from err
    members = state.enrol_many(records)
    return json_response(200, {"ids": [member.id for member in members]})


async def member_detail(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, state.member_detail(request.match_info["id"]))


async def stats(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, state.stats.to_json())


async def notifications(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    query = request.query
    kind = query.get("kind", "notification")
    if kind not in ("notification", "silent", "quota_exceeded", "all"):
        raise ApiError(400, f"kind {kind!r} is not one of notification, silent, quota_exceeded, all")
    events = state.notifications(kind=kind, external_id=query.get("externalId"),
                                 pass_id=query.get("passId"), program_id=query.get("programId"),
                                 limit=_query_int(query, "limit"))
    return json_response(200, {"count": len(events), "notifications": [e.to_json() for e in events]})


async def notification_summary(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    return json_response(200, state.notification_summary(request.query.get("programId") or None))


async def request_log(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    limit = _query_int(request.query, "limit") or 100
    entries = list(state.request_log)[-limit:]
    keys = ("time", "method", "path", "route", "status", "ms")
    rows = [dict(zip(keys, entry, strict=True)) for entry in entries]
    for row in rows:
        row["time"] = iso_time(row["time"])
    return json_response(200, {"requests": rows})


async def clock(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    """``{"advance_seconds": n}`` moves the emulator clock forward; ``{"offset_seconds": n}`` sets it."""
    body = parse_json(await request.read(), required=False)
    for key in ("advance_seconds", "offset_seconds"):
        if key in body and (isinstance(body[key], bool) or not isinstance(body[key], int | float)):
            raise ApiError(400, f"{key} must be a number of seconds, got {body[key]!r}")
    if "offset_seconds" in body:
        state.clock.offset = float(body["offset_seconds"])
    state.clock.advance(float(body.get("advance_seconds", 0)))
    return json_response(200, {"now": iso_time(state.clock.now()), "offset_seconds": state.clock.offset})


def _query_int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as err:
        raise ApiError(400, f"{name}={value!r}: expected an integer") from err


CONTROL_ROUTES: tuple[tuple[str, str, ControlImpl], ...] = (
    ("GET", "/_emulator/health", health),
    ("GET", "/_emulator/config", get_config),
    ("PUT", "/_emulator/config", put_config),
    ("POST", "/_emulator/reset", reset),
    ("GET", "/_emulator/programs", list_programs),
    ("POST", "/_emulator/programs", create_program),
    ("POST", "/_emulator/members/bulk", bulk_enrol),
    ("GET", "/_emulator/members/{id}", member_detail),
    ("GET", "/_emulator/stats", stats),
    ("GET", "/_emulator/notifications", notifications),
    ("GET", "/_emulator/notifications/summary", notification_summary),
    ("GET", "/_emulator/requests/log", request_log),
    ("POST", "/_emulator/clock", clock),
)

STATE_KEY = web.AppKey("passkit_emulator_state", EmulatorState)


def create_app(settings: Settings | None = None, freeze_heap: bool = False) -> web.Application:
    """The aiohttp application; its EmulatorState is ``app[STATE_KEY]``.

    ``freeze_heap`` is for the emulator's own process (``serve``): it freezes the whole process's heap
    after each full garbage collection (see ``_watch_loop``), which is no business of a host process.
    """
    state = EmulatorState(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    for method, path, impl in PASSKIT_ROUTES:
        app.router.add_route(method, path, passkit_route(state, f"{method} {path}", impl))
    for method, path, impl in CONTROL_ROUTES:
        app.router.add_route(method, path, control_route(state, impl))
    app.cleanup_ctx.append(functools.partial(_watch_loop, freeze_heap=freeze_heap))
    return app


LOOP_TICK_SECONDS = 0.01


async def _watch_loop(app: web.Application, freeze_heap: bool) -> AsyncIterator[None]:
    """Count the event loop's stalls and, with ``freeze_heap``, keep garbage collection from causing them.

    A 10 ms sleep, timed over and over: how late it wakes is how long the loop stalled. After every
    full garbage collection, what survived is frozen (members, notifications, the request log: objects
    that live as long as the emulator), so the next full collection walks only what is new. Walking
    everything held the loop for 73 ms late in a 20,000-member benchmark run; the rate limiter, stamping
    the requests that queued meanwhile all at once, saw a bunch where the sender had kept to the rate
    (bench/RESULTS.md). Frozen objects are still freed by reference counting when a reset drops them;
    only garbage caught in a reference cycle after reaching the oldest generation would stay.
    """

    async def watch() -> None:
        frozen_after = gc.get_stats()[2]["collections"]  # the full collections already seen
        while True:
            asked = time.monotonic()
            await asyncio.sleep(LOOP_TICK_SECONDS)
            # stats is replaced by a reset: look it up on every tick
            app[STATE_KEY].stats.loop_stalls.observe(time.monotonic() - asked - LOOP_TICK_SECONDS, time.time())
            if freeze_heap and (full := gc.get_stats()[2]["collections"]) != frozen_after:
                gc.freeze()
                frozen_after = full

    watcher = asyncio.create_task(watch())
    yield
    watcher.cancel()


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="passpush-emulator",
        description="Local PassKit REST emulator. Every setting can also come from the environment "
                    f"as {ENV_PREFIX}<NAME> (e.g. {ENV_PREFIX}RATE_LIMIT_PER_SECOND=50) or as JSON in "
                    f"{ENV_PREFIX}CONFIG_JSON; command-line flags win.")
    parser.add_argument("--host", default=os.environ.get(f"{ENV_PREFIX}HOST", DEFAULT_HOST))
    parser.add_argument("--port", type=int, default=int(os.environ.get(f"{ENV_PREFIX}PORT", DEFAULT_PORT)),
                        help="0 picks a free port (the ready line tells which)")
    parser.add_argument("--config-json", help="settings as a JSON object")
    parser.add_argument("--latency-ms", help="latency range, e.g. 50-150 (or one number)")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    aliases = {"rate_limit_per_second": ["--rate-limit"]}
    defaults = Settings().public()
    for name in Settings.names():
        flags = [f"--{name.replace('_', '-')}", *aliases.get(name, [])]
        hint = SETTING_HELP.get(name, "")
        parser.add_argument(*flags, dest=name, default=None, metavar="VALUE",
                            help=f"{hint} (default {defaults[name]!r})".strip())
    return parser


SETTING_HELP = {
    "accept_bearer": "accept 'Bearer <jwt>' as well as the raw token",
    "forbidden_keys": "comma-separated API keys answered 403",
    "credentials_revoked": "answer 401 to every token",
    "refresh_token_header": "send a fresh JWT in X-Passkit-Token on success",
    "metadata_mode": "merge | replace: how a PATCH carrying metaData treats keys it does not send",
    "error_shape": "legacy {error} | grpc {code,message,details}",
    "google_notifies": "Google passes also record lock-screen notifications",
    "google_quota_per_day": "delivered updates per Google pass per rolling 24 h",
    "google_quota_status": "status answered when the Google quota refuses an update",
    "rate_limit_burst": "token bucket size; 0 = max(1, rate/10)",
    "rate_limit_status": "429 | 503",
    "fault_hang": "probability of sleeping hang_seconds before answering",
    "fault_drop": "probability of closing the connection before applying",
    "fault_drop_after_apply": "probability of applying, then closing the connection",
    "burst_503_seconds": "answer 503 to everything for this many seconds from now",
    "fail_members": "externalId or id = status, comma-separated, e.g. C1=404",
    "seed": "seed for the fault and latency dice and for ids",
}


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Defaults < env vars < env CONFIG_JSON < --config-json < --latency-ms < individual flags."""
    changes: dict[str, Any] = {}
    for name in Settings.names():
        if f"{ENV_PREFIX}{name.upper()}" in environ:
            changes[name] = environ[f"{ENV_PREFIX}{name.upper()}"]
    for text in (environ.get(f"{ENV_PREFIX}CONFIG_JSON"), args.config_json):
        if text:
            try:
                changes.update(json.loads(text))
            except (ValueError, TypeError) as err:
                raise SettingsError(f"config JSON is not a JSON object: {err}") from err
    latency = args.latency_ms or environ.get(f"{ENV_PREFIX}LATENCY_MS")
    if latency:
        low, _, high = latency.partition("-")
        changes["latency_ms_min"], changes["latency_ms_max"] = low, high or low
    flags = {name: getattr(args, name) for name in Settings.names()}
    changes.update({name: value for name, value in flags.items() if value is not None})
    return Settings().updated(changes)


async def serve(host: str, port: int, settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT), printing the ready line once listening."""
    stop = stop or asyncio.Event()
    runner = web.AppRunner(create_app(settings, freeze_heap=True), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    bound_port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY_LINE.format(url=f"http://{host}:{bound_port}"), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``passpush-emulator``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args, os.environ)
    except SettingsError as err:
        print(f"passpush-emulator: {err}", file=sys.stderr)
        return 2
    loop_factory = None
    if not args.no_uvloop:
        try:
            import uvloop  # optional: about a third faster when installed
        except ImportError:
            uvloop = None
        loop_factory = uvloop.new_event_loop if uvloop else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(args.host, args.port, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
