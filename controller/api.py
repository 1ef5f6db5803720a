"""The HTTP API (FastAPI). Every error is a 4xx/5xx with a plain ``detail`` sentence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from controller import threadops
from controller.agent.base import Turn
from controller.allow import install as install_allow
from controller.apidocs import (
    FILE_BODY,
    NDJSON,
    NEXT_PAGE,
    WHY,
    ErrorOut,
    ThreadRef,
    document,
    errors,
    streams,
)
from controller.auth import Authenticator, AuthGate, Caller
from controller.bodylimit import install as install_body_limit
from controller.console import router as console_router
from controller.events import Event
from controller.filenames import BadFilename, NameConflict, clean_filename
from controller.fork import ThreadExists, default_name, fork_record
from controller.httpmetrics import install as install_http_metrics
from controller.identity import ThreadKey
from controller.lookup import find_thread as _thread
from controller.lookup import list_page
from controller.nofollow import fd_path
from controller.profile_routes import add_profile_routes, check_profile
from controller.quotas import QuotaExceeded
from controller.runtime import Runtime
from controller.stores.base import NotInStore, StoredFile, StoreUnavailable
from controller.streaming import detached, ndjson, sse, with_keepalives
from controller.threads import ThreadRecord, delete_record, ensure_thread
from controller.uploads import NotInSandbox, Uploads
from controller.usage.routes import add_usage_routes


class ThreadCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="A name for the thread, unique per owner.")
    profile: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="The sandbox profile (`GET /profiles`); default: the server's default profile. "
        "The thread keeps the version it gets now until `POST /threads/{id}/upgrade`.",
    )
    user: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Owner (default: the caller). Only an admin may create a thread for another user.",
    )


class ThreadOut(ThreadRecord):
    live: bool


class FileOut(BaseModel):
    name: str
    size: int
    sha256: str
    modified: float


class ForkIn(BaseModel):
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The fork's name (default: the original's, with `-fork-` and a random suffix).",
    )


class ForkOut(ThreadOut):
    state: bool = Field(description="The fork has the original's variables: its first turn restores them.")
    note: str = Field(description="What the fork got, and what it did not and why, in one sentence.")


class StateForgotten(BaseModel):
    stopped: bool = Field(description="A running sandbox was stopped (its files saved, not its variables).")


class ExecuteIn(BaseModel):
    code: str = Field(description="Python source to run in the thread's kernel.")
    timeout: float | None = Field(
        default=None, gt=0, le=3600, description="Seconds; defaults to the server's."
    )


class MessageIn(BaseModel):
    text: str = Field(min_length=1, description="A chat message for the agent.")


def create_app(runtime: Runtime) -> FastAPI:
    """The API, web console and ops routes; its lifespan starts and closes the runtime."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="threadbox",
        summary="A Jupyter kernel sandbox per chat thread.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.auth = Authenticator(runtime.settings, runtime.store)
    _install_error_handlers(app)
    install_allow(app)
    document(app)
    install_body_limit(app, runtime.settings)
    app.add_middleware(AuthGate, auth=app.state.auth)  # before any body is read: a 401 first
    install_http_metrics(app, runtime.metrics)
    _add_ops_routes(app, runtime)
    _add_thread_routes(app, runtime)
    _add_file_routes(app, runtime)
    add_usage_routes(app, runtime)
    add_profile_routes(app, runtime)
    app.include_router(console_router())
    return app


def create_chat_app(runtime: Runtime) -> FastAPI:
    """Chat webhooks only (``runtime.chat_routers``), on a port of their own: it is the one
    that must be reachable from the internet, and it serves no thread data."""
    app = FastAPI(title="threadbox chat webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app)
    install_body_limit(app, runtime.settings)
    install_http_metrics(app, runtime.metrics)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in runtime.chat_routers:
        app.include_router(router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "The request body is not valid JSON."}, status_code=400)
        parts = ["/".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg")) for e in errors]
        return JSONResponse({"detail": "Invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"Storage is unavailable, nothing was changed: {exc}"}, status_code=503
        )


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _add_ops_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorOut, "description": WHY[503]}})
    async def readyz() -> dict[str, str]:
        await rt.check_storage()
        ready = {"status": "ready", "backend": rt.backend.name, "agent": rt.agent.name}
        ready["isolation"] = rt.backend.isolation
        if not rt.backend.isolated:
            ready["warning"] = "Sandboxes are not isolated: code in one thread can reach the others."
        return ready

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _stream(request: Request, events: AsyncIterator[Event]) -> StreamingResponse:
    use_sse = "text/event-stream" in request.headers.get("accept", "")
    encode, media = (sse, "text/event-stream") if use_sse else (ndjson, NDJSON)

    async def body() -> AsyncIterator[bytes]:
        async for event in with_keepalives(detached(events, request.app.state.runtime.manager.turns)):
            yield encode(event)

    return StreamingResponse(body(), media_type=media)


def _add_thread_routes(app: FastAPI, rt: Runtime) -> None:
    ops = threadops.ThreadOps.of(rt)

    def out(record: ThreadRecord) -> ThreadOut:
        return ThreadOut(**record.model_dump(), live=rt.manager.is_live(record.id))

    @app.get("/threads", tags=["threads"], responses={200: NEXT_PAGE})
    async def threads(
        who: Caller,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=200, description="Threads per page.")] = 100,
        cursor: Annotated[
            str | None, Query(max_length=64, description="Where to go on: the previous page's `Link`.")
        ] = None,
    ) -> list[ThreadOut]:
        """The threads the caller sees, in id order, a page at a time."""
        page = await list_page(rt, who, cursor, limit)
        if page.after:
            response.headers["Link"] = f'</threads?limit={limit}&cursor={page.after}>; rel="next"'
        return [out(r) for r in page.threads]

    @app.post("/threads", tags=["threads"], status_code=201, responses=errors(400, 403))
    async def create(body: ThreadCreate, who: Caller) -> ThreadOut:
        owner = body.user or who.user
        if owner != who.user and not who.admin:
            raise HTTPException(403, "Only an admin may create a thread for another user.")
        # The owner is part of the key, so two users' threads of the same name are distinct.
        key = ThreadKey("api", owner, "console", body.name)
        if body.profile is not None:
            check_profile(rt, body.profile)
        record = await _blocking(ensure_thread, rt.store, key, body.name, owner, body.profile)
        await _blocking(rt.profiles.of, record.id)  # pinned to the current version now
        return out(record)

    @app.get("/threads/{thread_id}", tags=["threads"])
    async def show(thread_id: ThreadRef, who: Caller) -> ThreadOut:
        return out(await _thread(rt, thread_id, who))

    @app.delete("/threads/{thread_id}", tags=["threads"], status_code=204)
    async def delete(thread_id: ThreadRef, who: Caller) -> Response:
        record = await _thread(rt, thread_id, who)
        await rt.manager.stop_thread(record.id)
        await _blocking(delete_record, rt.store, record)
        rt.recent_threads.forget(record.id)
        return Response(status_code=204)

    @app.delete("/threads/{thread_id}/state", tags=["threads"])
    async def forget_state(thread_id: ThreadRef, who: Caller) -> StateForgotten:
        """Forget the thread's kept variables: its next message starts a fresh kernel (files stay)."""
        record = await _thread(rt, thread_id, who)
        return StateForgotten(stopped=await threadops.forget_state(ops, record.id))

    @app.post("/threads/{thread_id}/fork", tags=["threads"], status_code=201, responses=errors(400, 409))
    async def fork(thread_id: ThreadRef, who: Caller, body: ForkIn | None = None) -> ForkOut:
        """A new thread of the same owner with a copy of this one's files and variables (a live
        sandbox saves both first); the original is untouched by the fork's turns."""
        source = await _thread(rt, thread_id, who)
        owner = source.user or who.user
        name = body.name if body and body.name else default_name(source.name)
        target = fork_record(source, ThreadKey("api", owner, "console", name), name, owner)
        try:
            forked = await threadops.fork_thread(ops, source, target)
        except ThreadExists as exc:
            raise HTTPException(409, f"Fork refused: {exc}.") from exc
        except QuotaExceeded as exc:
            raise HTTPException(413, f"Fork refused: {exc}.") from exc
        rt.recent_threads.remember(forked.record)
        return ForkOut(**out(forked.record).model_dump(), state=forked.state, note=forked.note)

    @app.post(
        "/threads/{thread_id}/execute",
        tags=["threads"],
        response_class=StreamingResponse,
        responses=streams(400),
    )
    async def execute(
        thread_id: ThreadRef, body: ExecuteIn, request: Request, who: Caller
    ) -> StreamingResponse:
        """Run code; its events stream as NDJSON, or as SSE with `Accept: text/event-stream`."""
        record = await _thread(rt, thread_id, who)
        size = len(body.code.encode())
        if size > rt.settings.max_code_bytes:
            raise HTTPException(
                413, f"The code is {size} bytes, over the {rt.settings.max_code_bytes} limit."
            )
        return _stream(request, rt.manager.run(record.id, body.code, record.user, body.timeout))

    @app.post(
        "/threads/{thread_id}/messages",
        tags=["threads"],
        response_class=StreamingResponse,
        responses=streams(400),
    )
    async def message(
        thread_id: ThreadRef, request: Request, body: Annotated[MessageIn, Body()], who: Caller
    ) -> StreamingResponse:
        """Give the agent a message; the turn's events stream as from `execute`."""
        record = await _thread(rt, thread_id, who)
        if len(body.text.encode()) > rt.settings.max_code_bytes:
            raise HTTPException(413, f"The message is over the {rt.settings.max_code_bytes}-byte limit.")
        return _stream(
            request, rt.manager.turn(record.id, rt.agent.respond(Turn(record.id, body.text, record.user)))
        )


def _add_file_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get("/threads/{thread_id}/files", tags=["files"])
    async def files(thread_id: ThreadRef, who: Caller) -> list[FileOut]:
        record = await _thread(rt, thread_id, who)
        stored: list[StoredFile] = await _blocking(rt.store.list_files, record.id)
        ttl = rt.settings.file_ttl_days
        return [FileOut(**vars(f)) for f in stored if not f.expired(ttl)]

    uploads = Uploads(rt.store, rt.manager, rt.quotas)

    @app.post(
        "/threads/{thread_id}/files",
        tags=["files"],
        status_code=201,
        responses=errors(400, 409, 502),
    )
    async def upload(
        thread_id: ThreadRef,
        who: Caller,
        file: Annotated[UploadFile, File(description="The file's bytes.")],
        name: Annotated[
            str | None, Form(description="Name in the workspace; defaults to the upload's.")
        ] = None,
    ) -> FileOut:
        record = await _thread(rt, thread_id, who)
        # The spooled body itself (bounded by controller/bodylimit.py), not a copy of it.
        spooled = fd_path(await _blocking(file.file.fileno))
        try:
            stored = await uploads.put(record, name or file.filename or "", spooled)
        except BadFilename as exc:
            raise HTTPException(400, f"Bad filename: {exc}.") from exc
        except NameConflict as exc:
            raise HTTPException(409, f"Upload refused: {exc}.") from exc
        except QuotaExceeded as exc:
            raise HTTPException(413, f"Upload refused: {exc}.") from exc
        except NotInSandbox as exc:
            raise HTTPException(502, f"{exc}.") from exc
        return FileOut(**vars(stored))

    @app.get(
        "/threads/{thread_id}/files/{name:path}",
        tags=["files"],
        response_class=Response,
        responses={200: FILE_BODY, **errors(400)},
    )
    async def download(thread_id: ThreadRef, name: str, who: Caller) -> Response:
        record = await _thread(rt, thread_id, who)
        try:
            clean = clean_filename(name)
            data = await _blocking(rt.store.read_file, record.id, clean)
        except BadFilename as exc:
            raise HTTPException(400, f"Bad filename: {exc}.") from exc
        except NotInStore as exc:
            raise HTTPException(404, f"No file {name!r} in this thread.") from exc
        disposition = f"attachment; filename*=UTF-8''{_quote(clean.rsplit('/', 1)[-1])}"
        return Response(
            data, media_type="application/octet-stream", headers={"Content-Disposition": disposition}
        )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
