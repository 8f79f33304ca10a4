"""PassKitHook reads its connection from AIRFLOW_CONN_PASSKIT_DEFAULT, as a deployment would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow.sdk.definitions.connection import Connection
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import redact

from passpush.passkit import PassKitClient, PassKitConfigError, PassKitHook, PassKitSettings

SECRET = "hook-test-secret-9f8e7d6c5b4a"


def _set_connection(monkeypatch: pytest.MonkeyPatch, name: str = "PASSKIT_DEFAULT", **fields: Any) -> None:
    conn: dict[str, Any] = {
        "conn_type": "http",
        "host": "https://api.pub1.passkit.io",
        "login": "api-key-1",
        "password": SECRET,
    }
    conn.update(fields)
    monkeypatch.setenv(f"AIRFLOW_CONN_{name}", json.dumps(conn))


def test_hook_follows_the_provider_pattern() -> None:
    assert PassKitHook.conn_name_attr == "passkit_conn_id"
    assert PassKitHook.default_conn_name == "passkit_default"
    assert PassKitHook.conn_type == "http"
    assert PassKitHook.hook_name == "PassKit"


def test_constructor_does_not_look_the_connection_up() -> None:
    hook = PassKitHook(passkit_conn_id="passkit_nowhere")

    with pytest.raises(AirflowNotFoundException, match="passkit_nowhere"):
        hook.get_settings()


def test_settings_from_connection_with_all_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    extras = {
        "token_lifetime_seconds": 120,
        "clock_skew_seconds": "10",  # the UI stores extras as strings
        "auth_scheme": "Bearer",
        "timeout_seconds": 2.5,
        "metadata_key": "offer",
        "metadata_update": "merge",
        "max_connections": 8,
        "rate_limit_per_second": 1500,
    }
    _set_connection(monkeypatch, extra=extras)
    hook = PassKitHook()

    settings = hook.get_settings()

    assert settings == PassKitSettings(
        base_url="https://api.pub1.passkit.io",
        api_key="api-key-1",
        api_secret=SECRET,
        token_lifetime_seconds=120,
        clock_skew_seconds=10,
        auth_scheme="Bearer",
        timeout_seconds=2.5,
        metadata_key="offer",
        metadata_update="merge",
        max_connections=8,
    )
    assert hook.get_rate_limit_per_second() == 1500.0
    assert hook.get_conn() is settings


def test_defaults_when_no_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch)
    hook = PassKitHook()

    settings = hook.get_settings()

    assert settings.metadata_update == "read_modify_write"
    assert settings.auth_scheme == ""
    assert hook.get_rate_limit_per_second() == 50.0


@pytest.mark.parametrize(
    ("fields", "base_url"),
    [
        ({"host": "api.pub2.passkit.io"}, "https://api.pub2.passkit.io"),
        ({"host": "https://api.pub1.passkit.io/"}, "https://api.pub1.passkit.io"),
        ({"host": "127.0.0.1", "schema": "http", "port": 8081}, "http://127.0.0.1:8081"),
        ({"host": "https://127.0.0.1", "schema": "http"}, "http://127.0.0.1"),
        ({"host": "http://127.0.0.1:9000", "port": 9000}, "http://127.0.0.1:9000"),
        ({"host": "https://proxy.example/passkit/"}, "https://proxy.example/passkit"),
    ],
)
def test_base_url_from_host_schema_and_port(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], base_url: str
) -> None:
    _set_connection(monkeypatch, **fields)

    assert PassKitHook().get_settings().base_url == base_url


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"password": None},
            "connection 'passkit_default' has no password: "
            "set the PassKit API secret as the connection password",
        ),
        ({"login": ""}, "has no login: set the PassKit API key as the connection login"),
        ({"host": ""}, "has no host: set the PassKit REST base URL, e.g. https://api.pub1.passkit.io"),
        ({"host": "ftp://files.example"}, r"scheme 'ftp' is not one of \['http', 'https'\]"),
        ({"host": "http://h:1", "port": 2}, "names port 1 but the port field says 2"),
        (
            {"extra": {"metadata_update": "replace"}},
            r"extra 'metadata_update' is 'replace'; valid choices: \['read_modify_write', 'merge'\]",
        ),
        (
            {"extra": {"auth_scheme": "bearer"}},
            r"extra 'auth_scheme' is 'bearer'; valid choices: \['', 'Bearer'\]",
        ),
        ({"extra": {"timeout_seconds": "soon"}}, "extra 'timeout_seconds' must be a number, got 'soon'"),
        ({"extra": {"max_connections": 2.5}}, "extra 'max_connections' must be a whole number, got 2.5"),
        ({"extra": {"max_connections": True}}, "extra 'max_connections' must be a whole number, got True"),
        (
            {"extra": {"max_connections": 0}},
            "connection 'passkit_default': max_connections must be >= 1, got 0",
        ),
        ({"extra": {"metadata_key": ""}}, "extra 'metadata_key' must be a non-empty string"),
        ({"extra": {"rate_limit_per_second": -1}}, "extra 'rate_limit_per_second' must be > 0, got -1.0"),
    ],
)
def test_bad_connection_names_the_value_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], message: str
) -> None:
    _set_connection(monkeypatch, **fields)

    with pytest.raises(PassKitConfigError, match=message):
        PassKitHook().get_settings()


def test_unknown_extra_is_reported_not_silently_ignored(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_connection(monkeypatch, extra={"timout_seconds": 3})

    settings = PassKitHook().get_settings()

    # Airflow's task SDK logs through structlog to stdout, not through the logging module.
    logged = capsys.readouterr().out
    assert settings.timeout_seconds == 10.0
    assert "ignoring unknown extras ['timout_seconds']" in logged
    assert "'timeout_seconds'" in logged


def test_named_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, name="PASSKIT_EU", host="https://api.pub1.passkit.io", login="eu-key")

    assert PassKitHook(passkit_conn_id="passkit_eu").get_settings().api_key == "eu-key"


def test_get_client_returns_an_unopened_client_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch)
    hook = PassKitHook()

    async def limiter() -> None:
        return None

    client = hook.get_client(before_request=limiter)

    assert isinstance(client, PassKitClient)
    assert client.settings is hook.get_settings()


def test_secret_is_registered_with_the_masker() -> None:
    # Built directly (not looked up), so only the hook's own mask_secret call can mask it.
    secret = "never-in-logs-7c1f2e9a0b3d"
    conn = Connection(
        conn_id="passkit_direct", conn_type="http", host="h.example", login="k", password=secret
    )
    assert secret in str(redact(f"token signed with {secret}"))

    PassKitHook(passkit_conn_id="passkit_direct")._load(conn)

    assert secret not in str(redact(f"token signed with {secret}"))


def test_secret_from_env_connection_never_in_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch)

    settings = PassKitHook().get_settings()

    assert SECRET not in repr(settings)
    assert SECRET not in str(redact(f"x {SECRET} y"))


def test_async_settings_lookup_for_code_inside_an_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_connection(monkeypatch, host="http://127.0.0.1:8765", extra={"metadata_update": "merge"})
    hook = PassKitHook()

    settings = asyncio.run(hook.aget_settings())

    assert (settings.base_url, settings.metadata_update) == ("http://127.0.0.1:8765", "merge")
    assert hook.get_settings() is settings  # resolved once
