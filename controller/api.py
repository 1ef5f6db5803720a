"""The HTTP API (FastAPI). Every error is a 4xx/5xx with a plain ``detail`` sentence."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from controller.agent.base import Turn
from controller.events import Event
from controller.filenames import BadFilename, clean_filename
from controller.identity import ThreadKey, is_thread_id
from controller.quotas import QuotaExceeded, check_upload
from controller.runtime import Runtime
from controller.stores.base import NotInStore, StoredFile, StoreUnavailable
from controller.streaming import detached, ndjson, sse
from controller.threads import ThreadRecord, ensure_thread, get_thread, list_threads
from controller.workspace import sha256_file

NDJSON = "application/x-ndjson"
CHUNK = 1 << 20


class ThreadCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="A name for the thread, unique per source.")
    user: str | None = Field(default=None, max_length=200, description="Owner, for per-user quotas.")


class ThreadOut(ThreadRecord):
    live: bool


class FileOut(BaseModel):
    name: str
    size: int
    sha256: str
    modified: float


class ExecuteIn(BaseModel):
    code: str = Field(description="Python source to run in the thread's kernel.")
    timeout: float | None = Field(
        default=None, gt=0, le=3600, description="Seconds; defaults to the server's."
    )


class MessageIn(BaseModel):
    text: str = Field(min_length=1, description="A chat message for the agent.")


def create_app(runtime: Runtime) -> FastAPI:
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
    _install_error_handlers(app)
    _add_ops_routes(app, runtime)
    _add_thread_routes(app, runtime)
    _add_file_routes(app, runtime)
    for router in runtime.routers:
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

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> dict[str, str]:
        await _blocking(rt.store.check)
        return {"status": "ready", "backend": rt.backend.name, "agent": rt.agent.name}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# Records seen recently, used only to keep live sandboxes usable while storage is down.
_RECENT: dict[str, ThreadRecord] = {}
_RECENT_MAX = 10_000


async def _thread(rt: Runtime, thread_id: str) -> ThreadRecord:
    record: ThreadRecord | None = None
    if is_thread_id(thread_id):
        try:
            record = await _blocking(get_thread, rt.store, thread_id)
        except StoreUnavailable:
            if thread_id in _RECENT and rt.manager.is_live(thread_id):
                return _RECENT[thread_id]
            raise
    if record is not None:
        if len(_RECENT) >= _RECENT_MAX:
            _RECENT.pop(next(iter(_RECENT)))
        _RECENT[thread_id] = record
    if record is None:
        raise HTTPException(404, f"No thread {thread_id!r}. Create it with POST /threads first.")
    return record


def _stream(request: Request, events: AsyncIterator[Event]) -> StreamingResponse:
    use_sse = "text/event-stream" in request.headers.get("accept", "")
    encode, media = (sse, "text/event-stream") if use_sse else (ndjson, NDJSON)

    async def body() -> AsyncIterator[bytes]:
        async for event in detached(events):
            yield encode(event)

    return StreamingResponse(body(), media_type=media)


def _add_thread_routes(app: FastAPI, rt: Runtime) -> None:
    def out(record: ThreadRecord) -> ThreadOut:
        return ThreadOut(**record.model_dump(), live=rt.manager.is_live(record.id))

    @app.get("/threads", tags=["threads"])
    async def threads() -> list[ThreadOut]:
        return [out(r) for r in await _blocking(list_threads, rt.store)]

    @app.post("/threads", tags=["threads"], status_code=201)
    async def create(body: ThreadCreate) -> ThreadOut:
        key = ThreadKey("api", "local", "console", body.name)
        return out(await _blocking(ensure_thread, rt.store, key, body.name, body.user))

    @app.get("/threads/{thread_id}", tags=["threads"])
    async def show(thread_id: str) -> ThreadOut:
        return out(await _thread(rt, thread_id))

    @app.delete("/threads/{thread_id}", tags=["threads"], status_code=204)
    async def delete(thread_id: str) -> Response:
        await _thread(rt, thread_id)
        await rt.manager.stop_thread(thread_id)
        await _blocking(rt.store.delete_thread, thread_id)
        return Response(status_code=204)

    @app.post(
        "/threads/{thread_id}/execute",
        tags=["threads"],
        responses={200: {"description": "A stream of events, NDJSON or SSE (Accept: text/event-stream)."}},
    )
    async def execute(thread_id: str, body: ExecuteIn, request: Request) -> StreamingResponse:
        record = await _thread(rt, thread_id)
        size = len(body.code.encode())
        if size > rt.settings.max_code_bytes:
            raise HTTPException(
                413, f"The code is {size} bytes, over the {rt.settings.max_code_bytes} limit."
            )
        return _stream(request, rt.manager.run(thread_id, body.code, record.user, body.timeout))

    @app.post("/threads/{thread_id}/messages", tags=["threads"])
    async def message(
        thread_id: str, request: Request, body: Annotated[MessageIn, Body()]
    ) -> StreamingResponse:
        record = await _thread(rt, thread_id)
        if len(body.text.encode()) > rt.settings.max_code_bytes:
            raise HTTPException(413, f"The message is over the {rt.settings.max_code_bytes}-byte limit.")
        return _stream(request, rt.agent.respond(Turn(thread_id, body.text, record.user)))


def _add_file_routes(app: FastAPI, rt: Runtime) -> None:
    @app.get("/threads/{thread_id}/files", tags=["files"])
    async def files(thread_id: str) -> list[FileOut]:
        await _thread(rt, thread_id)
        stored: list[StoredFile] = await _blocking(rt.store.list_files, thread_id)
        ttl = rt.settings.file_ttl_days
        return [FileOut(**vars(f)) for f in stored if not f.expired(ttl)]

    @app.post("/threads/{thread_id}/files", tags=["files"], status_code=201)
    async def upload(
        thread_id: str,
        file: Annotated[UploadFile, File(description="The file's bytes.")],
        name: Annotated[
            str | None, Form(description="Name in the workspace; defaults to the upload's.")
        ] = None,
    ) -> FileOut:
        record = await _thread(rt, thread_id)
        try:
            clean = clean_filename(name or file.filename or "")
        except BadFilename as exc:
            raise HTTPException(400, f"Bad filename: {exc}.") from exc
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            size = await _receive(file, path, rt.settings.max_file_bytes, clean)
            try:
                await _blocking(check_upload, rt.store, rt.quotas, thread_id, record.user, clean, size)
            except QuotaExceeded as exc:
                raise HTTPException(413, f"Upload refused: {exc}.") from exc
            stored: StoredFile = await _blocking(rt.store.put_file, thread_id, clean, path, sha256_file(path))
            await rt.manager.write_file(thread_id, clean, path.read_bytes())
        return FileOut(**vars(stored))

    @app.get("/threads/{thread_id}/files/{name:path}", tags=["files"], response_class=Response)
    async def download(thread_id: str, name: str) -> Response:
        await _thread(rt, thread_id)
        try:
            clean = clean_filename(name)
            data = await _blocking(rt.store.read_file, thread_id, clean)
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


async def _receive(file: UploadFile, dest: Path, limit: int, name: str) -> int:
    size = 0
    with dest.open("wb") as fh:
        while chunk := await file.read(CHUNK):
            size += len(chunk)
            if limit and size > limit:
                raise HTTPException(413, f"{name} is over the {limit / 2**20:.1f} MiB limit for one file.")
            fh.write(chunk)
    return size
