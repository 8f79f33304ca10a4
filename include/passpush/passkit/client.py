"""Async client for PassKit's members REST API: the hot path of every buzz campaign.

One `PassKitClient` holds one aiohttp session (a keep-alive pool of `max_connections` connections) and one
cached JWT, and makes exactly one HTTP attempt per call. `set_marketing_message` never raises for a failed
recipient: it classifies the answer into an `Outcome` and leaves retries, backoff and rate limiting to the
caller, which plugs its rate limiter into `before_request` (awaited before *every* HTTP request).

Classification (`classify_status`):

=====================================  ===========  ==========================================================
answer                                 outcome      why
=====================================  ===========  ==========================================================
2xx                                    SENT         (UNCHANGED when the GET shows the text is already there)
401, 403                               FATAL        credentials, clock skew or permission: campaign-wide
3xx                                    FATAL        wrong base URL (http→https, wrong host): campaign-wide
408, 425, 429, 500, 502, 503, 504      RETRYABLE    PassKit says "back off and repeat"; Retry-After honoured
409                                    RETRYABLE    see below
other 5xx except 501, 505              RETRYABLE    server-side and usually transient
timeout, refused, reset, dropped       RETRYABLE    in doubt for a PUT; repeating it is safe (see below)
400, 404, 501, 505, other 4xx          PERMANENT    repeating the same request cannot succeed
=====================================  ===========  ==========================================================

409 on an update is the gRPC gateway's ABORTED (a concurrent write to the member, transient) or ALREADY_EXISTS
(which a metaData-only update cannot cause). It is RETRYABLE here; the caller should retry it once and then
give up, since a 409 that persists is not transient. `SendResult.http_status` lets it tell 409 apart.

Repeating an update is safe: the PUT sets an absolute value, and the same value again changes nothing and
does not buzz the phone. With `read_modify_write` the retry's GET even reports UNCHANGED when the first PUT
landed before the connection dropped.

`timeout_seconds` covers one request on the wire. aiohttp's own total timeout would also count the wait for
a free pooled connection, so a caller with more requests in flight than `max_connections` would see requests
that never left "time out" and be recorded as in doubt; a semaphore of `max_connections` slots is taken
before the timer starts (and before `before_request`, so rate tokens go to requests that can leave at once).

aiohttp silently replays an idempotent request (GET, PUT) once when a connection drops; that is switched off
here, because a hidden second attempt would bypass `before_request` (the rate limiter) and hide the fault
from the caller's accounting.

A successful response may carry a refreshed token in `X-Passkit-Token`; it is ignored. The client signs its
own short-lived tokens, so it always knows their expiry without decoding a foreign token, and checking a
header on every response would be work on the hot path for nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from enum import StrEnum
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from passpush.passkit.auth import TokenCache
from passpush.passkit.errors import (
    PassKitAuthError,
    PassKitConfigError,
    PassKitConflictError,
    PassKitError,
    PassKitHTTPError,
    PassKitNotFoundError,
    PassKitTimeoutError,
    PassKitTransportError,
)

log = logging.getLogger(__name__)

METADATA_UPDATE_CHOICES = ("read_modify_write", "merge")
AUTH_SCHEME_CHOICES = ("", "Bearer")
ERROR_TEXT_LIMIT = 200
# 503 without Retry-After: PassKit's documented advice is "back off for 250 ms and repeat".
DEFAULT_503_BACKOFF_SECONDS = 0.25
# A PassKit id that cannot exist: check_credentials reads it and takes 404 as "the token was accepted".
_PROBE_MEMBER_ID = "passpush-credentials-check"
_USER_AGENT = "passpush-passkit-client/0.1"

# Any JWT (base64url of '{"' starts every header): not only the token in use now, but one a concurrent
# request has replaced since this request left, or a token PassKit handed out in X-Passkit-Token.
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_PERMANENT_5XX = frozenset({501, 505})

# json.dumps builds a new encoder per call when given options; one shared encoder avoids that churn.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Outcome(StrEnum):
    """What a send did, and what the caller should do next."""

    SENT = "SENT"  # PassKit applied the update
    UNCHANGED = "UNCHANGED"  # the pass already shows this text; nothing was written (it would not buzz)
    RETRYABLE = "RETRYABLE"  # transient or in doubt: repeat later (after `retry_after` when given)
    PERMANENT = "PERMANENT"  # this recipient cannot be updated with this request
    FATAL = "FATAL"  # campaign-wide (credentials, permission, base URL): stop sending


@dataclass(frozen=True)
class PassKitSettings:
    """How to reach and authenticate with PassKit; validated on construction."""

    base_url: str
    api_key: str
    api_secret: str = field(repr=False)
    token_lifetime_seconds: int = 300
    clock_skew_seconds: int = 30
    auth_scheme: str = ""
    timeout_seconds: float = 10.0
    metadata_key: str = "marketingMessage"
    metadata_update: str = "read_modify_write"
    # As many as the sender keeps recipients in flight (SendOptions.max_in_flight), so the pool is never
    # what bounds it: at 64, read_modify_write (two requests per send) stopped at 64 / latency / 2 sends/s.
    # Under a rate limit only rate x latency connections are ever open at once.
    max_connections: int = 128

    def __post_init__(self) -> None:
        _check_base_url(self.base_url)
        if not self.api_key:
            raise PassKitConfigError("api_key is empty: set the PassKit API key")
        if not self.api_secret:
            raise PassKitConfigError("api_secret is empty: set the PassKit API secret")
        if self.token_lifetime_seconds <= 0:
            raise PassKitConfigError(
                f"token_lifetime_seconds must be > 0, got {self.token_lifetime_seconds!r} (PassKit: 60-3600)"
            )
        if self.clock_skew_seconds < 0:
            raise PassKitConfigError(f"clock_skew_seconds must be >= 0, got {self.clock_skew_seconds!r}")
        if self.auth_scheme not in AUTH_SCHEME_CHOICES:
            raise PassKitConfigError(
                f"auth_scheme {self.auth_scheme!r} is not one of {AUTH_SCHEME_CHOICES!r} "
                "('' sends the raw token as PassKit's examples do)"
            )
        if not self.timeout_seconds > 0:
            raise PassKitConfigError(f"timeout_seconds must be > 0, got {self.timeout_seconds!r}")
        if not self.metadata_key:
            raise PassKitConfigError("metadata_key is empty: name the metaData key the campaign text goes in")
        if self.metadata_update not in METADATA_UPDATE_CHOICES:
            raise PassKitConfigError(
                f"metadata_update {self.metadata_update!r} is not one of {METADATA_UPDATE_CHOICES!r}"
            )
        if self.max_connections < 1:
            raise PassKitConfigError(f"max_connections must be >= 1, got {self.max_connections!r}")


def _check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PassKitConfigError(
            f"base_url {base_url!r} is not an http(s) URL with a host, e.g. https://api.pub1.passkit.io"
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """The classified answer to one `set_marketing_message` call."""

    outcome: Outcome
    http_status: int | None  # None when no HTTP answer arrived (timeout, dropped connection)
    error: str | None  # short reason; never contains the token
    retry_after: float | None = None  # seconds to wait before retrying, when the server said so
    passkit_id: str | None = None
    # The PUT left and got no answer that rules out that PassKit applied it (no answer, or a 5xx).
    in_doubt: bool = False


def classify_status(status: int) -> Outcome:
    """Map an HTTP status to an outcome; the table in the module docstring explains each row."""
    if 200 <= status < 300:
        return Outcome.SENT
    if status in (401, 403) or 300 <= status < 400:
        return Outcome.FATAL
    if status in _RETRYABLE_STATUSES or (status >= 500 and status not in _PERMANENT_5XX):
        return Outcome.RETRYABLE
    return Outcome.PERMANENT


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def describe_error_body(raw: bytes, limit: int = ERROR_TEXT_LIMIT) -> str:
    """The useful text of an error body, whichever gateway produced it, truncated to `limit` characters.

    Handles `{"error": "..."}` (PassKit's older gateway), `{"code": n, "message": "...", "details": []}`
    (grpc-gateway), other JSON, and non-JSON bodies such as a proxy's HTML page.
    """
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    detail = _detail_from_json(body) if body is not None else None
    if detail is None:
        detail = " ".join(text.split())
    return detail if len(detail) <= limit else detail[: limit - 1] + "…"


def _detail_from_json(body: Any) -> str | None:
    if not isinstance(body, dict):
        return json.dumps(body, separators=(",", ":"))
    error = body.get("error")
    if isinstance(error, str) and error:
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]  # Google-style {"error": {"code", "message"}}
    message = body.get("message")
    if isinstance(message, str) and message:
        return message
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _member_object(raw: bytes) -> dict[str, Any] | None:
    """A member as read by GET: a JSON object naming the member (its PassKit `id` or `externalId`), bare or
    in the `{"result": ...}` envelope of PassKit's list answers. Anything else (`{}`, an error object) is
    not a member: taken for one without metaData, our key alone would be written back."""
    body = _json_object(raw)
    if body is not None and not _names_member(body) and isinstance(body.get("result"), dict):
        body = body["result"]
    return body if body is not None and _names_member(body) else None


def _names_member(body: dict[str, Any]) -> bool:
    return any(isinstance(body.get(key), str) and body[key] for key in ("id", "externalId"))


def _segment(value: str) -> str:
    # Ids go into the URL path; an externalId may contain '/', '?', spaces or non-ASCII.
    return quote(value, safe="")


class PassKitClient:
    """Async PassKit REST client; use as `async with PassKitClient(settings) as client: ...`."""

    def __init__(
        self,
        settings: PassKitSettings,
        *,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._before_request = before_request
        self._base = str(URL(settings.base_url.rstrip("/")))
        self._members_url = URL(self._base + "/members/member", encoded=True)
        self._timeout_text = f"timeout after {float(settings.timeout_seconds)}s"
        self._key = settings.metadata_key
        self._read_first = settings.metadata_update == "read_modify_write"
        self._tokens = TokenCache(
            settings.api_key,
            settings.api_secret,
            lifetime_seconds=settings.token_lifetime_seconds,
            clock_skew_seconds=settings.clock_skew_seconds,
        )
        self._token = ""
        self._get_headers: dict[str, str] = {}
        self._json_headers: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def settings(self) -> PassKitSettings:
        return self._settings

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise PassKitConfigError("this PassKitClient is already open; use one `async with` per client")
        connector = aiohttp.TCPConnector(limit=self._settings.max_connections, limit_per_host=0)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout_seconds),
            cookie_jar=aiohttp.DummyCookieJar(),  # PassKit sets no cookies; skip per-response jar work
        )
        # One attempt per call: see the module docstring. aiohttp's own test client does the same.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        self._slots = asyncio.Semaphore(self._settings.max_connections)
        log.debug("PassKit session opened to %s (max %d connections)", self._base, connector.limit)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session, self._slots = self._session, None, None
        if session is not None:
            await session.close()

    # ---- the hot path -------------------------------------------------------------------------------

    async def set_marketing_message(
        self,
        *,
        message: str,
        passkit_id: str | None = None,
        external_id: str | None = None,
        program_id: str | None = None,
    ) -> SendResult:
        """Put `message` in the member's `metadata_key` without touching any other metaData key.

        Identifies the member by PassKit id when given, else by externalId + programId. Raises only
        `PassKitConfigError` (bad arguments, client not open); every answer is returned as a `SendResult`.

        `read_modify_write` (GET, then PUT of the whole map) is safe whether PassKit merges or replaces
        metaData, but not atomic: on a replacing server, another system's change to a *different* key
        between our GET and PUT (milliseconds) would be written back with its old value. `merge` (one PUT
        of our key) has no such window but wipes every other key on a replacing server.
        """
        if not isinstance(message, str) or not message:
            # PATCH semantics ignore falsey values: an empty text would "succeed" and change nothing.
            raise PassKitConfigError(f"message must be a non-empty string, got {message!r}")
        identity = _identity(passkit_id, external_id, program_id)
        try:
            if self._read_first:
                return await self._read_modify_write(identity, message, passkit_id, external_id, program_id)
            return await self._put_metadata(identity, {self._key: message}, passkit_id)
        except PassKitTransportError as err:
            return SendResult(Outcome.RETRYABLE, None, err.message)

    async def _read_modify_write(
        self,
        identity: dict[str, Any],
        message: str,
        passkit_id: str | None,
        external_id: str | None,
        program_id: str | None,
    ) -> SendResult:
        url = self._member_url(passkit_id, external_id, program_id)
        status, raw, headers = await self._exchange("GET", url, None)
        if not 200 <= status < 300:
            return self._failure(status, raw, headers)
        member = _member_object(raw)
        if member is None:
            # Not a member (empty, HTML, {}): writing our key alone would wipe the others on a replacing server.
            return SendResult(Outcome.RETRYABLE, status, f"HTTP {status}: member body is not a member object")
        member_id = member["id"] if isinstance(member.get("id"), str) and member["id"] else passkit_id
        metadata = member.get("metaData")
        if not isinstance(metadata, dict):
            metadata = {}
        if metadata.get(self._key) == message:
            return SendResult(Outcome.UNCHANGED, status, None, passkit_id=member_id)
        # The whole current map goes back so a server that *replaces* metaData keeps the other keys.
        metadata[self._key] = message
        return await self._put_metadata(identity, metadata, member_id)

    async def _put_metadata(
        self, identity: dict[str, Any], metadata: dict[str, Any], known_id: str | None
    ) -> SendResult:
        identity["metaData"] = metadata
        try:
            status, raw, headers = await self._exchange("PUT", self._members_url, _encode_json(identity).encode())
        except PassKitTransportError as err:
            return SendResult(Outcome.RETRYABLE, None, err.message, in_doubt=True)
        if not 200 <= status < 300:
            failure = self._failure(status, raw, headers)
            return replace(failure, in_doubt=True) if status >= 500 else failure
        answer = _json_object(raw)
        answered_id = answer.get("id") if answer is not None else None
        return SendResult(
            Outcome.SENT, status, None, passkit_id=answered_id if isinstance(answered_id, str) else known_id
        )

    def _failure(self, status: int, raw: bytes, headers: Mapping[str, str]) -> SendResult:
        outcome = classify_status(status)
        retry_after = None
        if outcome is Outcome.RETRYABLE:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if retry_after is None and status == 503:
                retry_after = DEFAULT_503_BACKOFF_SECONDS
        elif status == 401:
            self._tokens.invalidate()
        return SendResult(outcome, status, self._error_text(status, raw, headers), retry_after)

    # ---- other calls: raise typed errors ------------------------------------------------------------

    async def get_member(self, passkit_id: str) -> dict[str, Any]:
        """The member with this PassKit id; `PassKitNotFoundError` when unknown."""
        url = self._member_url(passkit_id, None, None)
        return await self._call("GET", url, None, f"get member id={passkit_id!r}")

    async def get_member_by_external_id(self, program_id: str, external_id: str) -> dict[str, Any]:
        """The member with this externalId in this program; `PassKitNotFoundError` when unknown."""
        url = self._member_url(None, external_id, program_id)
        return await self._call("GET", url, None, f"get member externalId={external_id!r} in {program_id!r}")

    async def enrol_member(self, member: dict[str, Any]) -> str:
        """Enrol a member (`programId` and `tierId` required) and return its new PassKit id."""
        what = f"enrol member externalId={member.get('externalId')!r}"
        answer = await self._call("POST", self._members_url, _encode_json(member).encode(), what)
        member_id = answer.get("id")
        if not isinstance(member_id, str) or not member_id:
            raise PassKitHTTPError(f"{what}: PassKit answered 200 without an id: {answer!r:.200}", status=200)
        return member_id

    async def check_credentials(self, program_id: str | None = None) -> None:
        """Prove the key, secret, auth scheme and clock are accepted, with one cheap request.

        Without `program_id` it reads a member id that cannot exist, so 404 means "authenticated". With
        `program_id` it counts that program's members, which also proves permission on the program.
        Raises `PassKitAuthError` on 401/403, naming the likely fix.
        """
        if program_id is None:
            url = self._member_url(_PROBE_MEMBER_ID, None, None)
            status, raw, headers = await self._exchange("GET", url, None)
            if 200 <= status < 300 or status in (400, 404):
                return
        else:
            url = URL(f"{self._base}/members/count/{_segment(program_id)}", encoded=True)
            status, raw, headers = await self._exchange("POST", url, b"{}")
            if 200 <= status < 300:
                return
        raise self._error(status, raw, headers, "credentials check")

    # ---- plumbing -----------------------------------------------------------------------------------

    async def _call(self, method: str, url: URL, body: bytes | None, what: str) -> dict[str, Any]:
        status, raw, headers = await self._exchange(method, url, body)
        if not 200 <= status < 300:
            raise self._error(status, raw, headers, what)
        answer = _json_object(raw)
        if answer is None:
            raise PassKitHTTPError(f"{what}: HTTP {status} body is not a JSON object", status=status)
        return answer

    async def _exchange(
        self, method: str, url: URL, body: bytes | None
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One HTTP request and its whole answer; raises `PassKitTransportError` when there is no answer."""
        session, slots = self._session, self._slots
        if session is None or slots is None:
            raise PassKitConfigError("PassKitClient is not open: use `async with PassKitClient(settings)`")
        async with slots:
            return await self._exchange_in_slot(session, method, url, body)

    async def _exchange_in_slot(
        self, session: aiohttp.ClientSession, method: str, url: URL, body: bytes | None
    ) -> tuple[int, bytes, Mapping[str, str]]:
        if self._before_request is not None:
            await self._before_request()
        # After the (possibly long) rate-limiter wait, so the token is fresh when it leaves.
        token = self._tokens.current()
        if token is not self._token:
            self._use_token(token)
        headers = self._get_headers if body is None else self._json_headers
        try:
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                return resp.status, await resp.read(), resp.headers
        except TimeoutError as err:
            raise PassKitTimeoutError(f"{self._timeout_text} on {method}", retryable=True) from err
        except aiohttp.ClientConnectorError as err:
            raise PassKitTransportError(
                f"cannot connect on {method}: {err}"[:ERROR_TEXT_LIMIT], retryable=True
            ) from err
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as err:
            raise PassKitTransportError(f"connection dropped on {method}", retryable=True) from err
        except aiohttp.ClientError as err:
            reason = f"{type(err).__name__} on {method}: {err}"[:ERROR_TEXT_LIMIT]
            raise PassKitTransportError(reason, retryable=True) from err

    def _use_token(self, token: str) -> None:
        # Headers are built once per token, not per request.
        scheme = self._settings.auth_scheme
        self._token = token
        self._get_headers = {
            "Authorization": f"{scheme} {token}" if scheme else token,
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        self._json_headers = {**self._get_headers, "Content-Type": "application/json"}
        log.debug("PassKit token refreshed; next refresh at %.0f", self._tokens.refresh_at)

    def _member_url(self, passkit_id: str | None, external_id: str | None, program_id: str | None) -> URL:
        if passkit_id:
            return URL(f"{self._base}/members/member/id/{_segment(passkit_id)}", encoded=True)
        if not (external_id and program_id):
            raise PassKitConfigError(
                f"a member lookup needs a passkit_id, or external_id and program_id; got "
                f"passkit_id={passkit_id!r}, external_id={external_id!r}, program_id={program_id!r}"
            )
        path = f"/members/member/externalId/{_segment(program_id)}/{_segment(external_id)}"
        return URL(self._base + path, encoded=True)

    def _error_text(self, status: int, raw: bytes, headers: Mapping[str, str]) -> str:
        if 300 <= status < 400:
            location = headers.get("Location", "?")
            return f"HTTP {status}: redirected to {location}; set the base URL to PassKit's REST host"
        raw = _JWT.sub(b"<token>", raw)  # a proxy may echo the request back, with the token in use or an older one
        detail = describe_error_body(raw) or _reason(status)
        return f"HTTP {status}: {detail}"

    def _error(self, status: int, raw: bytes, headers: Mapping[str, str], what: str) -> PassKitError:
        text = self._error_text(status, raw, headers)
        outcome = classify_status(status)
        if status in (401, 403):
            if status == 401:
                self._tokens.invalidate()
            return PassKitAuthError(f"{what}: {text}. {self._auth_hint(status)}", status=status)
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if status == 503 and retry_after is None:
            retry_after = DEFAULT_503_BACKOFF_SECONDS
        kind = {404: PassKitNotFoundError, 409: PassKitConflictError}.get(status, PassKitHTTPError)
        return kind(
            f"{what}: {text}",
            status=status,
            retryable=outcome is Outcome.RETRYABLE,
            retry_after=retry_after if outcome is Outcome.RETRYABLE else None,
        )

    def _auth_hint(self, status: int) -> str:
        key = self._settings.api_key
        if status == 403:
            return f"API key {key!r} is authenticated but lacks permission: use a key of the owning account"
        hint = (
            f"PassKit rejected the token for API key {key!r}: check the API key (connection login), the API "
            f"secret (connection password), the region ({self._base}) and this machine's clock"
        )
        if self._settings.auth_scheme:
            hint += f"; or set auth_scheme '' (raw token) instead of {self._settings.auth_scheme!r}"
        return hint


def _identity(passkit_id: str | None, external_id: str | None, program_id: str | None) -> dict[str, Any]:
    if passkit_id:
        return {"id": passkit_id}
    if external_id and program_id:
        return {"externalId": external_id, "programId": program_id}
    raise PassKitConfigError(
        "identify the member by passkit_id, or by external_id and program_id together "
        f"(got passkit_id={passkit_id!r}, external_id={external_id!r}, program_id={program_id!r})"
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "no body"
