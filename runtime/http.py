"""The request pipeline pieces: request ids, body and query parsing, rendering, error envelopes."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from typing import Any

import falcon
import marshmallow
import orjson
import psycopg
import redis
from psycopg_pool import PoolTimeout

from lib import errors, inputs
from lib.endpoint import Reply
from lib.jsonenc import dumps
from lib.log import request_id_var
from lib.metrics import RequestTally

MAX_BODY_BYTES = 64 * 1024
SLOW_REQUEST_SECONDS = 1.0
JSON_TYPE = "application/json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class _RequestIds:
    """UUID-shaped request ids (version 4 layout, as the contract says) from a random per-process
    head and a counter: uuid4() read the kernel's random source on every request, ~10% of a cheap
    request's time (bench/profile.py). Ids need to be unique, not unguessable; the head is drawn
    again in a forked child."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        h = secrets.token_hex(9)
        self._head = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:18]}"
        self._count = itertools.count(secrets.randbits(40))

    def __call__(self) -> str:
        n = next(self._count)  # one C call: atomic under the GIL
        return f"{self._head}{(n >> 48) & 0xF:x}-{n & 0xFFFFFFFFFFFF:012x}"


new_request_id = _RequestIds()

access_log = logging.getLogger("access")
log = logging.getLogger("runtime.http")

# Falcon's own errors (no route, wrong method, bad header...) rendered with our codes and messages.
_FALCON_ERRORS: dict[int, type[errors.ApiError]] = {
    e.status: e
    for e in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.Conflict,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.ValidationFailed,
        errors.RateLimited,
        errors.ServiceUnavailable,
    )
}


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestContext:
    """Falcon middleware: request id in; X-Request-Id, the request's metrics and an access log line
    out, for every response."""

    def __init__(self, surface: str) -> None:
        self.tally = RequestTally(surface)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-Id")
        rid = incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()
        req.context.request_id = rid
        req.context.started = time.perf_counter()
        req.context.rid_token = request_id_var.set(rid)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        rid = req.context.get("request_id") or new_request_id()
        resp.set_header("X-Request-Id", rid)
        started = req.context.get("started")
        if started is not None:
            duration = time.perf_counter() - started
            status = resp.status_code
            # Route templates only (a raw path would make a series per session id).
            method = req.method if req.method in _METHODS else "other"
            self.tally.add(req.uri_template or "unmatched", method, status, duration)
            # A line per request cost ~40% of /health's throughput (bench/run.py) and idle apps poll
            # every 5 s: errors and slow requests log at INFO, the rest only with LOG_LEVEL=DEBUG.
            level = logging.INFO if status >= 400 or duration >= SLOW_REQUEST_SECONDS else logging.DEBUG
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s %s",
                    req.method,
                    req.path,
                    status,
                    extra={
                        "method": req.method,
                        "path": req.path,
                        "status": status,
                        "duration_ms": round(duration * 1000, 2),
                    },
                )
        token = req.context.get("rid_token")
        if token is not None:
            request_id_var.reset(token)


def _is_chunked(req: falcon.Request) -> bool:
    return "chunked" in (req.get_header("Transfer-Encoding") or "").lower()


def read_raw(req: falcon.Request) -> bytes:
    """The request body, sized or chunked, at most 64 KiB (413 beyond)."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge(f"Request body exceeds {MAX_BODY_BYTES} bytes")
    if length is None and not _is_chunked(req):
        return b""  # HTTP/1.1: neither Content-Length nor chunked means no body
    if length == 0:
        return b""
    # bounded_stream trusts Content-Length and reads nothing without one; a chunked body is read
    # from the server's own input, which ends at the last chunk (wsgi.input_terminated).
    stream = req.bounded_stream if length is not None else req.stream
    parts: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        part: bytes = stream.read(MAX_BODY_BYTES + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge(f"Request body exceeds {MAX_BODY_BYTES} bytes")
    return b"".join(parts)


def read_json(req: falcon.Request) -> Any:
    """The request body as JSON, or None when there is no body. Enforces size, type and shape."""
    raw = read_raw(req)
    if not raw.strip():
        return None
    media = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media != JSON_TYPE and not (media.startswith("application/") and media.endswith("+json")):
        raise errors.UnsupportedMediaType()
    return inputs.parse_json(raw)


def load_body(req: falcon.Request, schema: marshmallow.Schema) -> Any:
    data = read_json(req)
    try:
        return schema.load({} if data is None else data)
    except marshmallow.ValidationError as exc:
        raise errors.ValidationFailed(_fields(exc.messages)) from exc


def load_query(req: falcon.Request, schema: marshmallow.Schema) -> Any:
    params = {k: (v[-1] if isinstance(v, list) else v) for k, v in req.params.items()}
    inputs.check_params(params)
    try:
        return schema.load(params)
    except marshmallow.ValidationError as exc:
        raise errors.ValidationFailed(_fields(exc.messages)) from exc


def _fields(messages: Any) -> dict[str, Any]:
    return messages if isinstance(messages, dict) else {"_schema": messages}


def _apply_cookies(resp: falcon.Response, cookies: list[dict[str, Any]]) -> None:
    for cookie in cookies:
        if cookie.get("unset"):
            resp.unset_cookie(cookie["name"], path=cookie.get("path"))
        else:
            resp.set_cookie(**cookie)


def render(resp: falcon.Response, result: Any, default_status: int) -> None:
    if isinstance(result, Reply):
        for name, value in result.headers.items():
            resp.set_header(name, value)
        _apply_cookies(resp, result.cookies)
        status, data = result.status, result.data
        if result.media_type is not None:
            resp.status = status
            resp.content_type = result.media_type
            resp.data = data.encode() if isinstance(data, str) else data
            return
        if status == 204 or (data is None and result.envelope):
            resp.status = 204 if data is None else status
            return
        resp.status = status
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"success": True, "data": data} if result.envelope else data)
        return
    if result is None:
        resp.status = 204
        return
    resp.status = default_status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps({"success": True, "data": result})


def render_error(resp: falcon.Response, error: errors.ApiError) -> None:
    resp.status = error.status
    resp.content_type = falcon.MEDIA_JSON
    for name, value in error.headers.items():
        resp.set_header(name, value)
    _apply_cookies(resp, error.cookies)
    try:
        resp.data = dumps(error.body())
    except orjson.JSONEncodeError:  # details that echo input no encoder can write: never a bare 500
        resp.data = dumps(inputs.scrub(error.body()))


def handle_api_error(req: falcon.Request, resp: falcon.Response, ex: errors.ApiError, params: dict[str, Any]) -> None:
    if ex.status >= 500:
        log.error("%s %s -> %s %s", req.method, req.path, ex.status, ex.code)
    render_error(resp, ex)


def handle_falcon_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict[str, Any]
) -> None:
    status = ex.status_code
    known = _FALCON_ERRORS.get(status, errors.BadRequest if status < 500 else errors.InternalError)
    error = errors.ApiError(
        known.message,
        code=known.code,
        details={"reason": ex.description} if ex.description and status < 500 else None,
    )
    error.status = status
    headers = dict(ex.headers or {})
    error.headers = {k: v for k, v in headers.items() if k.lower() in ("allow", "retry-after")}
    render_error(resp, error)


def handle_unavailable(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    log.error("%s %s -> 503: %s", req.method, req.path, type(ex).__name__)
    render_error(resp, errors.ServiceUnavailable(retry_after=2))


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    render_error(resp, errors.InternalError())


def install_error_handlers(app: falcon.App) -> None:  # type: ignore[type-arg]
    # Falcon picks the most specific handler by the exception's MRO.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_falcon_error)
    app.add_error_handler(errors.ApiError, handle_api_error)
    for exc_type in (PoolTimeout, psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError):
        app.add_error_handler(exc_type, handle_unavailable)
