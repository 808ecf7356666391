"""Settings: defaults, overridden by GOLDGATE_* environment variables, overridden by explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from goldgate.settings import Settings, load_settings

_ENV_VARS = ("GOLDGATE_WORKSPACE", "GOLDGATE_ENV", "GOLDGATE_ENGINE", "GOLDGATE_TRACKING_URI", "GOLDGATE_OWNER")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see neither the calling shell's GOLDGATE_* variables nor a developer's ``.env`` file."""
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_environment() -> None:
    settings = load_settings()
    assert settings.env == "dev"
    assert settings.workspace == Path("workspace")
    assert settings.engine == "duckdb"
    assert settings.tracking_uri is None


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOLDGATE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("GOLDGATE_ENV", "prod")
    settings = load_settings()
    assert settings.workspace == tmp_path / "ws"
    assert settings.env == "prod"


def test_dotenv_file_is_read_and_environment_wins_over_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GOLDGATE_ENV=staging\nGOLDGATE_WORKSPACE=from_dotenv\n")  # pragma: allowlist secret
    assert load_settings().env == "staging"
    assert load_settings().workspace == Path("from_dotenv")
    monkeypatch.setenv("GOLDGATE_ENV", "prod")
    assert load_settings().env == "prod"
    assert load_settings(env="dev").env == "dev"


def test_invalid_environment_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDGATE_ENV", "qa")
    with pytest.raises(ValidationError, match="env"):
        load_settings()


def test_overrides_win_over_environment_and_str_becomes_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOLDGATE_WORKSPACE", str(tmp_path / "from_env"))
    monkeypatch.setenv("GOLDGATE_ENV", "prod")
    settings = load_settings(workspace=str(tmp_path / "from_flag"), env="staging")
    assert isinstance(settings.workspace, Path)
    assert settings.workspace == tmp_path / "from_flag"
    assert settings.env == "staging"


def test_none_overrides_keep_the_environment_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOLDGATE_WORKSPACE", str(tmp_path / "from_env"))
    base = load_settings()
    assert base.with_overrides(workspace=None, env=None) is base
    assert load_settings(workspace=None).workspace == tmp_path / "from_env"


def test_override_is_validated() -> None:
    with pytest.raises(ValidationError):
        load_settings(engine="oracle")


def test_tracking_uri_defaults_to_sqlite_under_the_workspace(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path / "ws")
    expected = f"sqlite:///{(tmp_path / 'ws').resolve() / 'mlflow.db'}"
    assert settings.resolved_tracking_uri == expected


def test_explicit_tracking_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDGATE_TRACKING_URI", "http://mlflow.internal:5000")
    assert load_settings().resolved_tracking_uri == "http://mlflow.internal:5000"


def test_folders_are_absolute_and_under_the_workspace(tmp_path: Path) -> None:
    settings = load_settings(workspace="rel/ws")
    root = (tmp_path / "rel" / "ws").resolve()
    assert settings.workspace_dir == root
    assert settings.lake_dir == root / "lake"
    assert settings.artifacts_dir == root / "mlartifacts"
    assert settings.reports_dir == root / "reports"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.env = "prod"  # type: ignore[misc]
