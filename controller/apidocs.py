"""What the API's OpenAPI schema says about answers that its route signatures do not show:
the error body every 4xx/5xx carries, which statuses each route can answer, and the event
streams of turns, so that the schema matches what is sent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path
from pydantic import BaseModel, Field

from controller.streaming import StreamEvent

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

Responses = dict[int | str, dict[str, Any]]
ThreadRef = Annotated[str, Path(description="The thread's id, or the name of one of the caller's threads.")]


class ErrorOut(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="One plain sentence: what was wrong, and what to do about it.")


WHY: dict[int, str] = {
    400: "Malformed JSON, an unsafe file name (traversal, control characters, reserved), or an unknown profile.",
    401: "No token, or a wrong or revoked one.",
    403: "A user token creating a thread for another user, or asking for another user's or a workspace's usage.",
    404: "No such thread (or one the caller may not see), or no such file.",
    409: "The name is both the id of one thread and the name of another of the caller's "
    "(use the id), an upload collides with a stored or live file or folder, a fork's name "
    "is taken, or the thread's profile is no longer defined (upgrade) or stored.",
    413: "Over a size limit or quota; a body over the route's limit is refused unread.",
    422: "The request does not match the schema.",
    502: "Stored, but the live sandbox did not take it (it has it from its next start).",
    503: "Storage is unavailable; nothing was changed.",
}

# Statuses every route under /threads can answer: the token gate, the body limit, the schema
# check and storage; and, naming a thread, none or two found.
COMMON = (401, 413, 422, 503)
NAMING_A_THREAD = (404, 409)
ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
NEXT_PAGE: dict[str, Any] = {
    "description": "A page of threads.",
    "headers": {
        "Link": {
            "description": 'The next page, `</threads?limit=N&cursor=ID>; rel="next"`; absent on the last.',
            "schema": {"type": "string"},
        }
    },
}
FILE_BODY: dict[str, Any] = {
    "description": "The file's bytes, as an attachment.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def errors(*codes: int) -> Responses:
    """A route's own error answers (document() adds the ones all thread routes share)."""
    return {code: {"model": ErrorOut, "description": WHY[code]} for code in codes}


def streams(*codes: int) -> Responses:
    """A turn route's answers: its events as NDJSON (the default) or as SSE, and ``codes``."""
    item = {"$ref": "#/components/schemas/StreamEvent"}
    sse_item = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "description": "The event's type."},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": item},
        },
    }
    stream = {
        "description": "The turn's events, one StreamEvent per line; with `Accept: text/event-stream`, "
        "server-sent events named by their type. After 15 s without an event, a keepalive: a "
        "`keepalive` line, or an SSE comment.",
        "content": {NDJSON: {"itemSchema": item}, SSE: {"itemSchema": sse_item}},
    }
    return {200: stream, **errors(*codes)}


def document(app: FastAPI) -> None:
    """Complete ``app``'s schema: the errors every thread route shares, each with ErrorOut as
    it is sent (not FastAPI's validation error), and StreamEvent, which streams refer to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        return app.openapi_schema or _with_errors(_with_stream_events(build()))

    app.openapi = openapi  # type: ignore[method-assign]


def _with_errors(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        shared = (*COMMON, *NAMING_A_THREAD) if "{thread_id}" in path else COMMON
        for operation in operations.values() if path.startswith(("/threads", "/usage", "/profiles")) else ():
            answers = operation.setdefault("responses", {})
            for code in shared:
                answers.setdefault(str(code), {"description": WHY[code]})
            for code, answer in answers.items():
                if code.startswith(("4", "5")):
                    answer["content"] = {"application/json": {"schema": ERROR_REF}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorOut"] = ErrorOut.model_json_schema()
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def _with_stream_events(schema: dict[str, Any]) -> dict[str, Any]:
    found = StreamEvent.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(found.pop("$defs", {}))
    components["StreamEvent"] = found
    return schema
