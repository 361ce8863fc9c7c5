"""Settings: env vars and Airflow connections, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reactivation.settings import Settings, SettingsError, redact_url

SECRET = "s3cr3t-Pa55"


def test_warehouse_url_from_env(monkeypatch) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", f"postgresql://loader:{SECRET}@db.example:5433/warehouse")
    settings = Settings()
    assert settings.resolved_warehouse_url() == f"postgresql://loader:{SECRET}@db.example:5433/warehouse"
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


def test_warehouse_url_from_airflow_connection_uri(monkeypatch) -> None:
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_REACTIVATION_WAREHOUSE", f"postgres://loader:{SECRET}@db:5432/wh")
    assert Settings().resolved_warehouse_url() == f"postgresql://loader:{SECRET}@db:5432/wh"


def test_warehouse_url_from_airflow_connection_json(monkeypatch) -> None:
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    conn = {
        "conn_type": "postgres",
        "login": "loader",
        "password": "p@ss/word",
        "host": "db",
        "port": 5432,
        "schema": "wh",
    }
    monkeypatch.setenv("AIRFLOW_CONN_REACTIVATION_WAREHOUSE", json.dumps(conn))
    assert Settings().resolved_warehouse_url() == "postgresql://loader:p%40ss%2Fword@db:5432/wh"


def test_env_var_wins_over_connection(monkeypatch) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://a@one/x")
    monkeypatch.setenv("AIRFLOW_CONN_REACTIVATION_WAREHOUSE", "postgres://b@two/y")
    assert Settings().resolved_warehouse_url() == "postgresql://a@one/x"


def test_no_warehouse_configured_means_embedded(monkeypatch) -> None:
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_REACTIVATION_WAREHOUSE", raising=False)
    assert Settings().resolved_warehouse_url() is None


def test_bad_connection_error_names_the_setting_not_the_secret(monkeypatch) -> None:
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_REACTIVATION_WAREHOUSE", f"mysql://root:{SECRET}@db/x")
    with pytest.raises(SettingsError) as err:
        Settings().resolved_warehouse_url()
    assert "AIRFLOW_CONN_REACTIVATION_WAREHOUSE" in str(err.value)
    assert SECRET not in str(err.value)


def test_typed_values_are_checked(monkeypatch) -> None:
    monkeypatch.setenv("REACTIVATION_DBT_THREADS", "zero")
    with pytest.raises(ValueError):
        Settings()


def test_redact_url() -> None:
    assert redact_url(f"postgresql://u:{SECRET}@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_unreachable_warehouse_error_is_redacted(monkeypatch, capsys) -> None:
    from reactivation.cli import main

    monkeypatch.setenv("WAREHOUSE_URL", f"postgresql://u:{SECRET}@127.0.0.1:1/d")
    code = main(["load", "--format", "csv", "--location", "x", "tests/fixtures/synthea_csv_nebraska"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot connect to the warehouse" in err and "***" in err
    assert SECRET not in err


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in readme, f"{name.upper()} is not documented in the README's settings table"
