"""Sandbox profiles: what a thread's sandbox is made of, named, versioned and pinned per thread.

A profile names the image, resources, runtime class, egress allowlist, warm pool size, idle
timeout, whether variables are kept, and what the LLM is told (libraries, system prompt).
Profiles come from ``THREADBOX_PROFILES_FILE`` (JSON; the chart renders it from its values);
a field a profile leaves out is the server's setting, so the implicit ``default`` profile is
exactly the server without profiles. A profile's version is a hash of what it resolves to.

A thread is pinned to one version of one profile from its first start (or its creation by
the API) until ``upgrade``: the pin is in the thread's storage and every pinned version's
content in the store's state, so a restarted controller whose file changed still starts an
old thread as it was.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from controller.config import Settings
from controller.extensions import check_modules
from controller.stores.base import ThreadStore
from controller.threads import ThreadRecord, get_thread

log = logging.getLogger(__name__)

DEFAULT = "default"
# A Kubernetes label value and a state-key slug at once.
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
PIN_KEY = "profile"  # the thread's JSON value naming its pinned profile and version
# Each profile field that the server also sets, and the setting it falls back to.
FROM_SETTINGS = {
    "image": "sandbox_image",
    "cpu_request": "sandbox_cpu_request",
    "cpu_limit": "sandbox_cpu_limit",
    "memory_request": "sandbox_memory_request",
    "memory_limit": "sandbox_memory_limit",
    "runtime_class_name": "runtime_class_name",
    "warm_pool_size": "warm_pool_size",
    "idle_timeout": "idle_timeout",
    "keep_state": "keep_state",
    "preimport": "warm_preimport",
}


class ProfileError(ValueError):
    """The profiles file, or a profile asked for, is not usable; the message says why."""


class UnknownProfile(ProfileError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"there is no profile {name!r}; the profiles are: {', '.join(known)}")
        self.name = name


class Profile(BaseModel):
    """A profile as it resolved: every field set. Its version names its content."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The profile's name.")
    image: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    runtime_class_name: str | None
    egress_allow_cidrs: tuple[str, ...] = Field(
        default=(),
        description="CIDRs its pods may reach besides the server-wide THREADBOX_EGRESS_ALLOW_CIDRS.",
    )
    warm_pool_size: int = Field(ge=0)
    idle_timeout: float = Field(ge=0)
    keep_state: bool
    libraries: tuple[str, ...] | None = Field(
        default=None, description="Libraries the LLM is told of; unset: the sandbox image's own list."
    )
    system_prompt: str | None = Field(
        default=None,
        description="Instructions to the LLM in place of the built-in ones ({tool}: the code tool).",
    )
    preimport: tuple[str, ...] = Field(
        default=(),
        description="Modules its warm pods' kernels import before a claim (THREADBOX_WARM_PREIMPORT).",
    )

    @property
    def version(self) -> str:
        # Left out while empty, so the versions of profiles from before the field stay the same.
        left_out = {"name"} if self.preimport else {"name", "preimport"}
        canonical = json.dumps(self.model_dump(mode="json", exclude=left_out), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def profile_changes(old: Profile | None, new: Profile) -> list[str]:
    """The fields in which two versions of a profile differ."""
    if old is None:
        return []
    before, after = old.model_dump(exclude={"name"}), new.model_dump(exclude={"name"})
    return sorted(field for field, value in after.items() if before[field] != value)


class ProfileSpec(BaseModel):
    """A profile as written in the file: what it leaves out is the server's setting."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    runtime_class_name: str | None = None
    egress_allow_cidrs: list[str] | None = None
    warm_pool_size: int | None = Field(default=None, ge=0)
    idle_timeout: float | None = Field(default=None, gt=0)
    keep_state: bool | None = None
    libraries: list[str] | None = None
    system_prompt: str | None = None
    preimport: list[str] | None = None

    @field_validator("preimport")
    @classmethod
    def _modules(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_modules(value)

    @field_validator("egress_allow_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for cidr in value or ():
            ipaddress.ip_network(cidr)
        return value

    def resolve(self, name: str, settings: Settings) -> Profile:
        fields = self.model_dump(exclude_none=True)
        for field, setting in FROM_SETTINGS.items():
            fields.setdefault(field, getattr(settings, setting))
        return Profile(name=name, **fields)


class ProfilesFile(BaseModel):
    """The file: profiles by name, the default one, and which chats get which profile."""

    model_config = ConfigDict(extra="forbid")

    default: str = DEFAULT
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    # "source", "source/workspace" or "source/workspace/channel" -> a profile name; the most
    # specific route of a chat wins (e.g. "slack/T0123/C0456": "analytics").
    routes: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_names(self) -> ProfilesFile:
        for name in self.profiles:
            if not NAME.match(name):
                raise ValueError(f"profile name {name!r}: use a-z, 0-9 and '-', at most 40 characters")
        known = sorted({DEFAULT, *self.profiles})
        for where, name in [("default", self.default), *(("route " + r, n) for r, n in self.routes.items())]:
            if name not in known:
                raise ValueError(f"{where}: {UnknownProfile(name, known)}")
        return self


class Profiles:
    """The profiles as they are now (current versions), and the routes of chats to them."""

    def __init__(self, current: dict[str, Profile], default: str, routes: dict[str, str]) -> None:
        self.current = current
        self.default = default
        self.routes = routes

    @classmethod
    def from_file(cls, spec: ProfilesFile, settings: Settings) -> Profiles:
        specs = {DEFAULT: ProfileSpec(), **spec.profiles}
        return cls({n: s.resolve(n, settings) for n, s in specs.items()}, spec.default, spec.routes)

    @property
    def names(self) -> list[str]:
        return sorted(self.current)

    def get(self, name: str) -> Profile:
        """The current version of the profile; UnknownProfile if there is none of that name."""
        profile = self.current.get(name)
        if profile is None:
            raise UnknownProfile(name, self.names)
        return profile

    def route(self, record: ThreadRecord) -> str:
        """The profile a chat's thread gets: its own (the API's choice), else the most specific
        route of its source, workspace and channel, else the default."""
        if record.profile is not None:
            return record.profile
        parts = (record.source, record.workspace, record.channel)
        for depth in (3, 2, 1):
            name = self.routes.get("/".join(parts[:depth]))
            if name is not None:
                return name
        return self.default


def load_profiles(settings: Settings) -> Profiles:
    """The profiles of ``THREADBOX_PROFILES_FILE`` (none set: the default profile only);
    ProfileError says what is wrong with the file."""
    path: Path | None = settings.profiles_file
    if path is None:
        return Profiles.from_file(ProfilesFile(), settings)
    try:
        raw: Any = json.loads(path.read_text())
        return Profiles.from_file(ProfilesFile.model_validate(raw), settings)
    except OSError as exc:
        raise ProfileError(f"cannot read the profiles file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ProfileError(f"the profiles file {path} is not JSON: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ProfileError(f"the profiles file {path} is invalid: {problems}") from exc


def _problem(error: ErrorDetails) -> str:
    where, what = "/".join(map(str, error["loc"])), error["msg"].removeprefix("Value error, ")
    return f"{where}: {what}" if where else what


class ProfileSource(Protocol):
    """Blocking, every method (store calls)."""

    def of(self, thread_id: str) -> Profile:
        """The profile version the thread's sandbox starts with."""
        ...

    def upgrade_target(self, record: ThreadRecord) -> tuple[Profile | None, Profile]:
        """The thread's pinned version (None: none, or no longer readable) and the current
        version of its profile; UnknownProfile if the profile is no longer defined."""
        ...

    def pin(self, thread_id: str, profile: Profile) -> Profile: ...

    def outdated(self, profile: Profile) -> bool:
        """The profile has a newer version than this one (or is no longer defined)."""
        ...


@dataclass(frozen=True)
class FixedProfile:
    """One profile for every thread, pinned nowhere: a manager built without a ProfileBook."""

    profile: Profile

    @classmethod
    def of_server(cls, idle_timeout: float, keep_state: bool) -> FixedProfile:
        """The default profile of the settings' defaults, with these two (the manager's own)."""
        settings = Settings.model_construct(idle_timeout=idle_timeout, keep_state=keep_state)
        return cls(ProfileSpec().resolve(DEFAULT, settings))

    def of(self, thread_id: str) -> Profile:
        return self.profile

    def upgrade_target(self, record: ThreadRecord) -> tuple[Profile | None, Profile]:
        return self.profile, self.profile

    def pin(self, thread_id: str, profile: Profile) -> Profile:
        return profile

    def outdated(self, profile: Profile) -> bool:
        return False


@dataclass(frozen=True)
class Pin:
    name: str
    version: str


def version_key(name: str, version: str) -> str:
    return f"profiles/{name}/{version}"


class ProfileBook:
    """Which profile version each thread runs, kept in the store. Blocking (store calls)."""

    def __init__(self, profiles: Profiles, store: ThreadStore) -> None:
        self.profiles = profiles
        self.store = store

    def pinned(self, thread_id: str) -> Pin | None:
        value = self.store.get_json(thread_id, PIN_KEY)
        return Pin(value["name"], value["version"]) if value else None

    def pin(self, thread_id: str, profile: Profile) -> Profile:
        """Pin the thread to this version; its content is stored first, so a pin never names
        a version nobody can read back."""
        self.store.put_state(version_key(profile.name, profile.version), profile.model_dump(mode="json"))
        self.store.put_json(thread_id, PIN_KEY, {"name": profile.name, "version": profile.version})
        return profile

    def of(self, thread_id: str) -> Profile:
        """The version the thread runs: its pin, or (its first start) the current version of
        its routed profile, pinned now. A thread with no record gets the default, unpinned."""
        pin = self.pinned(thread_id)
        if pin is not None:
            return self.version(pin)
        record = get_thread(self.store, thread_id)
        if record is None:
            return self.profiles.get(self.profiles.default)
        return self.pin(thread_id, self.profiles.get(self.profiles.route(record)))

    def upgrade_target(self, record: ThreadRecord) -> tuple[Profile | None, Profile]:
        pin = self.pinned(record.id)
        if pin is None:
            return None, self.profiles.get(self.profiles.route(record))
        try:
            old: Profile | None = self.version(pin)
        except ProfileError:  # lost: the upgrade is the way on
            old = None
        return old, self.profiles.get(pin.name)

    def outdated(self, profile: Profile) -> bool:
        current = self.profiles.current.get(profile.name)
        return current is None or current.version != profile.version

    def version(self, pin: Pin) -> Profile:
        current = self.profiles.current.get(pin.name)
        if current is not None and current.version == pin.version:
            return current
        stored = self.store.get_state(version_key(pin.name, pin.version))
        if stored is None:  # only if someone removed it from the store
            raise ProfileError(
                f"the thread's profile {pin.name}@{pin.version} is no longer stored; upgrade it to go on"
            )
        return Profile.model_validate(stored)
