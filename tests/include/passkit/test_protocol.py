"""Pure functions of the client: status classification, Retry-After, error bodies, settings, surface."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

import passpush.passkit as passkit
from passpush.passkit import (
    Outcome,
    PassKitConfigError,
    PassKitSettings,
    classify_status,
    describe_error_body,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SENT),
        (204, Outcome.SENT),
        (301, Outcome.FATAL),
        (307, Outcome.FATAL),
        (400, Outcome.PERMANENT),
        (401, Outcome.FATAL),
        (403, Outcome.FATAL),
        (404, Outcome.PERMANENT),
        (408, Outcome.RETRYABLE),
        (409, Outcome.RETRYABLE),
        (410, Outcome.PERMANENT),
        (422, Outcome.PERMANENT),
        (429, Outcome.RETRYABLE),
        (500, Outcome.RETRYABLE),
        (501, Outcome.PERMANENT),
        (502, Outcome.RETRYABLE),
        (503, Outcome.RETRYABLE),
        (504, Outcome.RETRYABLE),
        (505, Outcome.PERMANENT),
        (599, Outcome.RETRYABLE),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("-5", 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        (format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"error": "member not found"}', "member not found"),
        (b'{"code": 5, "message": "member not found", "details": []}', "member not found"),
        (b'{"error": {"code": 404, "message": "nested not found"}}', "nested not found"),
        (b'{"code": 13}', '{"code":13}'),
        (b"[1, 2]", "[1,2]"),
        (b"<html>\n <body>502   Bad Gateway</body>\n</html>", "<html> <body>502 Bad Gateway</body> </html>"),
        (b"upstream connect error", "upstream connect error"),
        (b"", ""),
        (b"  \n", ""),
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
    ],
)
def test_describe_error_body_reads_both_shapes_and_plain_text(body: bytes, text: str) -> None:
    assert describe_error_body(body) == text


def test_describe_error_body_truncates_long_text() -> None:
    body = json.dumps({"error": "x" * 1000}).encode()

    text = describe_error_body(body, limit=50)

    assert len(text) == 50
    assert text.endswith("…")


def _settings(**overrides: object) -> PassKitSettings:
    values: dict[str, object] = {"base_url": "https://api.pub1.passkit.io", "api_key": "k", "api_secret": "s"}
    values.update(overrides)
    return PassKitSettings(**values)  # type: ignore[arg-type]


def test_settings_defaults_and_secret_not_in_repr() -> None:
    settings = _settings(api_secret="do-not-print-me")

    assert "do-not-print-me" not in repr(settings)
    assert (settings.token_lifetime_seconds, settings.clock_skew_seconds) == (300, 30)
    assert (settings.auth_scheme, settings.metadata_update, settings.metadata_key) == (
        "",
        "read_modify_write",
        "marketingMessage",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_url": "api.pub1.passkit.io"}, "base_url 'api.pub1.passkit.io' is not an http"),
        ({"base_url": "ftp://x"}, "is not an http"),
        ({"api_key": ""}, "api_key is empty"),
        ({"api_secret": ""}, "api_secret is empty"),
        ({"token_lifetime_seconds": 0}, "token_lifetime_seconds must be > 0, got 0"),
        ({"clock_skew_seconds": -1}, "clock_skew_seconds must be >= 0"),
        ({"auth_scheme": "Token"}, r"auth_scheme 'Token' is not one of \('', 'Bearer'\)"),
        ({"timeout_seconds": 0}, "timeout_seconds must be > 0"),
        ({"metadata_key": ""}, "metadata_key is empty"),
        ({"metadata_update": "patch"}, r"'patch' is not one of \('read_modify_write', 'merge'\)"),
        ({"max_connections": 0}, "max_connections must be >= 1"),
    ],
)
def test_settings_validation_names_the_bad_value(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(PassKitConfigError, match=message):
        _settings(**overrides)


def test_config_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        _settings(metadata_update="nope")


def test_public_surface_is_pinned() -> None:
    assert sorted(passkit.__all__) == [
        "Outcome",
        "PassKitAuthError",
        "PassKitClient",
        "PassKitConfigError",
        "PassKitConflictError",
        "PassKitError",
        "PassKitHTTPError",
        "PassKitHook",
        "PassKitNotFoundError",
        "PassKitSettings",
        "PassKitTimeoutError",
        "PassKitTransportError",
        "SendResult",
        "TokenCache",
        "classify_status",
        "describe_error_body",
        "mint_token",
        "parse_retry_after",
    ]
    for name in passkit.__all__:
        assert getattr(passkit, name) is not None


def test_every_error_is_a_passkit_error() -> None:
    errors = [getattr(passkit, name) for name in passkit.__all__ if name.endswith("Error")]

    assert all(issubclass(error, passkit.PassKitError) for error in errors)
    assert issubclass(passkit.PassKitTimeoutError, passkit.PassKitTransportError)
    assert issubclass(passkit.PassKitNotFoundError, passkit.PassKitHTTPError)
    assert not issubclass(passkit.PassKitAuthError, passkit.PassKitHTTPError)


def test_outcome_values_are_their_names() -> None:
    assert [outcome.value for outcome in Outcome] == ["SENT", "UNCHANGED", "RETRYABLE", "PERMANENT", "FATAL"]
    assert Outcome.SENT == "SENT"
