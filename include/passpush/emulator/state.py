"""In-memory model of the local PassKit emulator, with no HTTP in it.

Everything the emulator knows lives here so it can be tested without a server:

- ``Settings``: every knob (credentials, metaData merge/replace, error shape, rate limit, latency,
  fault probabilities, Google quota), validated on every change.
- ``Member`` and ``Program``: PassKit's members and the pass template (field name -> changeMessage)
  that decides whether an update makes an Apple pass buzz.
- ``EmulatorState``: the operations behind the REST routes (enrol, PATCH/PUT update, set points,
  list, count), the buzz rule, Google's 3-updates-per-24-h quota, the emulator clock, the token
  bucket, the fault dice and the statistics.
- ``Authenticator``: the JWT check, with a cache so a token is verified once, not per request.

Errors a PassKit route should answer are raised as ``ApiError(status, message)``; the server turns
them into a body of the configured shape. Bad settings raise ``SettingsError`` (a ``ValueError``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import time
import types
import typing
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt

DEFAULT_TEMPLATE: dict[str, str] = {"meta.marketingMessage": "%@"}
DEFAULT_PROGRAM_NAME = "Emulated program"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PASSKIT_ID_LENGTH = 22
_BASE62_BYTES = bytes(BASE62.encode()[i % 62] for i in range(256))
STATUSES = ("ENROLLED", "ACTIVE", "CHECKED_IN", "EXPIRED", "CHECKED_OUT", "DELETED")
WALLETS = ("apple", "google")
OPERATIONS = ("OPERATION_PATCH", "OPERATION_PUT", "OPERATION_DO_NOT_USE")
GOOGLE_WINDOW_SECONDS = 24 * 3600.0
REDACTED = "***"
# Fault kinds drawn by one die roll per request, in this order.
FAULT_KINDS = ("drop", "drop_after_apply", "hang", "503", "429", "500")
FAULT_SETTINGS = tuple(f"fault_{kind}" for kind in FAULT_KINDS)

# HTTP status -> gRPC code, for the grpc-gateway error shape.
GRPC_CODES: dict[int, int] = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    409: 6,  # ALREADY_EXISTS
    429: 8,  # RESOURCE_EXHAUSTED
    499: 1,  # CANCELLED
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}


class ApiError(Exception):
    """An error a PassKit route answers with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class SettingsError(ValueError):
    """A setting name or value the emulator does not accept."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """Every emulator knob; change them at runtime with ``PUT /_emulator/config``."""

    # Auth
    api_key: str = "emulator-key"
    api_secret: str = "emulator-secret-for-local-tests-only"  # >= 32 bytes: PyJWT warns on shorter HS256 keys
    accept_bearer: bool = True
    forbidden_keys: list[str] = field(default_factory=list)
    credentials_revoked: bool = False
    iat_leeway_seconds: float = 5.0
    refresh_token_header: bool = False
    # Member semantics
    metadata_mode: str = "merge"
    error_shape: str = "legacy"
    # Wallet behaviour
    google_notifies: bool = False
    google_quota_per_day: int = 3
    google_quota_status: int = 200
    # Rate limit (0 = unlimited); burst 0 means max(1, rate / 10)
    rate_limit_per_second: float = 0.0
    rate_limit_burst: int = 0
    rate_limit_status: int = 429
    # Latency, uniform in [min, max]
    latency_ms_min: float = 0.0
    latency_ms_max: float = 0.0
    # Faults: probabilities per request
    fault_503: float = 0.0
    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_hang: float = 0.0
    fault_drop: float = 0.0
    fault_drop_after_apply: float = 0.0
    hang_seconds: float = 30.0
    burst_503_seconds: float = 0.0
    fail_members: dict[str, int] = field(default_factory=dict)
    seed: int | None = None
    request_log_size: int = 1000

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def updated(self, changes: Mapping[str, Any]) -> Settings:
        """A validated copy with ``changes`` applied; raises SettingsError naming the bad value."""
        hints = _setting_types()
        coerced: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in hints:
                raise SettingsError(f"unknown setting {name!r}; valid settings: {', '.join(self.names())}")
            if name == "api_secret" and value == REDACTED:
                continue  # a redacted config read back verbatim must not become the secret
            coerced[name] = coerce_setting(name, value)
        new = dataclasses.replace(self, **coerced)
        new.validate()
        return new

    def validate(self) -> None:
        _check_choice("metadata_mode", self.metadata_mode, ("merge", "replace"))
        _check_choice("error_shape", self.error_shape, ("legacy", "grpc"))
        _check_choice("rate_limit_status", self.rate_limit_status, (429, 503))
        if not (self.google_quota_status == 200 or 400 <= self.google_quota_status <= 599):
            raise SettingsError(f"google_quota_status {self.google_quota_status} must be 200 or 400-599")
        for name in FAULT_SETTINGS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SettingsError(f"{name} {value} is a probability: expected 0.0 to 1.0")
        if self.fault_total() > 1.0:
            raise SettingsError(
                f"fault probabilities add up to {self.fault_total():.3f}; expected at most 1.0")
        if self.latency_ms_min < 0 or self.latency_ms_max < self.latency_ms_min:
            raise SettingsError(
                f"latency {self.latency_ms_min}-{self.latency_ms_max} ms: expected 0 <= min <= max"
            )
        for name in ("rate_limit_per_second", "rate_limit_burst", "hang_seconds", "burst_503_seconds",
                     "google_quota_per_day", "request_log_size", "iat_leeway_seconds"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} {getattr(self, name)} must not be negative")
        for key, code in self.fail_members.items():
            if not 400 <= code <= 599:
                raise SettingsError(f"fail_members[{key!r}] = {code}: expected an HTTP error status 400-599")

    def fault_probabilities(self) -> tuple[float, ...]:
        """Probabilities in the order of FAULT_KINDS."""
        return tuple(getattr(self, name) for name in FAULT_SETTINGS)

    def fault_total(self) -> float:
        return sum(self.fault_probabilities())

    def effective_burst(self) -> int:
        if self.rate_limit_burst > 0:
            return self.rate_limit_burst
        return max(1, int(self.rate_limit_per_second / 10))

    def public(self) -> dict[str, Any]:
        """The settings as JSON, secret redacted."""
        data = dataclasses.asdict(self)
        data["api_secret"] = REDACTED
        return data


def _check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{name} {value!r} is not one of {', '.join(map(repr, choices))}")


@functools.cache
def _setting_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def coerce_setting(name: str, value: Any) -> Any:
    """Convert ``value`` (from JSON, an env var or a CLI flag) to the type of setting ``name``."""
    hint = _setting_types().get(name)
    if hint is None:
        raise SettingsError(f"unknown setting {name!r}; valid settings: {', '.join(Settings.names())}")
    try:
        return _coerce(hint, value)
    except (TypeError, ValueError) as err:
        raise SettingsError(f"setting {name}={value!r}: expected {_type_name(hint)}") from err


def _coerce(hint: Any, value: Any) -> Any:
    if isinstance(hint, types.UnionType):  # int | None
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(int, value)
    origin = typing.get_origin(hint)
    if origin is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise TypeError("list expected")
        return [str(item) for item in value]
    if origin is dict:
        if isinstance(value, str):
            value = _parse_pairs(value)
        if not isinstance(value, dict):
            raise TypeError("object expected")
        return {str(k): _coerce(int, v) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise TypeError("bool expected")
    if hint in (int, float):
        if isinstance(value, bool):
            raise TypeError("number expected, got a bool")
        number = hint(float(value)) if hint is int else float(value)
        if hint is int and float(value) != number:
            raise ValueError("integer expected")
        return number
    if not isinstance(value, str):
        raise TypeError("string expected")
    return value


def _parse_pairs(text: str) -> dict[str, str]:
    """``"A=404,B=500"`` (CLI and env form of a map)."""
    pairs = {}
    for part in text.split(","):
        if part.strip():
            key, _, val = part.partition("=")
            pairs[key.strip()] = val.strip()
    return pairs


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


# --------------------------------------------------------------------------------------------
# Members, programs, wallet events
# --------------------------------------------------------------------------------------------


class Member:
    """A PassKit member; ``wallet`` and ``google_updates`` are emulator-only."""

    __slots__ = ("created", "external_id", "google_updates", "id", "meta_data", "opt_out", "person",
                 "points", "program_id", "secondary_points", "status", "tier_id", "tier_points",
                 "updated", "wallet")

    def __init__(self, member_id: str, program_id: str, tier_id: str, now: float) -> None:
        self.id = member_id
        self.program_id = program_id
        self.tier_id = tier_id
        self.external_id = ""
        self.points = 0.0
        self.secondary_points = 0.0
        self.tier_points = 0
        self.meta_data: dict[str, str] = {}
        self.person: dict[str, Any] = {}
        self.opt_out = False
        self.status = "ENROLLED"
        self.created = now
        self.updated = now
        self.wallet = "apple"
        # Delivery times (emulator clock) of Google updates inside the rolling 24 h window.
        self.google_updates: deque[float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The member as PassKit's REST layer shows it."""
        return {
            "id": self.id,
            "externalId": self.external_id,
            "programId": self.program_id,
            "tierId": self.tier_id,
            "points": _number(self.points),
            "secondaryPoints": _number(self.secondary_points),
            "tierPoints": self.tier_points,
            "metaData": dict(self.meta_data),
            "person": dict(self.person),
            "optOut": self.opt_out,
            "status": self.status,
            "created": iso_time(self.created),
            "updated": iso_time(self.updated),
        }

    def field_value(self, name: str) -> Any:
        """Value of a pass template field or a filter field (``meta.k``, ``person.x``, ``points``)."""
        if name.startswith("meta."):
            return self.meta_data.get(name[5:])
        if name.startswith("metaData."):
            return self.meta_data.get(name[9:])
        if name.startswith("person."):
            return self.person.get(name[7:])
        attr = _FIELD_ATTRS.get(name)
        return getattr(self, attr) if attr else None


_FIELD_ATTRS = {
    "id": "id", "externalId": "external_id", "programId": "program_id", "tierId": "tier_id",
    "points": "points", "secondaryPoints": "secondary_points", "tierPoints": "tier_points",
    "optOut": "opt_out", "status": "status", "created": "created", "updated": "updated",
    "wallet": "wallet",
}


@dataclass
class Program:
    """A loyalty program and its pass template (field name -> changeMessage)."""

    id: str
    name: str
    template: dict[str, str]
    by_external_id: dict[str, Member] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "template": dict(self.template),
                "members": len(self.members)}


@dataclass(slots=True)
class WalletEvent:
    """What reached (or failed to reach) a wallet: a lock-screen notification, a silent Google
    update, or a Google update refused by the quota."""

    kind: str  # "notification" | "silent" | "quota_exceeded"
    pass_id: str
    external_id: str
    program_id: str
    wallet: str
    field: str | None
    text: str | None
    time: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "passId": self.pass_id, "externalId": self.external_id,
                "programId": self.program_id, "wallet": self.wallet, "field": self.field,
                "text": self.text, "time": iso_time(self.time)}


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float) -> float | int:
    """protojson prints 100.0 as 100."""
    return int(value) if float(value).is_integer() else value


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(_number(value))
    return str(value)


# --------------------------------------------------------------------------------------------
# Clock, token bucket, statistics, JWT
# --------------------------------------------------------------------------------------------


class Clock:
    """Real time plus an offset that tests advance (Google's 24 h window); JWTs use real time."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self.offset = 0.0

    def now(self) -> float:
        return self._wall() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.now()


class TokenBucket:
    """Rate limit with a small burst; ``take`` is called with time.monotonic()."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class LoopStalls:
    """How long the emulator's event loop was held up: ``observe`` is given how late a short timer fired.

    The rate limiter stamps a request when the loop gets to it, not when it reached the socket; a stall
    of the loop (its own garbage collection, or the CPU taken by the sender and the database on a shared
    machine) hands the limiter a bunch of requests that in fact arrived spread out. Counting stalls lets
    a benchmark tell the 429s a sender provoked from the ones the emulator made up.
    """

    THRESHOLD_SECONDS = 0.025
    RECENT = 50

    def __init__(self) -> None:
        self.count = 0
        self.longest = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=self.RECENT)  # (epoch at the end, seconds)

    def observe(self, lateness: float, at: float) -> None:
        if lateness >= self.THRESHOLD_SECONDS:
            self.count += 1
            self.longest = max(self.longest, lateness)
            self.recent.append((at, lateness))

    def to_json(self) -> dict[str, Any]:
        return {"over_ms": round(self.THRESHOLD_SECONDS * 1000), "count": self.count,
                "longest_ms": round(self.longest * 1000, 1),
                "recent": [{"at": iso_time(at), "ms": round(late * 1000, 1)} for at, late in self.recent]}


class Stats:
    """Request, fault and wallet counters, and requests/second over 1-second windows."""

    RECENT_WINDOWS = 120

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[str, dict[str, int]] = {}
        self.total_requests = 0
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.notifications = 0
        self.silent_updates = 0
        self.google_quota_exceeded = 0
        self.apple_updates = 0
        self._second = -1
        self._count = 0
        self.peak_rps = 0
        self.active_seconds = 0
        self.recent: deque[int] = deque(maxlen=self.RECENT_WINDOWS)
        self.loop_stalls = LoopStalls()

    def arrival(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._close_window(second)
        self._count += 1
        self.total_requests += 1

    def _close_window(self, second: int) -> None:
        if self._count:
            self.recent.append(self._count)
            self.peak_rps = max(self.peak_rps, self._count)
            self.active_seconds += 1
        if self._second >= 0:
            # Idle seconds between two busy ones count as zero in the recent series.
            self.recent.extend([0] * min(self.RECENT_WINDOWS, max(0, second - self._second - 1)))
        self._second = second
        self._count = 0

    def response(self, route: str, status: int | str) -> None:
        by_status = self.requests.setdefault(route, {})
        key = str(status)
        by_status[key] = by_status.get(key, 0) + 1

    def to_json(self) -> dict[str, Any]:
        active = self.active_seconds + (1 if self._count else 0)
        return {
            "requests": {route: dict(codes) for route, codes in self.requests.items()},
            "requests_total": self.total_requests,
            "rate_limited": self.rate_limited,
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "peak_rps": max(self.peak_rps, self._count),
            "mean_rps": round(self.total_requests / active, 1) if active else 0.0,
            "recent_rps": [*self.recent, self._count] if self._count else list(self.recent),
            "notifications": self.notifications,
            "silent_updates": self.silent_updates,
            "google_quota_exceeded": self.google_quota_exceeded,
            "apple_updates": self.apple_updates,
            "loop_stalls": self.loop_stalls.to_json(),
            "since": iso_time(self.started),
        }


class Authenticator:
    """Checks ``Authorization`` headers; a verified token is cached (token -> exp) so HS256 and
    JSON decoding happen once per token, not once per request."""

    MAX_CACHE = 100_000

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, bool]] = {}

    def clear(self) -> None:
        self._cache.clear()

    def check(self, header: str | None, settings: Settings, now: float | None = None) -> ApiError | None:
        """None when the request may proceed, else the 401/403 to answer."""
        if not header:
            return ApiError(401, "missing Authorization header")
        token = header
        if header[:7].lower() == "bearer ":
            if not settings.accept_bearer:
                return ApiError(401, "Bearer scheme not accepted: send the raw token")
            token = header[7:].strip()
        if settings.credentials_revoked:
            return ApiError(401, "API credentials revoked")
        now = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is None:
            verdict = self._verify(token, settings, now)
            if isinstance(verdict, ApiError):
                return verdict
            cached = verdict
            if len(self._cache) >= self.MAX_CACHE:
                self._cache.clear()
            self._cache[token] = cached
        exp, forbidden = cached
        if exp <= now:
            return ApiError(401, "token expired")
        if forbidden:
            return ApiError(403, "API key has no permission for this resource")
        return None

    @staticmethod
    def _verify(token: str, settings: Settings, now: float) -> tuple[float, bool] | ApiError:
        try:
            claims = jwt.decode(token, settings.api_secret, algorithms=["HS256"],
                                options={"require": ["exp", "iat"], "verify_iat": False})
        except jwt.ExpiredSignatureError:
            return ApiError(401, "token expired")
        except jwt.InvalidSignatureError:
            return ApiError(401, "token signature invalid")
        except jwt.MissingRequiredClaimError as err:
            return ApiError(401, f"token missing claim {err.claim!r}")
        except jwt.InvalidTokenError as err:
            return ApiError(401, f"token invalid: {type(err).__name__}")
        uid = claims.get("uid")
        forbidden = uid in settings.forbidden_keys
        if uid != settings.api_key and not forbidden:
            return ApiError(401, "token uid is not a known API key")
        try:
            iat, exp = float(claims["iat"]), float(claims["exp"])
        except (TypeError, ValueError):
            return ApiError(401, "token iat and exp must be numbers")
        if iat > now + settings.iat_leeway_seconds:
            return ApiError(401, "token used before issued")
        return exp, forbidden


def mint_token(settings: Settings, now: float, lifetime: float = 3600.0) -> str:
    """The refreshed token sent back in X-Passkit-Token when refresh_token_header is on."""
    return jwt.encode({"uid": settings.api_key, "iat": int(now), "exp": int(now + lifetime)},
                      settings.api_secret, algorithm="HS256")


# --------------------------------------------------------------------------------------------
# The emulator state
# --------------------------------------------------------------------------------------------


class EmulatorState:
    """Members, programs, wallet events, settings and counters of one emulator."""

    def __init__(self, settings: Settings | None = None, wall: Callable[[], float] = time.time) -> None:
        self.initial_settings = settings or Settings()
        self.initial_settings.validate()
        self.settings = self.initial_settings
        self.clock = Clock(wall)
        self.auth = Authenticator()
        self.generation = 0
        self.programs: dict[str, Program] = {}
        self.members: dict[str, Member] = {}
        self.events: list[WalletEvent] = []
        self.stats = Stats()
        self.request_log: deque[tuple[Any, ...]] = deque(maxlen=self.settings.request_log_size or 1)
        self.limiter: TokenBucket | None = None
        self.burst_until = 0.0
        self._seed_rngs()
        self._apply_runtime(self.settings, previous=None, fresh=True)

    # ---- configuration -----------------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> Settings:
        """Partial settings update; validated as a whole before anything changes."""
        new = self.settings.updated(changes)
        previous, self.settings = self.settings, new
        self._apply_runtime(new, previous, rearm_burst="burst_503_seconds" in changes)
        return new

    def reset(self, config: bool = False) -> None:
        """Forget members, programs, events, stats, clock offset and any burst; optionally config."""
        self.generation += 1  # requests still sleeping (latency, hang) must not apply afterwards
        self.programs.clear()
        self.members.clear()
        self.events.clear()
        self.stats = Stats()
        self.clock.offset = 0.0
        self.burst_until = 0.0
        previous = self.settings
        if config:
            self.settings = self.initial_settings
        self.request_log = deque(maxlen=self.settings.request_log_size or 1)
        self._seed_rngs()  # the same seed gives the same dice after every reset: order-independent tests
        self._apply_runtime(self.settings, previous, rearm_burst=config, fresh=True)

    def _seed_rngs(self) -> None:
        seed = self.settings.seed
        # Separate streams so latency draws do not shift fault draws (and ids stay reproducible).
        self.fault_rng = random.Random(seed)
        self.latency_rng = random.Random(None if seed is None else seed + 1)
        self.id_rng = random.Random(None if seed is None else seed + 2)

    def _apply_runtime(self, new: Settings, previous: Settings | None, rearm_burst: bool = True,
                       fresh: bool = False) -> None:
        """Derive the runtime objects (JWT cache, token bucket, dice) from changed settings."""
        if previous is not None and new.seed != previous.seed:
            self._seed_rngs()
        auth_fields = ("api_key", "api_secret", "forbidden_keys", "iat_leeway_seconds")
        if previous is None or any(getattr(new, f) != getattr(previous, f) for f in auth_fields):
            self.auth.clear()  # tokens verified under the old credentials must be checked again
        rate = (new.rate_limit_per_second, new.effective_burst())
        if fresh or previous is None or rate != (previous.rate_limit_per_second, previous.effective_burst()):
            self.limiter = (TokenBucket(new.rate_limit_per_second, new.effective_burst(), time.monotonic())
                            if new.rate_limit_per_second > 0 else None)
        if rearm_burst:
            self.burst_until = time.monotonic() + new.burst_503_seconds if new.burst_503_seconds else 0.0
        if previous is None or new.request_log_size != previous.request_log_size:
            self.request_log = deque(self.request_log, maxlen=new.request_log_size or 1)
        self._fault_cumulative = _cumulative(new.fault_probabilities())
        self._fault_total = new.fault_total()

    def config_json(self) -> dict[str, Any]:
        data = self.settings.public()
        data["burst_503_remaining_seconds"] = round(max(0.0, self.burst_until - time.monotonic()), 3)
        data["clock_offset_seconds"] = self.clock.offset
        return data

    # ---- per-request dice ----------------------------------------------------------------------

    def draw_fault(self) -> str | None:
        """One die roll per request: a kind from FAULT_KINDS or None."""
        if self._fault_total <= 0.0:
            return None
        roll = self.fault_rng.random()
        for kind, bound in zip(FAULT_KINDS, self._fault_cumulative, strict=True):
            if roll < bound:
                return kind
        return None

    def draw_latency(self) -> float:
        """Seconds to sleep before answering."""
        s = self.settings
        if s.latency_ms_max <= 0:
            return 0.0
        return self.latency_rng.uniform(s.latency_ms_min, s.latency_ms_max) / 1000.0

    def in_burst(self, now_monotonic: float) -> bool:
        return now_monotonic < self.burst_until

    # ---- programs ------------------------------------------------------------------------------

    def create_program(self, body: Mapping[str, Any]) -> Program:
        """Create or replace a program (its members are kept when replaced)."""
        program_id = _optional_str(body, "id") or self.new_id()
        template = body.get("template", DEFAULT_TEMPLATE)
        if not isinstance(template, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in template.items()):
            raise ApiError(400, "template must map field names to changeMessage strings")
        name = _optional_str(body, "name") or DEFAULT_PROGRAM_NAME
        existing = self.programs.get(program_id)
        if existing:
            existing.name, existing.template = name, dict(template)
            return existing
        program = self.programs[program_id] = Program(program_id, name, dict(template))
        return program

    def _program(self, program_id: str, create: bool = False) -> Program:
        program = self.programs.get(program_id)
        if program is None:
            if not create:
                raise ApiError(404, f"program {program_id} not found")
            program = self.programs[program_id] = Program(program_id, DEFAULT_PROGRAM_NAME,
                                                          dict(DEFAULT_TEMPLATE))
        return program

    def new_id(self) -> str:
        """A PassKit-like 22-character base62 id (random bytes mapped onto base62: fast enough to
        seed a million members; the slight bias towards the first 8 characters does not matter)."""
        while True:
            new = self.id_rng.randbytes(PASSKIT_ID_LENGTH).translate(_BASE62_BYTES).decode()
            if new not in self.members and new not in self.programs:
                return new

    # ---- lookups -------------------------------------------------------------------------------

    def forced_failure(self, *keys: str | None) -> None:
        """Answer the status configured in fail_members for this member's id or externalId."""
        fail = self.settings.fail_members
        if not fail:
            return
        for key in keys:
            if key and key in fail:
                self.stats.faults["fail_members"] += 1
                raise ApiError(fail[key], f"forced failure for member {key}")

    def get_by_id(self, member_id: str) -> Member:
        member = self.members.get(member_id)
        self.forced_failure(member_id, member.external_id if member else None)
        if member is None:
            raise ApiError(404, f"member {member_id} not found")
        return member

    def get_by_external(self, program_id: str, external_id: str) -> Member:
        program = self.programs.get(program_id)
        member = program.by_external_id.get(external_id) if program else None
        self.forced_failure(external_id, member.id if member else None)
        if member is None:
            raise ApiError(404, f"member with externalId {external_id} not found in program {program_id}")
        return member

    def find_member(self, body: Mapping[str, Any]) -> Member:
        """The member a request body identifies by ``id`` or ``externalId`` + ``programId``."""
        member_id = _optional_str(body, "id")
        if member_id:
            return self.get_by_id(member_id)
        external_id = _optional_str(body, "externalId")
        program_id = _optional_str(body, "programId")
        if external_id and program_id:
            return self.get_by_external(program_id, external_id)
        raise ApiError(400, "identify the member by id, or by externalId and programId")

    # ---- enrol ---------------------------------------------------------------------------------

    def enrol(self, body: Mapping[str, Any]) -> Member:
        """POST /members/member: programId and tierId required; 409 when externalId exists."""
        return self.enrol_many([body], rest=True)[0]

    def enrol_many(self, records: Iterable[Mapping[str, Any]], rest: bool = False) -> list[Member]:
        """Validate every record first, then enrol them all (a bad record enrols nothing).

        ``rest`` is the PassKit route (ids generated, fail_members applies); otherwise the control
        bulk endpoint (an ``id`` may be given, errors name the record index).
        """
        prepared = []
        seen: set[tuple[str, str]] = set()
        seen_ids: set[str] = set()
        for index, record in enumerate(records):
            try:
                prepared.append(self._prepare_enrol(record, rest, seen, seen_ids))
            except ApiError as err:
                if rest:
                    raise
                raise ApiError(err.status, f"record {index}: {err.message}") from err
        now = self.clock.now()
        return [self._insert(member_id, record, now) for member_id, record in prepared]

    def _prepare_enrol(self, record: Mapping[str, Any], rest: bool, seen: set[tuple[str, str]],
                       seen_ids: set[str]) -> tuple[str | None, Mapping[str, Any]]:
        if not isinstance(record, Mapping):
            raise ApiError(400, "member must be a JSON object")
        program_id = _optional_str(record, "programId")
        tier_id = _optional_str(record, "tierId")
        if not program_id or not tier_id:
            raise ApiError(400, "programId and tierId are required")
        external_id = _optional_str(record, "externalId")
        if rest:
            self.forced_failure(external_id)
        if external_id:
            program = self.programs.get(program_id)
            if (program and external_id in program.by_external_id) or (program_id, external_id) in seen:
                raise ApiError(409, f"member with externalId {external_id} already exists in program "
                                    f"{program_id}")
            seen.add((program_id, external_id))
        wallet = record.get("wallet", "apple")
        if wallet not in WALLETS:
            raise ApiError(400, f"wallet {wallet!r} is not one of {', '.join(WALLETS)}")
        member_id = None if rest else _optional_str(record, "id")
        if member_id:
            if member_id in self.members or member_id in seen_ids:
                raise ApiError(409, f"member id {member_id} already exists")
            seen_ids.add(member_id)
        _validate_fields(record)
        return member_id, record

    def _insert(self, member_id: str | None, record: Mapping[str, Any], now: float) -> Member:
        program = self._program(record["programId"], create=True)
        member = Member(member_id or self.new_id(), program.id, record["tierId"], now)
        member.external_id = record.get("externalId") or ""
        member.wallet = record.get("wallet", "apple")
        member.points = float(record.get("points") or 0)
        member.secondary_points = float(record.get("secondaryPoints") or 0)
        member.tier_points = int(record.get("tierPoints") or 0)
        member.meta_data = dict(record.get("metaData") or {})
        member.person = dict(record.get("person") or {})
        member.opt_out = bool(record.get("optOut"))
        member.status = record.get("status") or "ENROLLED"
        self.members[member.id] = member
        program.members.append(member)
        if member.external_id:
            program.by_external_id[member.external_id] = member
        return member

    # ---- updates -------------------------------------------------------------------------------

    def update_member(self, body: Mapping[str, Any]) -> Member:
        """PUT /members/member with PATCH (default) or PUT semantics, then the wallet rules."""
        operation = body.get("operation") or "OPERATION_PATCH"
        if operation not in OPERATIONS:
            raise ApiError(400, f"operation {operation!r} is not one of {', '.join(OPERATIONS)}")
        _validate_fields(body)
        member = self.find_member(body)
        program = self._program(member.program_id)
        before = _template_values(member, program.template)
        if operation == "OPERATION_PUT":
            changed = self._apply_put(member, program, body)
        else:
            changed = self._apply_patch(member, program, body)
        return self._after_change(member, program, before, changed)

    def set_points(self, body: Mapping[str, Any]) -> Member:
        """PUT /members/member/points/set: sets the given balances, zero included."""
        _validate_fields(body)
        if not any(body.get(k) is not None for k in ("points", "secondaryPoints", "tierPoints")):
            raise ApiError(400, "give points, secondaryPoints or tierPoints")
        member = self.find_member(body)
        program = self._program(member.program_id)
        before = _template_values(member, program.template)
        changed = False
        for key, attr, kind in (("points", "points", float), ("secondaryPoints", "secondary_points", float),
                                ("tierPoints", "tier_points", int)):
            if key in body and body[key] is not None:
                changed |= _assign(member, attr, kind(body[key]))
        return self._after_change(member, program, before, changed)

    def _apply_patch(self, member: Member, program: Program, body: Mapping[str, Any]) -> bool:
        """PATCH: missing and falsey values change nothing."""
        changed = False
        for key, attr, kind in _SCALARS:
            value = body.get(key)
            if value:
                changed |= _assign(member, attr, kind(value))
        meta = body.get("metaData")
        if meta:
            if self.settings.metadata_mode == "replace":
                changed |= _assign(member, "meta_data", dict(meta))
            else:
                merged = {**member.meta_data, **{k: v for k, v in meta.items() if v}}
                changed |= _assign(member, "meta_data", merged)
        person = body.get("person")
        if person:
            changed |= _assign(member, "person", {**member.person, **{k: v for k, v in person.items() if v}})
        changed |= self._maybe_rename(member, program, body)
        return changed

    def _apply_put(self, member: Member, program: Program, body: Mapping[str, Any]) -> bool:
        """OPERATION_PUT: the body replaces the member; identity, tier and status kept when absent."""
        changed = False
        for key, attr, kind in _SCALARS:
            value = body.get(key)
            if key in ("tierId", "status") and not value:
                continue
            changed |= _assign(member, attr, kind(value) if value is not None else kind())
        changed |= _assign(member, "meta_data", dict(body.get("metaData") or {}))
        changed |= _assign(member, "person", dict(body.get("person") or {}))
        changed |= self._maybe_rename(member, program, body)
        return changed

    def _maybe_rename(self, member: Member, program: Program, body: Mapping[str, Any]) -> bool:
        """A member found by id may be given a new externalId (unique in its program)."""
        new = _optional_str(body, "externalId")
        if not _optional_str(body, "id") or not new or new == member.external_id:
            return False
        if new in program.by_external_id:
            raise ApiError(409, f"member with externalId {new} already exists in program {program.id}")
        program.by_external_id.pop(member.external_id, None)
        member.external_id = new
        program.by_external_id[new] = member
        return True

    def _after_change(self, member: Member, program: Program, before: list[Any], changed: bool) -> Member:
        if not changed:
            return member  # nothing new reaches the wallet: no update, no buzz, no quota used
        now = self.clock.now()
        member.updated = now
        buzz = _first_changed_field(member, program.template, before)
        if member.wallet == "google":
            self._deliver_google(member, program, buzz, now)
        else:
            self.stats.apple_updates += 1
            if buzz:
                self._notify(member, program, buzz, now)
        return member

    def _deliver_google(self, member: Member, program: Program, buzz: str | None, now: float) -> None:
        """Google quota: at most google_quota_per_day delivered updates per pass per rolling 24 h."""
        window = member.google_updates
        if window is None:
            window = member.google_updates = deque()
        while window and window[0] <= now - GOOGLE_WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.settings.google_quota_per_day:
            self.stats.google_quota_exceeded += 1
            self.events.append(self._event("quota_exceeded", member, None, None, now))
            if self.settings.google_quota_status != 200:
                # PassKit stored the change; only the wallet refused it.
                raise ApiError(self.settings.google_quota_status,
                               "QuotaExceededException: too many updates to this Google pass in 24 hours")
            return
        window.append(now)
        self.stats.silent_updates += 1
        self.events.append(self._event("silent", member, None, None, now))
        if buzz and self.settings.google_notifies:
            self._notify(member, program, buzz, now)

    def _notify(self, member: Member, program: Program, field_name: str, now: float) -> None:
        text = program.template[field_name].replace("%@", _display(member.field_value(field_name)))
        self.stats.notifications += 1
        self.events.append(self._event("notification", member, field_name, text, now))

    @staticmethod
    def _event(kind: str, member: Member, field_name: str | None, text: str | None,
               now: float) -> WalletEvent:
        return WalletEvent(kind, member.id, member.external_id, member.program_id, member.wallet,
                           field_name, text, now)

    # ---- list and count ------------------------------------------------------------------------

    def list_members(self, program_id: str, filters: Mapping[str, Any] | None) -> Iterator[Member]:
        """POST /members/member/list/{programId}: filterGroups, orderBy, offset and limit."""
        filters = filters or {}
        if not isinstance(filters, Mapping):
            raise ApiError(400, "filters must be an object")
        program = self.programs.get(program_id)  # a program nobody enrolled in yet lists empty
        matcher = _compile_filters(filters)
        members: Iterable[Member] = (m for m in (program.members if program else ()) if matcher(m))
        order_by = filters.get("orderBy")
        if order_by:
            reverse = filters.get("orderAsc") is False
            members = sorted(members, key=lambda m: _sort_key(m.field_value(order_by)), reverse=reverse)
        offset = _non_negative_int(filters.get("offset"), "offset")
        limit = _non_negative_int(filters.get("limit"), "limit")
        stop = offset + limit if limit else None
        return itertools.islice(members, offset, stop)

    def count_members(self, program_id: str, filters: Mapping[str, Any] | None) -> int:
        filters = dict(filters or {})
        filters.pop("limit", None)
        filters.pop("offset", None)
        filters.pop("orderBy", None)
        return sum(1 for _ in self.list_members(program_id, filters))

    # ---- inspection ----------------------------------------------------------------------------

    def notifications(self, kind: str = "notification", external_id: str | None = None,
                      pass_id: str | None = None, program_id: str | None = None,
                      limit: int | None = None) -> list[WalletEvent]:
        """Recorded wallet events (kind "notification", "silent", "quota_exceeded" or "all")."""
        found = []
        for event in self.events:
            if ((kind == "all" or event.kind == kind)
                    and (not external_id or event.external_id == external_id)
                    and (not pass_id or event.pass_id == pass_id)
                    and (not program_id or event.program_id == program_id)):
                found.append(event)
                if limit and len(found) >= limit:
                    break
        return found

    def notification_summary(self, program_id: str | None = None, max_listed: int = 1000) -> dict[str, Any]:
        """How many lock-screen notifications, on how many passes, and who buzzed more than once."""
        per_pass: Counter[str] = Counter()
        external: dict[str, str] = {}
        for event in self.events:
            if event.kind == "notification" and (not program_id or event.program_id == program_id):
                per_pass[event.pass_id] += 1
                external[event.pass_id] = event.external_id
        over = [{"passId": pid, "externalId": external[pid], "count": n}
                for pid, n in per_pass.most_common() if n > 1]
        return {
            "total": sum(per_pass.values()),
            "members": len(per_pass),
            "max_per_member": max(per_pass.values(), default=0),
            "members_over_1": len(over),
            "per_member_over_1": over[:max_listed],
        }

    def member_detail(self, member_id: str) -> dict[str, Any]:
        """Control view of a member: PassKit fields plus wallet and Google window."""
        member = self.members.get(member_id)
        if member is None:
            raise ApiError(404, f"member {member_id} not found")
        data = member.to_json()
        data["wallet"] = member.wallet
        data["googleUpdatesInWindow"] = len(member.google_updates or ())
        return data


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

# (JSON key, attribute, type) of the scalar member fields an update may set.
_SCALARS: tuple[tuple[str, str, type], ...] = (
    ("tierId", "tier_id", str),
    ("points", "points", float),
    ("secondaryPoints", "secondary_points", float),
    ("tierPoints", "tier_points", int),
    ("optOut", "opt_out", bool),
    ("status", "status", str),
)


def _assign(member: Member, attr: str, value: Any) -> bool:
    if getattr(member, attr) == value:
        return False
    setattr(member, attr, value)
    return True


def _optional_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string, got {type(value).__name__}")
    return value


def _validate_fields(body: Mapping[str, Any]) -> None:
    """400 for values of the wrong type, as the gRPC gateway's JSON decoding would."""
    for key in ("points", "secondaryPoints", "tierPoints"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ApiError(400, f"{key} must be a number, got {value!r}")
    tier_points = body.get("tierPoints")
    if tier_points is not None and (tier_points < 0 or float(tier_points) != int(tier_points)):
        raise ApiError(400, f"tierPoints must be a non-negative integer, got {tier_points!r}")
    meta = body.get("metaData")
    if meta is not None and (not isinstance(meta, dict)
                             or not all(isinstance(v, str) for v in meta.values())):
        raise ApiError(400, "metaData must be an object of string values")
    person = body.get("person")
    if person is not None and not isinstance(person, dict):
        raise ApiError(400, "person must be an object")
    opt_out = body.get("optOut")
    if opt_out is not None and not isinstance(opt_out, bool):
        raise ApiError(400, "optOut must be true or false")
    status = body.get("status")
    if status and status not in STATUSES:
        raise ApiError(400, f"status {status!r} is not one of {', '.join(STATUSES)}")
    for key in ("tierId", "externalId", "programId", "id"):
        _optional_str(body, key)


def _template_values(member: Member, template: Mapping[str, str]) -> list[Any]:
    return [member.field_value(name) for name in template]


def _first_changed_field(member: Member, template: Mapping[str, str], before: list[Any]) -> str | None:
    """iOS shows one alert per update: the first template field (in template order) whose value
    changed to something non-empty."""
    for name, old in zip(template, before, strict=True):
        new = member.field_value(name)
        if new != old and _display(new) != "":
            return name
    return None


def _cumulative(probabilities: Iterable[float]) -> tuple[float, ...]:
    total, bounds = 0.0, []
    for p in probabilities:
        total += p
        bounds.append(total)
    return tuple(bounds)


def _non_negative_int(value: Any, name: str) -> int:
    if value in (None, ""):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise ApiError(400, f"filters.{name} must be an integer, got {value!r}") from err
    if number < 0:
        raise ApiError(400, f"filters.{name} must not be negative")
    return number


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "like": lambda a, b: a is not None and str(b).strip("%").lower() in str(a).lower(),
    "in": lambda a, b: a is not None and str(a) in {part.strip() for part in str(b).split(",")},
}


def _compile_filters(filters: Mapping[str, Any]) -> Callable[[Member], bool]:
    """filterGroups are ANDed; inside a group, ``condition`` AND (default) or OR."""
    groups = filters.get("filterGroups") or []
    if not isinstance(groups, list):
        raise ApiError(400, "filters.filterGroups must be a list")
    compiled = [_compile_group(group) for group in groups]
    return lambda member: all(test(member) for test in compiled)


def _compile_group(group: Any) -> Callable[[Member], bool]:
    if not isinstance(group, Mapping):
        raise ApiError(400, "each filter group must be an object")
    tests = []
    for spec in group.get("fieldFilters") or []:
        name = spec.get("filterField") if isinstance(spec, Mapping) else None
        op_name = str(spec.get("filterOperator") or "eq").lower() if name else ""
        if not name or op_name not in _OPERATORS:
            raise ApiError(400, f"bad field filter {spec!r}: need filterField and an operator in "
                                f"{', '.join(_OPERATORS)}")
        tests.append(_field_test(name, _OPERATORS[op_name], spec.get("filterValue")))
    combine = any if str(group.get("condition") or "AND").upper() == "OR" else all
    return lambda member: combine(test(member) for test in tests) if tests else True


def _field_test(name: str, op: Callable[[Any, Any], bool], expected: Any) -> Callable[[Member], bool]:
    def test(member: Member) -> bool:
        actual = member.field_value(name)
        target = expected
        if isinstance(actual, bool):
            target = str(expected).lower() in _TRUE
        elif isinstance(actual, int | float):
            try:
                target = float(expected)
            except (TypeError, ValueError):
                return False
        elif actual is not None:
            target = "" if expected is None else str(expected)
        return op(actual, target)

    return test
