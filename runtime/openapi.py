"""The OpenAPI description of each listener, generated from the endpoint declarations."""

from __future__ import annotations

import re
import sys
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import EXCLUDE, RAISE, Schema

from lib.endpoint import Auth
from lib.pagination import PageQuery
from runtime.router import Route

_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)(?::([a-z]+)(?:\(([^)]*)\))?)?\}")
_ENVELOPE = {"type": "object", "properties": {"success": {"type": "boolean"}, "data": {}}}
_PAGE = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean"},
        "data": {
            "type": "object",
            "required": ["items", "next_cursor", "has_more"],
            "properties": {
                "items": {"type": "array", "items": {"type": "object"}},
                "next_cursor": {"type": "string", "nullable": True, "description": "opaque; pass as ?cursor="},
                "has_more": {"type": "boolean"},
            },
        },
    },
}
_ERROR = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean"},
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
        },
    },
}
_ERRORS = (
    "Error envelope. Every surface applies the same input rules (docs/limits.md): text with a NUL or a"
    " lone surrogate, numbers beyond 64 bits, non-ASCII digits and forged cursors are 422"
    " `VALIDATION_ERROR`; JSON nested deeper than 32 levels is 400 `BAD_REQUEST`; a per-user limit is"
    " 429 `RATE_LIMITED` with `Retry-After` and `details.retry_after_seconds`."
)
_AUTH_NOTE = {
    Auth.NONE: "No authentication.",
    Auth.WEBHOOK: "Authenticated by the `x-callback-token` header.",
    Auth.OPTIONAL_CUSTOMER: "A customer token is optional (it upgrades an anonymous account).",
    Auth.CUSTOMER: "Customer token.",
    Auth.MITRA: "Mitra token.",
    Auth.ANY_APP_USER: "Customer or mitra token.",
    Auth.CC_USER: "Control-center token.",
}


def _path(route: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for name, converter, args in _FIELD.findall(route):
        schema: dict[str, Any] = {"type": "string"}
        if converter == "uuid":
            schema = {"type": "string", "format": "uuid"}
        elif converter == "int":
            schema = {"type": "integer"}
            for arg in filter(None, (a.strip() for a in args.split(","))):
                key, _, value = arg.partition("=")
                if key == "min":
                    schema["minimum"] = int(value)
        params.append({"in": "path", "name": name, "required": True, "schema": schema})
    return _FIELD.sub(lambda m: "{" + m.group(1) + "}", route), params


def build_spec(surface: str, routes: list[Route]) -> dict[str, Any]:
    # Inline every schema: each handler declares its own `Body`, so names would collide.
    plugin = MarshmallowPlugin(schema_name_resolver=_inline)
    spec = APISpec(title=f"Halo Bestie {surface} API", version="1.0.0", openapi_version="3.0.3", plugins=[plugin])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    by_path: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.endpoint.route, r.endpoint.method)):
        ep = route.endpoint
        path, params = _path(ep.route)
        is_page = ep.query is not None and issubclass(ep.query, PageQuery)
        operation: dict[str, Any] = {
            "operationId": route.module,
            "summary": _summary(route),
            "description": _AUTH_NOTE[ep.auth] + (f" Permission: `{ep.permission}`." if ep.permission else ""),
            "parameters": params,
            "responses": {
                str(ep.status): {
                    "description": "A page of the list" if is_page else "Success",
                    "content": {"application/json": {"schema": _PAGE if is_page else _ENVELOPE}},
                },
                "default": {"description": _ERRORS, "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        if ep.auth not in (Auth.NONE, Auth.WEBHOOK):
            operation["security"] = [{"bearer": []}] + ([{}] if ep.auth is Auth.OPTIONAL_CUSTOMER else [])
        if ep.query is not None:
            assert plugin.converter is not None  # set once the plugin is registered with the spec
            operation["parameters"] += plugin.converter.schema2parameters(ep.query(unknown=EXCLUDE), location="query")
        if ep.body is not None:
            body_schema = ep.body(unknown=EXCLUDE if surface == "public" else RAISE)
            operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body_schema}}}
        elif ep.raw_body:
            operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
        by_path.setdefault(path, {})[ep.method.lower()] = operation
    for path, operations in by_path.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _inline(schema: type[Schema]) -> str:
    return None  # type: ignore[return-value]  # apispec: None means "inline", its stub says str


def _summary(route: Route) -> str:
    module = sys.modules.get(route.module)
    doc = (module.__doc__ if module else None) or route.endpoint.summary or ""
    return doc.strip().splitlines()[0] if doc.strip() else route.module
