"""docker-compose.yaml, Dockerfile and .env.example, checked without Docker (no engine runs here).

The compose file parses, follows Airflow's CeleryExecutor layout, validates against the Compose
Specification's JSON schema (vendored from PyPI, see compose_schema/README.md) once its ``${VAR}``
are interpolated from .env.example, documents every variable it uses (and nothing else), refers
only to files that exist, and runs only commands that exist: Airflow's and passpush's are parsed
by their own command-line parsers; the rest are named with the image that provides them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from passpush.paths import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
SCHEMA = Path(__file__).parent / "compose_schema" / "compose_spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer", "airflow-init"}
DEMO_SERVICES = {"passkit-emulator", "demo-seed"}
# Programs the containers run that come with their images, not with this repository.
FROM_IMAGES = {"/entrypoint": "apache/airflow", "curl": "apache/airflow", "pg_isready": "postgres",
               "redis-cli": "redis", "/bin/bash": "apache/airflow", "set": "bash (builtin)"}
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


# ---- helpers ------------------------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    """KEY=value lines of .env.example (comments and blank lines skipped)."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=value: {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, and $$ for $."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and not value:
            raise ValueError(f"required variable {name} is missing: {arg}")
        return value or ""

    return VARIABLE.sub(one, value)


def interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def filled_env() -> dict[str, str]:
    """.env.example with its required (empty) values filled, as a user's .env would be."""
    return {key: value or f"test-{key.lower()}" for key, value in env_example().items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def rendered(compose: dict[str, Any]) -> dict[str, Any]:
    return interpolated(compose, filled_env())


def commands(service: dict[str, Any]) -> Iterator[list[str]]:
    """Every command line a service runs: entrypoint + command, and healthchecks."""
    entrypoint = service.get("entrypoint")
    command = service.get("command")
    words = (shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint or []))
    if entrypoint is None:
        words = ["airflow"] if "AIRFLOW__CORE__EXECUTOR" in (service.get("environment") or {}) else []
    words += shlex.split(command) if isinstance(command, str) else list(command or [])
    if words[:2] == ["/bin/bash", "-c"]:
        for line in filter(str.strip, words[2].splitlines()):
            line_words = shlex.split(line)
            yield line_words[1:] if line_words[0] == "exec" else line_words
    elif words:
        yield words
    test = (service.get("healthcheck") or {}).get("test") or []
    if test[:1] == ["CMD"]:
        yield test[1:]
    elif test[:1] == ["CMD-SHELL"]:
        yield shlex.split(test[1])


# ---- the file ------------------------------------------------------------------------------------------


def test_layout_is_airflows_celery_layout(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == AIRFLOW_SERVICES | DEMO_SERVICES | {"postgres", "redis"}
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "build" in services[name] and "image" in services[name], f"{name} runs the passpush image"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        assert service.get("profiles") == (["demo"] if name in DEMO_SERVICES else None), name


def test_every_airflow_service_shares_the_upload_folder(compose: dict[str, Any]) -> None:
    """The page saves a CSV on the api-server and a worker reads it: each had its own folder (count 2,
    then "csv_path does not exist" at resolve)."""
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        folder = services[name]["environment"]["PASSPUSH_UPLOAD_DIR"]
        assert f"passpush-uploads:{folder}" in services[name]["volumes"], name
    assert "passpush-uploads" in compose["volumes"]
    assert "mkdir -p /opt/airflow/uploads" in DOCKERFILE.read_text()  # owned by airflow, not root


def test_validates_against_the_compose_specification(rendered: dict[str, Any]) -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, "vendored schema was modified"
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(rendered)]
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_mistakes(rendered: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(rendered))
    broken["services"]["airflow-worker"]["depends_on"]["redis"] = {"condition": "service_happy"}
    broken["services"]["redis"]["healthchek"] = {}
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_variable_is_documented_in_env_example_and_nothing_else() -> None:
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text()) if m.group(1)}
    documented = set(env_example())
    assert used - documented == set(), f"used in docker-compose.yaml, missing from .env.example: {used - documented}"
    assert documented - used == set(), f"in .env.example but not used: {documented - used}"


def test_required_variables_are_empty_in_the_example_and_refused_when_missing(compose: dict[str, Any]) -> None:
    required = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text()) if m.group(2) in (":?", "?")}
    assert required and all(env_example()[name] == "" for name in required), "no secret has a default"
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolated(compose, {k: v for k, v in filled_env().items() if k != "POSTGRES_PASSWORD"})


# ---- files ---------------------------------------------------------------------------------------------


def dockerfile_copies() -> list[str]:
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_referenced_files_exist(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        build = service.get("build")
        if build:
            context = PROJECT_ROOT / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).exists(), f"{name}: bind mount {source}"
            else:
                assert source in rendered["volumes"], f"{name}: volume {source} is not declared"
    copies = dockerfile_copies()
    assert copies, "the Dockerfile copies nothing"
    for source in copies:
        assert (PROJECT_ROOT / source).exists(), f"Dockerfile COPY {source}"
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & set(copies), "the Dockerfile copies what .dockerignore leaves out"


def test_dockerfile_matches_the_project_pins() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    airflow = re.search(r'"apache-airflow==([\d.]+)"', pyproject)
    assert airflow and f"ARG AIRFLOW_VERSION={airflow.group(1)}" in text
    assert f"ARG AIRFLOW_IMAGE=apache/airflow:{airflow.group(1)}-python3.11" in text
    assert 'requires-python = ">=3.11,<3.12"' in pyproject
    assert env_example()["AIRFLOW_IMAGE"] == f"apache/airflow:{airflow.group(1)}-python3.11"


# ---- commands ------------------------------------------------------------------------------------------


def all_commands(rendered: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(name, words) for name, service in rendered["services"].items() for words in commands(service)]


def test_programs_come_from_the_project_or_a_named_image(rendered: dict[str, Any]) -> None:
    ours = {"airflow", "python", "celery", "passpush"}
    for name, words in all_commands(rendered):
        program = words[0]
        assert program in ours or program in FROM_IMAGES, f"{name}: who provides {program!r}?"
        if program in ours:
            assert shutil.which(program, path=str(Path(sys.executable).parent)) or program == "python", program


_AIRFLOW_CHECK = """
import importlib, json, sys
from airflow.cli.cli_parser import get_parser
parser = get_parser()
failed = []
for argv in json.loads(sys.argv[1]):
    try:
        parser.parse_args(argv)
    except SystemExit:
        failed.append(argv)
module = importlib.import_module("airflow.providers.celery.executors.celery_executor")
print(json.dumps({"failed": failed, "celery_app": hasattr(module, "app")}))
"""


def test_airflow_and_celery_commands_exist(rendered: dict[str, Any]) -> None:
    airflow_argvs, celery_apps = [], set()
    for _, words in all_commands(rendered):
        if words[0] == "airflow":
            airflow_argvs.append(words[1:])
        elif words[0] == "/entrypoint":
            airflow_argvs.append(words[2:])  # /entrypoint airflow <command>
        elif words[0] == "celery":
            celery_apps.add(words[words.index("--app") + 1])
    assert {"api-server", "scheduler", "dag-processor", "triggerer"} <= {a[0] for a in airflow_argvs}
    assert celery_apps == {"airflow.providers.celery.executors.celery_executor.app"}
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}  # celery commands only exist then
    proc = subprocess.run([sys.executable, "-c", _AIRFLOW_CHECK, json.dumps(airflow_argvs)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"failed": [], "celery_app": True}, result


def test_passpush_commands_parse(rendered: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from passpush import cli
    from passpush.cluster.cli import parser as cluster_parser
    from passpush.emulator.server import build_parser, settings_from

    services = rendered["services"]
    (init_cmd,) = [w for w in commands(services["airflow-init"]) if w[:3] == ["python", "-m", "passpush.cluster"]]
    args = cluster_parser().parse_args(init_cmd[3:])
    assert args.command == "provision" and args.skip_airflow_migrate

    emulator = services["passkit-emulator"]
    (emulator_cmd, _health) = list(commands(emulator))
    assert emulator_cmd[:3] == ["python", "-m", "passpush.emulator"]
    settings = settings_from(build_parser().parse_args(emulator_cmd[3:]), emulator["environment"])
    assert settings.api_key == filled_env()["PASSKIT_API_KEY"]  # every PASSKIT_EMULATOR_* is a real setting

    seen: list[Any] = []
    monkeypatch.setattr(cli, "_seed", lambda a: seen.append(a) or 0)
    (seed_cmd,) = list(commands(services["demo-seed"]))
    assert seed_cmd[0] == "passpush" and cli.main(seed_cmd[1:]) == 0
    assert seen[0].members == int(filled_env()["DEMO_MEMBERS"]) and seen[0].emulator_url


def test_init_gives_provision_everything_it_needs(rendered: dict[str, Any]) -> None:
    env = rendered["services"]["airflow-init"]["environment"]
    assert env["PASSPUSH_DATABASE_URL"].endswith("@postgres:5432/" + filled_env()["LOYALTY_DB"])
    assert {"PASSKIT_API_KEY", "PASSKIT_API_SECRET", "PASSKIT_BASE_URL", "PASSKIT_RATE_LIMIT_PER_SECOND",
            "PASSPUSH_POOL_SLOTS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY"} <= set(env)


@pytest.mark.skipif(subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode
                    if shutil.which("docker") else True, reason="no docker compose plugin here")
def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:  # pragma: no cover - needs the plugin
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in filled_env().items()))
    proc = subprocess.run(["docker", "compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
