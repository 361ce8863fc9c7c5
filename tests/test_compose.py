"""Checks of the production-like stack: docker-compose.yml is valid Compose and keeps the project's rules.

The Compose CLI validates the file against the Compose specification without a Docker engine
(`docker compose config` or Debian's `docker-compose config`); PyYAML checks what the spec cannot:
the required services, one shared image, separate databases, and no secret written in the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

COMPOSE_TIMEOUT_SECONDS = 60
INSTALL_HINT = (
    "Neither `docker compose` (Compose v2 plugin) nor `docker-compose` is available to validate "
    "docker-compose.yml; run `apt-get update && apt-get install -y docker-compose` (no Docker engine needed)."
)

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
LONG_RUNNING_AIRFLOW_SERVICES = AIRFLOW_SERVICES[1:]
PROJECT_IMAGE_SERVICES = (*AIRFLOW_SERVICES, "provider-sandbox", "webhook-receiver")
DATABASE_SERVICES = ("airflow-metadata-db", "warehouse")
REQUIRED_SERVICES = (*DATABASE_SERVICES, *PROJECT_IMAGE_SERVICES)
REQUIRED_CONNECTIONS = (
    "AIRFLOW_CONN_REACTIVATION_WAREHOUSE",
    "AIRFLOW_CONN_SENDGRID_DEFAULT",
    "AIRFLOW_CONN_SMS_DEFAULT",
)
PROJECT_MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./plugins": "/opt/airflow/plugins",
    "./dbt_project": "/opt/airflow/dbt_project",
    "./expectations": "/opt/airflow/expectations",
    "./config": "/opt/airflow/config",
}

# `$$` is Compose's escape for a literal `$` (e.g. `$${HOSTNAME}` is read inside the container), so it is
# removed before looking for the variables Compose itself interpolates.
VARIABLE_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)")
WHOLE_REFERENCE = re.compile(r"\$\{[A-Z0-9_]+(?::?[-?][^}]*)?\}")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]*)@")
SECRET_KEY = re.compile(r"(PASSWORD|SECRET|TOKEN|FERNET_KEY|API_KEY)$")


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(compose_text)
    assert isinstance(loaded, dict) and isinstance(loaded.get("services"), dict), (
        f"{COMPOSE_FILE} must be a mapping with a `services:` mapping"
    )
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _read_env_file(ENV_EXAMPLE)


def _read_env_file(path: Path) -> dict[str, str]:
    """NAME=value pairs of a dotenv file; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, separator, value = stripped.partition("=")
        assert separator, f"{path.name}:{line_number}: expected NAME=value, got {stripped!r}"
        values[name.strip()] = value.strip()
    return values


def _referenced_variables(text: str) -> set[str]:
    return set(VARIABLE_REFERENCE.findall(text.replace("$$", "")))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment:` as a dict, whether written as a mapping or as a NAME=value list."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return {name: value for name, _, value in (str(item).partition("=") for item in raw)}
    return {str(name): "" if value is None else str(value) for name, value in raw.items()}


def _strings(node: object) -> Iterator[str]:
    """Every string scalar (keys and values) in a loaded YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _compose_env() -> dict[str, str]:
    """A minimal environment, so variables of the calling shell cannot stand in for a missing .env entry."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "DOCKER_CONFIG", "DOCKER_HOST")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _compose_command() -> list[str]:
    """`docker compose` when the v2 plugin is installed, else Debian's `docker-compose`; fail if neither."""
    docker = shutil.which("docker")
    if docker is not None:
        try:
            probe = subprocess.run(
                [docker, "compose", "version"],
                capture_output=True,
                text=True,
                timeout=COMPOSE_TIMEOUT_SECONDS,
                check=False,
                env=_compose_env(),
            )
        except subprocess.TimeoutExpired:
            probe = None
        if probe is not None and probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    pytest.fail(INSTALL_HINT)


def _run_compose_config(project_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [*_compose_command(), "--project-name", "reactivation", "config", "--quiet"]
    try:
        return subprocess.run(
            command,
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_SECONDS,
            check=False,
            env=_compose_env(),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` did not finish within {COMPOSE_TIMEOUT_SECONDS}s")


def _project_copy(tmp_path: Path, env_text: str) -> Path:
    """docker-compose.yml next to a .env, in a scratch folder, so the real .env is neither read nor written."""
    shutil.copyfile(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(env_text, encoding="utf-8")
    return tmp_path


def test_compose_file_is_valid_with_env_example(tmp_path: Path) -> None:
    project_dir = _project_copy(tmp_path, ENV_EXAMPLE.read_text(encoding="utf-8"))

    result = _run_compose_config(project_dir)

    assert result.returncode == 0, (
        f"docker-compose.yml is not valid Compose with .env.example as .env:\n{result.stderr}{result.stdout}"
    )


def test_compose_refuses_to_start_without_a_required_secret(tmp_path: Path) -> None:
    env_without_password = "".join(
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
        if not line.startswith("WAREHOUSE_PASSWORD=")
    )
    project_dir = _project_copy(tmp_path, env_without_password)

    result = _run_compose_config(project_dir)

    assert result.returncode != 0, "Compose accepted a .env without WAREHOUSE_PASSWORD; use ${WAREHOUSE_PASSWORD:?...}"
    assert "set in .env" in result.stderr + result.stdout


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name in REQUIRED_SERVICES if name not in services]

    assert not missing, f"docker-compose.yml lacks services: {', '.join(missing)}"


def test_project_services_share_one_image_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    builds = {name: services[name].get("build") for name in PROJECT_IMAGE_SERVICES}
    images = {name: services[name].get("image") for name in PROJECT_IMAGE_SERVICES}

    assert all(build in (".", {"context": "."}) for build in builds.values()), f"expected `build: .`, got {builds}"
    assert len(set(images.values())) == 1, f"Airflow-side services use different images: {images}"
    assert (REPO_ROOT / "Dockerfile").is_file(), "docker-compose.yml builds `.` but the repo has no Dockerfile"


@pytest.mark.parametrize(
    ("service_name", "expected_command"),
    [
        ("airflow-apiserver", ["airflow", "api-server"]),
        ("airflow-scheduler", ["airflow", "scheduler"]),
        ("airflow-dag-processor", ["airflow", "dag-processor"]),
        ("airflow-triggerer", ["airflow", "triggerer"]),
        ("provider-sandbox", ["reactivation", "sandbox", "serve", "--host", "0.0.0.0", "--port", "8025"]),
        ("webhook-receiver", ["reactivation", "webhooks", "serve", "--host", "0.0.0.0", "--port", "8030"]),
    ],
)
def test_each_service_runs_an_explicit_command(
    services: dict[str, dict[str, Any]], service_name: str, expected_command: list[str]
) -> None:
    command = services[service_name].get("command")

    assert isinstance(command, list), f"{service_name}: the image has no ENTRYPOINT, give `command:` as a list"
    assert command[: len(expected_command)] == expected_command


@pytest.mark.parametrize(
    ("service_name", "port"), [("airflow-apiserver", 8080), ("provider-sandbox", 8025), ("webhook-receiver", 8030)]
)
def test_http_services_publish_their_port(services: dict[str, dict[str, Any]], service_name: str, port: int) -> None:
    ports = [str(mapping) for mapping in services[service_name].get("ports", [])]

    assert any(mapping.endswith(f":{port}") for mapping in ports), f"{service_name} does not publish {port}: {ports}"


def test_airflow_init_migrates_the_metadata_db_and_creates_the_admin(services: dict[str, dict[str, Any]]) -> None:
    init = services["airflow-init"]
    script = "\n".join(str(part) for part in init.get("command", []))

    assert "airflow db migrate" in script
    assert "AIRFLOW_ADMIN_PASSWORD" in script
    assert init["depends_on"]["airflow-metadata-db"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service_name", LONG_RUNNING_AIRFLOW_SERVICES)
def test_airflow_services_wait_for_init_and_healthy_databases(
    services: dict[str, dict[str, Any]], service_name: str
) -> None:
    depends_on = services[service_name]["depends_on"]

    assert depends_on["airflow-init"]["condition"] == "service_completed_successfully"
    assert depends_on["airflow-metadata-db"]["condition"] == "service_healthy"
    assert "healthcheck" in services[service_name]


def test_apiserver_healthcheck_uses_the_version_endpoint(services: dict[str, dict[str, Any]]) -> None:
    test_command = " ".join(services["airflow-apiserver"]["healthcheck"]["test"])

    assert "/api/v2/version" in test_command


@pytest.mark.parametrize("service_name", AIRFLOW_SERVICES)
def test_airflow_services_share_the_expected_configuration(
    services: dict[str, dict[str, Any]], service_name: str
) -> None:
    service = services[service_name]
    environment = _environment(service)
    env_files = service.get("env_file")
    env_files = [env_files] if isinstance(env_files, str) else list(env_files or [])
    mounts = dict(str(volume).split(":")[:2] for volume in service.get("volumes", []))

    assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert environment["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags"
    assert environment["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/airflow/plugins"
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "@airflow-metadata-db:" in environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert WHOLE_REFERENCE.fullmatch(environment["AIRFLOW__API_AUTH__JWT_SECRET"])
    assert environment["DO_NOT_TRACK"] == "1"
    assert ".env" in env_files, f"{service_name} must read its AIRFLOW_CONN_* connections through `env_file: .env`"
    assert {source: mounts.get(source) for source in PROJECT_MOUNTS} == PROJECT_MOUNTS


def test_metadata_db_and_warehouse_are_separate_databases(services: dict[str, dict[str, Any]]) -> None:
    metadata_db = services["airflow-metadata-db"]
    warehouse = services["warehouse"]
    data_volumes = {
        name: {str(volume).split(":")[0] for volume in services[name].get("volumes", [])} for name in DATABASE_SERVICES
    }
    metadata_env = _environment(metadata_db)
    warehouse_env = _environment(warehouse)

    for name in DATABASE_SERVICES:
        assert services[name]["image"].startswith("postgres:16"), f"{name} must run postgres:16"
        assert "pg_isready" in " ".join(services[name]["healthcheck"]["test"]), f"{name} needs a pg_isready healthcheck"
        assert data_volumes[name], f"{name} needs its own data volume"
    assert not data_volumes["airflow-metadata-db"] & data_volumes["warehouse"], (
        f"databases share volumes: {data_volumes}"
    )
    for setting in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert _referenced_variables(metadata_env[setting]).isdisjoint(_referenced_variables(warehouse_env[setting])), (
            f"metadata db and warehouse read {setting} from the same .env variable"
        )


def test_compose_file_holds_no_connection_or_secret(compose: dict[str, Any], compose_text: str) -> None:
    assert "AIRFLOW_CONN_" not in _without_comments(compose_text), "connections belong in .env, not docker-compose.yml"
    assert "change-me" not in _without_comments(compose_text), "placeholder secret written into docker-compose.yml"
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if SECRET_KEY.search(key):
                assert WHOLE_REFERENCE.fullmatch(value), f"{name}: {key} must be a ${{VAR}} reference to .env"
    for text in _strings(compose):
        for password in URL_PASSWORD.findall(text):
            assert WHOLE_REFERENCE.fullmatch(password), f"password written into a URL in docker-compose.yml: {text!r}"


def test_env_example_defines_every_variable_the_compose_file_reads(
    compose_text: str, env_example: dict[str, str]
) -> None:
    missing = sorted(_referenced_variables(compose_text) - env_example.keys())

    assert not missing, f".env.example lacks variables that docker-compose.yml reads: {', '.join(missing)}"


def test_env_example_holds_only_used_variables_and_placeholder_secrets(
    compose_text: str, env_example: dict[str, str]
) -> None:
    # REACTIVATION_* settings reach the services through `env_file: .env`, not through ${...}.
    service_settings = {name for name in env_example if name.startswith("REACTIVATION_") and "env_file" in compose_text}
    unused = sorted(
        set(env_example) - _referenced_variables(compose_text) - set(REQUIRED_CONNECTIONS) - service_settings
    )
    missing_connections = [name for name in REQUIRED_CONNECTIONS if name not in env_example]
    real_looking_passwords = {
        name: value for name, value in env_example.items() if name.endswith("PASSWORD") and value != "change-me"
    }

    assert not unused, f".env.example defines variables nothing reads: {', '.join(unused)}"
    assert not missing_connections, f".env.example lacks connections: {', '.join(missing_connections)}"
    assert not real_looking_passwords, (
        f"passwords in .env.example must be `change-me`: {sorted(real_looking_passwords)}"
    )


def test_env_example_has_a_comment_for_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    uncommented = [
        line.partition("=")[0]
        for index, line in enumerate(lines)
        if line and not line.startswith("#") and (index == 0 or not lines[index - 1].startswith("#"))
    ]

    assert not uncommented, f".env.example variables without a comment line above: {', '.join(uncommented)}"
