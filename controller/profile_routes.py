"""The profile routes: the profiles there are, the version a thread runs, and its upgrade.

A thread is created with a profile by ``POST /threads`` (api.py, which checks the name here).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from controller import threadops
from controller.apidocs import ThreadRef
from controller.auth import Caller
from controller.lookup import find_thread
from controller.profiles import Profile, ProfileError, UnknownProfile
from controller.runtime import Runtime


class ProfileOut(BaseModel):
    version: str = Field(description="A hash of what the profile resolves to: it changes with any field.")
    profile: Profile


class ThreadProfileOut(ProfileOut):
    """The version the thread's sandbox runs, or starts with next."""

    current: str | None = Field(
        description="The profile's current version (the thread's after an upgrade); null: no longer defined."
    )


class UpgradeOut(BaseModel):
    profile: str
    old: str | None = Field(description="The version the thread was pinned to; null: none yet.")
    new: str = Field(description="The version it is pinned to now.")
    upgraded: bool = Field(description="False: it ran the current version already.")
    changed: list[str] = Field(description="The profile's fields that differ between the two versions.")
    stopped: bool = Field(description="A running sandbox was saved (files and variables) and stopped.")
    note: str = Field(description="What happened, in a sentence for the user.")


def _name_profiles(app: FastAPI, names: list[str]) -> None:
    """The schema of ``POST /threads`` lists this server's profiles: a name it does not list is
    refused (400), so a client reading the schema never sends one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        field = schema["components"]["schemas"]["ThreadCreate"]["properties"]["profile"]
        field["anyOf"][0]["enum"] = names
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def check_profile(rt: Runtime, name: str) -> None:
    """400 naming the known profiles, unless ``name`` is one."""
    try:
        rt.profiles.profiles.get(name)
    except UnknownProfile as exc:
        raise HTTPException(400, f"Unknown profile: {exc}.") from exc


def add_profile_routes(app: FastAPI, rt: Runtime) -> None:
    ops = threadops.ThreadOps.of(rt)
    _name_profiles(app, rt.profiles.profiles.names)

    @app.get("/profiles", tags=["profiles"])
    async def profiles(who: Caller) -> list[ProfileOut]:
        """The current version of every profile; `POST /threads` takes one by name."""
        return [
            ProfileOut(version=p.version, profile=p) for _, p in sorted(rt.profiles.profiles.current.items())
        ]

    @app.get("/threads/{thread_id}/profile", tags=["threads"])
    async def thread_profile(thread_id: ThreadRef, who: Caller) -> ThreadProfileOut:
        """The profile version the thread runs; it keeps it until `POST /threads/{id}/upgrade`."""
        record = await find_thread(rt, thread_id, who)
        try:
            pinned = await asyncio.to_thread(rt.profiles.of, record.id)
        except ProfileError as exc:
            raise HTTPException(409, f"{exc}.") from exc
        current = rt.profiles.profiles.current.get(pinned.name)
        now = current.version if current else None
        return ThreadProfileOut(version=pinned.version, profile=pinned, current=now)

    @app.post("/threads/{thread_id}/upgrade", tags=["threads"])
    async def upgrade(thread_id: ThreadRef, who: Caller) -> UpgradeOut:
        """Move the thread to its profile's current version: a running sandbox saves its files and
        variables and stops, and the next turn starts the new version with both (a variable that
        cannot be loaded there is named by that turn; the files are all there)."""
        record = await find_thread(rt, thread_id, who)
        try:
            done = await threadops.upgrade_thread(ops, record)
        except UnknownProfile as exc:
            raise HTTPException(409, f"Upgrade refused, the thread keeps its version: {exc}.") from exc
        return UpgradeOut(**dataclasses.asdict(done), upgraded=done.upgraded)
