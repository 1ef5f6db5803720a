import pytest
from pydantic import ValidationError

from controller.cli import main
from controller.config import Settings


def test_minio_store_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="THREADBOX_MINIO_ENDPOINT"):
        Settings(store="minio")


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADBOX_IDLE_TIMEOUT", "42")
    monkeypatch.setenv("THREADBOX_MAX_SANDBOXES", "3")
    s = Settings()
    assert (s.idle_timeout, s.max_sandboxes) == (42, 3)
    assert s.effective_reap_interval == 10.5


def test_unknown_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings(idle_timout=3)  # type: ignore[call-arg]


def test_cli_reports_bad_config_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("THREADBOX_STORE", "minio")
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err and "THREADBOX_MINIO_ENDPOINT" in err


def test_cli_rejects_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "--idle-timeout", "-5"]) == 2
    assert "idle_timeout" in capsys.readouterr().err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("dev", "serve", "run", "upload", "threads", "THREADBOX_"):
        assert command in out


def test_kubernetes_backend_needs_the_minio_store() -> None:
    with pytest.raises(ValidationError, match="backend=kubernetes needs store=minio"):
        Settings(backend="kubernetes")


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [
        f"THREADBOX_{n.upper()}" for n in Settings.model_fields if f"`THREADBOX_{n.upper()}`" not in readme
    ]
    assert missing == [], f"add these to the README's configuration table: {missing}"
