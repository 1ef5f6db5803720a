"""Configuration: environment variables ``THREADBOX_*``, overridable by CLI flags.

Every field here is listed in the README's configuration table; keep them in step.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from controller.chat.handoff_settings import HandoffSettings
from controller.discord.settings import DiscordSettings
from controller.k8s.placement import PlacementSettings
from controller.k8s.storage import MIN_CREDENTIAL_SECONDS
from controller.k8s.warm_settings import WarmPoolSettings
from controller.outputcap import DEFAULT_MAX_OUTPUT_BYTES
from controller.telegram.settings import TelegramSettings
from controller.usage.settings import UsageSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")

DEFAULT_HOME = Path.home() / ".local" / "share" / "threadbox"
# What each Slack mode needs; OAuth replaces the bot token by the app's credentials.
SLACK_NEEDS = {"http": ("bot_token", "signing_secret"), "socket": ("bot_token", "app_token")}
OAUTH_SETTINGS = ("client_id", "client_secret", "scopes", "redirect_uri")
OAUTH_NEEDS = ("client_id", "client_secret", "scopes", "signing_secret")


class Settings(
    PlacementSettings, WarmPoolSettings, UsageSettings, TelegramSettings, HandoffSettings, DiscordSettings
):
    model_config = SettingsConfigDict(env_prefix="THREADBOX_", extra="forbid")

    # Where things run and live.
    backend: Literal["local", "kubernetes"] = "local"
    store: Literal["local", "minio"] = "local"
    data_dir: Path = Field(default=DEFAULT_HOME, description="Local store and local sandbox workspaces.")
    sandbox_python: Path | None = Field(
        default=None, description="Python of the lean sandbox env; built from sandbox-image/ when unset."
    )

    # Local kernels' sandbox (backend=local; README "What each backend isolates").
    local_isolation: Literal["auto", "bwrap", "off"] = Field(
        default="auto",
        description="auto: bubblewrap when it runs here (else loopback-only, no Slack); bwrap: required; off: none.",
    )
    local_memory_limit: int = Field(default=2**30, ge=2**26, description="Bytes of memory per local sandbox.")
    local_max_processes: int = Field(
        default=256, ge=8, description="Processes (and threads) per local sandbox."
    )
    local_max_file_size: int = Field(
        default=2**30, ge=2**20, description="Largest file a local sandbox may write."
    )
    local_max_open_files: int = Field(
        default=1024, ge=64, description="Open files per local sandbox process."
    )
    local_tmp_size: int = Field(default=256 * 2**20, ge=2**20, description="Bytes of /tmp and /dev/shm each.")

    # HTTP API.
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)
    chat_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the chat webhooks (/slack/events), apart from the API; 0: the API port + 1.",
    )
    log_format: Literal["json", "text"] | None = None  # unset: json for `serve`, text for `dev`
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Authentication of the API and console (README "Authentication").
    admin_token: SecretStr | None = Field(
        default=None, description="A bootstrap admin API token (e.g. from a Kubernetes Secret)."
    )
    auth_proxy_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated CIDRs of trusted authenticating proxies."
    )
    auth_proxy_header: str = Field(
        default="X-Forwarded-User", min_length=1, description="Header naming the user, from a trusted proxy."
    )
    auth_proxy_admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated proxy users who are admins."
    )

    # Sandbox lifecycle.
    profiles_file: Path | None = None  # JSON sandbox profiles, README "Sandbox profiles"; unset: default only
    idle_timeout: float = Field(default=900.0, gt=0, description="Seconds without a turn before reaping.")
    reap_interval: float | None = Field(
        default=None, gt=0, description="Defaults to idle_timeout/4, max 30s."
    )
    max_sandboxes: int = Field(default=20, ge=1)
    start_timeout: float = Field(default=60.0, gt=0)

    # Execution.
    exec_timeout: float = Field(default=120.0, gt=0)
    interrupt_grace: float = Field(default=5.0, gt=0)
    max_code_bytes: int = Field(default=100_000, ge=1)
    max_output_bytes: int = Field(
        default=DEFAULT_MAX_OUTPUT_BYTES,
        ge=4096,
        description="Output (stdout, stderr, displays) one execution may stream; the rest is dropped after a note.",
    )

    # Files and quotas (0 means unlimited).
    max_file_bytes: int = Field(default=50 * 2**20, ge=0)
    thread_max_files: int = Field(default=200, ge=0)
    thread_max_bytes: int = Field(default=500 * 2**20, ge=0)
    user_max_files: int = Field(default=1000, ge=0)
    user_max_bytes: int = Field(default=2 * 2**30, ge=0)
    file_ttl_days: float = Field(default=0, ge=0, description="Files older than this are expired.")

    # Kernel variables kept across sandboxes (saved at teardown, loaded at the next start).
    keep_state: bool = Field(
        default=True, description="Save a stopping sandbox's variables; load them at the thread's next start."
    )
    state_max_bytes: int = Field(
        default=256 * 2**20,
        ge=0,
        description="Most bytes of saved variables per thread (within thread_max_bytes); above it none are kept.",
    )

    # MinIO (store=minio).
    minio_endpoint: str | None = None
    minio_access_key: str | None = None
    minio_secret_key: SecretStr | None = None
    minio_bucket: str = "threadbox"
    minio_secure: bool = False

    # Kubernetes (backend=kubernetes): a pod per thread, see docs/sandbox-pod-contract.md.
    kubeconfig: Path | None = Field(
        default=None, description="Unset: in-cluster config inside a pod, else the default kubeconfig."
    )
    sandbox_namespace: str = "threadbox"
    sandbox_image: str = "localhost/threadbox-sandbox:dev"
    sandbox_cpu_request: str = "250m"
    sandbox_cpu_limit: str = "1"
    sandbox_memory_request: str = "256Mi"
    sandbox_memory_limit: str = Field(
        default="2Gi",
        description="Counts the pod's tmpfs volumes too (/workspace, /tmp, HOME): keep it above their sizes.",
    )
    workspace_size_limit: str = Field(
        default="1Gi", description="Size of the pod's /workspace tmpfs: writes past it fail with ENOSPC."
    )
    sandbox_ephemeral_storage_limit: str = Field(
        default="256Mi", description="The sandbox container's ephemeral-storage limit (its logs)."
    )
    runtime_class_name: str | None = Field(
        default=None, description="e.g. gvisor or kata; unset: the default."
    )
    active_deadline_seconds: int = Field(
        default=43200,
        ge=MIN_CREDENTIAL_SECONDS,
        description="Backstop lifetime of a sandbox pod (and of its credentials).",
    )
    egress_allow_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated CIDRs sandboxes may reach besides DNS and MinIO."
    )
    controller_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs the controller connects to pods from, when it runs outside the cluster.",
    )
    sandbox_minio_endpoint: str | None = Field(
        default=None, description="host:port of MinIO as sandbox pods reach it; defaults to minio_endpoint."
    )
    sandbox_minio_peer: dict[str, Any] | None = Field(
        default=None,
        description="NetworkPolicy peer (JSON) selecting MinIO's pods when MinIO runs in the cluster; "
        "unset: the IP the MinIO host resolves to.",
    )

    # Agent: "auto" uses the built-in LLM loop when llm_base_url or llm_api_key is set, else direct-code mode.
    agent: Literal["auto", "direct", "builtin", "open-interpreter"] = "auto"
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://host/v1"
    )
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    agent_max_steps: int = Field(default=8, ge=1, description="Code executions per turn at most.")
    history_token_budget: int = Field(
        default=12_000, ge=500, description="Approximate tokens of history kept."
    )
    history_ttl_days: float = Field(
        default=30, ge=0, description="History older than this is dropped; 0 keeps it."
    )

    # Slack: "http" serves /slack/events on the chat port, "socket" connects out with an app token.
    slack_mode: Literal["off", "http", "socket"] = "off"
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_reply_mode: Literal["mention", "all"] = Field(
        default="all",
        description="In a thread the bot was mentioned in: answer every message, or mentions only.",
    )
    slack_api_url: str | None = Field(
        default=None, description="Slack Web API base URL (tests point it at a fake)."
    )
    slack_update_interval: float = Field(
        default=1.5, gt=0, description="Seconds between streamed message edits."
    )
    slack_streaming: bool = True  # chat.startStream/appendStream/stopStream; false: chat.update only
    # OAuth installation in many workspaces (slack_mode=http), instead of one bot token.
    slack_client_id: str | None = Field(default=None, description="OAuth: the Slack app's client id.")
    slack_client_secret: SecretStr | None = Field(default=None, description="OAuth: its client secret.")
    slack_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="OAuth: comma-separated bot scopes asked for at install."
    )
    slack_redirect_uri: str | None = Field(
        default=None, description="OAuth: the redirect URL; unset: the one set in the Slack app."
    )

    @field_validator("auth_proxy_admins", "slack_scopes", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return (
            [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        )

    @field_validator("egress_allow_cidrs", "controller_cidrs", "auth_proxy_cidrs", mode="before")
    @classmethod
    def _split_cidrs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for cidr in value:
            ipaddress.ip_network(cidr)  # a host address with a prefix (10.0.0.1/8) is refused as a typo
        return value

    @model_validator(mode="after")
    def _check_store(self) -> Settings:
        if self.backend == "kubernetes" and self.store != "minio":
            raise ValueError("backend=kubernetes needs store=minio: sandbox pods sync their files with MinIO")
        if self.store == "minio":
            missing = [
                f"THREADBOX_MINIO_{name.upper()}"
                for name in ("endpoint", "access_key", "secret_key")
                if getattr(self, f"minio_{name}") is None
            ]
            if missing:
                raise ValueError(f"store=minio needs {', '.join(missing)}")
        self._check_slack()
        if self.chat_port == 0:  # follows --port, so two dev servers on their own ports never collide
            self.chat_port = self.port + 1 if self.port < 65535 else self.port - 1
        if self.chat_port == self.port:
            raise ValueError(
                "THREADBOX_CHAT_PORT must differ from THREADBOX_PORT: chat webhooks have a port of their own"
            )
        if self.admin_token is not None and len(self.admin_token.get_secret_value()) < 16:
            raise ValueError("THREADBOX_ADMIN_TOKEN must be at least 16 characters")
        return self

    def _check_slack(self) -> None:
        if self.slack_mode == "off":
            return
        oauth = any(getattr(self, f"slack_{name}") for name in OAUTH_SETTINGS)
        if oauth and self.slack_bot_token is not None:
            raise ValueError(
                "set THREADBOX_SLACK_BOT_TOKEN (one workspace) or THREADBOX_SLACK_CLIENT_ID, "
                "THREADBOX_SLACK_CLIENT_SECRET and THREADBOX_SLACK_SCOPES (OAuth, many workspaces), not both"
            )
        if oauth and self.slack_mode != "http":
            raise ValueError(
                "OAuth installation (THREADBOX_SLACK_CLIENT_ID) needs THREADBOX_SLACK_MODE=http: "
                "installers come back to /slack/oauth_redirect on the chat port"
            )
        needs = OAUTH_NEEDS if oauth else SLACK_NEEDS[self.slack_mode]
        missing = [f"THREADBOX_SLACK_{name.upper()}" for name in needs if not getattr(self, f"slack_{name}")]
        if missing:
            how = " with OAuth" if oauth else ""
            raise ValueError(f"slack_mode={self.slack_mode}{how} needs {', '.join(missing)}")

    @property
    def effective_reap_interval(self) -> float:
        return self.reap_interval or min(30.0, self.idle_timeout / 4)


def subset(config: type[C], settings: Settings, **renamed: str) -> C:
    """A component's small config: each of its dataclass fields from the setting of the same
    name (or the one ``renamed`` names), so a component never holds the whole Settings."""
    names = {f.name: renamed.get(f.name, f.name) for f in dataclasses.fields(config)}
    return config(**{field: getattr(settings, name) for field, name in names.items()})
