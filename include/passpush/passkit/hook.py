"""Airflow hook that turns one `http` connection into PassKit client settings.

Connection fields: host = REST base URL (`https://api.pub1.passkit.io`; may include the scheme, `schema`
overrides it, `port` is appended), login = API key, password = API secret. Extras, read by name:
`token_lifetime_seconds`, `clock_skew_seconds`, `auth_scheme`, `timeout_seconds`, `metadata_key`,
`metadata_update`, `max_connections`, and `rate_limit_per_second` (enforced by the sender, not the client).

Example for local runs and tests::

    AIRFLOW_CONN_PASSKIT_DEFAULT='{"conn_type": "http", "host": "http://127.0.0.1:8080",
        "login": "<api key>", "password": "<api secret>", "extra": {"metadata_update": "read_modify_write"}}'
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from passpush.passkit.client import (
    AUTH_SCHEME_CHOICES,
    METADATA_UPDATE_CHOICES,
    PassKitClient,
    PassKitSettings,
)
from passpush.passkit.errors import PassKitConfigError

# The product's own default when the connection does not say (PassKit documents no limit).
DEFAULT_RATE_LIMIT_PER_SECOND = 50.0
_SCHEMES = ("http", "https")
_INT_EXTRAS = ("token_lifetime_seconds", "clock_skew_seconds", "max_connections")
_FLOAT_EXTRAS = ("timeout_seconds",)
_CHOICE_EXTRAS = {"auth_scheme": AUTH_SCHEME_CHOICES, "metadata_update": METADATA_UPDATE_CHOICES}
_STR_EXTRAS = ("metadata_key",)
KNOWN_EXTRAS = frozenset(
    (*_INT_EXTRAS, *_FLOAT_EXTRAS, *_CHOICE_EXTRAS, *_STR_EXTRAS, "rate_limit_per_second")
)


class PassKitHook(BaseHook):
    """PassKit credentials and client settings from an Airflow connection, resolved on first use."""

    conn_name_attr = "passkit_conn_id"
    default_conn_name = "passkit_default"
    conn_type = "http"
    hook_name = "PassKit"

    def __init__(self, passkit_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.passkit_conn_id = passkit_conn_id
        self._settings: PassKitSettings | None = None
        self._rate_limit = DEFAULT_RATE_LIMIT_PER_SECOND

    def get_conn(self) -> PassKitSettings:
        """The resolved settings (a client needs an event loop, so `get_client` builds it unopened)."""
        return self.get_settings()

    def get_settings(self) -> PassKitSettings:
        """Settings from the connection, looked up once per hook."""
        if self._settings is None:
            return self._load(self.get_connection(self.passkit_conn_id))
        return self._settings

    async def aget_settings(self) -> PassKitSettings:
        """`get_settings` for code already inside an event loop (a sync lookup there can deadlock)."""
        if self._settings is None:
            return self._load(await self.aget_connection(self.passkit_conn_id))
        return self._settings

    def get_rate_limit_per_second(self) -> float:
        """Requests per second the sender should allow (extra `rate_limit_per_second`, default 50)."""
        self.get_settings()  # resolves the connection, and with it the rate, on first use
        return self._rate_limit

    def get_client(self, before_request: Callable[[], Awaitable[None]] | None = None) -> PassKitClient:
        """An unopened client: use it as `async with hook.get_client() as client:`."""
        return PassKitClient(self.get_settings(), before_request=before_request)

    def _load(self, conn: Any) -> PassKitSettings:
        name = self.passkit_conn_id
        if not conn.password:
            raise PassKitConfigError(
                f"connection {name!r} has no password: set the PassKit API secret as the connection password"
            )
        mask_secret(conn.password)  # before anything can log it
        if not conn.login:
            raise PassKitConfigError(
                f"connection {name!r} has no login: set the PassKit API key as the connection login"
            )
        extras = dict(conn.extra_dejson or {})
        unknown = sorted(set(extras) - KNOWN_EXTRAS)
        if unknown:
            # A typo would otherwise silently fall back to a default.
            self.log.warning(
                "connection %r: ignoring unknown extras %s; known extras: %s",
                name,
                unknown,
                sorted(KNOWN_EXTRAS),
            )
        options = _options(name, extras)
        rate = _number(name, "rate_limit_per_second", extras.get("rate_limit_per_second"), float)
        if rate is not None and not rate > 0:
            raise PassKitConfigError(
                f"connection {name!r} extra 'rate_limit_per_second' must be > 0, got {rate!r}"
            )
        try:
            settings = PassKitSettings(
                base_url=_base_url(name, conn.host, conn.schema, conn.port),
                api_key=conn.login,
                api_secret=conn.password,
                **options,
            )
        except PassKitConfigError as err:
            raise PassKitConfigError(f"connection {name!r}: {err}") from err
        self._rate_limit = DEFAULT_RATE_LIMIT_PER_SECOND if rate is None else float(rate)
        self._settings = settings
        return settings


def _options(name: str, extras: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in _INT_EXTRAS:
        value = _number(name, key, extras.get(key), int)
        if value is not None:
            options[key] = value
    for key in _FLOAT_EXTRAS:
        value = _number(name, key, extras.get(key), float)
        if value is not None:
            options[key] = value
    for key, choices in _CHOICE_EXTRAS.items():
        if key in extras:
            if extras[key] not in choices:
                raise PassKitConfigError(
                    f"connection {name!r} extra {key!r} is {extras[key]!r}; valid choices: {list(choices)!r}"
                )
            options[key] = extras[key]
    for key in _STR_EXTRAS:
        if key in extras:
            if not isinstance(extras[key], str) or not extras[key]:
                raise PassKitConfigError(
                    f"connection {name!r} extra {key!r} must be a non-empty string, got {extras[key]!r}"
                )
            options[key] = extras[key]
    return options


def _number(name: str, key: str, value: Any, kind: type[int] | type[float]) -> int | float | None:
    """An extra as a number; the UI stores extras typed as strings, so "300" is accepted too."""
    if value is None or value == "":
        return None
    if not isinstance(value, bool):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            pass
        else:
            # int("30.5") fails, but int(30.5) would silently truncate: refuse that too.
            if kind is float or float(value) == number:
                return number
    expected = "a whole number" if kind is int else "a number"
    raise PassKitConfigError(f"connection {name!r} extra {key!r} must be {expected}, got {value!r}")


def _base_url(name: str, host: str | None, schema: str | None, port: int | None) -> str:
    """host (with or without scheme) + schema override + port, e.g. https://api.pub1.passkit.io."""
    host = (host or "").strip()
    if not host:
        raise PassKitConfigError(
            f"connection {name!r} has no host: set the PassKit REST base URL, e.g. https://api.pub1.passkit.io"
        )
    scheme, _, rest = host.rpartition("://")
    scheme = (schema or scheme or "https").lower()
    if scheme not in _SCHEMES:
        raise PassKitConfigError(f"connection {name!r} scheme {scheme!r} is not one of {list(_SCHEMES)!r}")
    parts = urlsplit(f"{scheme}://{rest}")
    netloc = parts.netloc
    if port:
        if parts.port is not None and parts.port != port:
            raise PassKitConfigError(
                f"connection {name!r} host {host!r} names port {parts.port} but the port field says {port}"
            )
        if parts.port is None:
            netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
