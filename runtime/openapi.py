"""The OpenAPI description of each listener, generated from the endpoint declarations."""

from __future__ import annotations

import re
import sys
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import EXCLUDE, RAISE, Schema

from lib import metrics
from lib.endpoint import Auth
from lib.pagination import PageQuery
from runtime.router import Route

_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)(?::([a-z]+)(?:\(([^)]*)\))?)?\}")
SHARED_SHAPES = "functions._shapes"  # the response shapes several endpoints share: named components
_PAGE_NOTE = "A page of the list: the envelope every cursor list shares (API.md, Conventions)"
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


OPTIONAL = {"x-optional": True}  # a response field's metadata: the key may be absent (else it is always sent)


def release() -> str:
    """The package version without the build's revision: the committed descriptions carry it, so they
    change with a release and not with every commit."""
    return metrics.version().partition("+")[0]


def build_spec(surface: str, routes: list[Route], version: str | None = None) -> dict[str, Any]:
    """A listener's OpenAPI 3.0 description; `version` defaults to the build's (lib.metrics.version)."""
    # Bodies and handler-local shapes inline (every handler names its own `Body`); the shared response
    # shapes as components, so a generated client has one `Session` class, not one per operation.
    plugin = MarshmallowPlugin(schema_name_resolver=_component_name)
    spec = APISpec(
        title=f"Halo Bestie {surface} API",
        version=version or metrics.version(),
        openapi_version="3.0.3",
        plugins=[plugin],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    by_path: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.endpoint.route, r.endpoint.method)):
        ep = route.endpoint
        path, params = _path(ep.route)
        assert plugin.converter is not None  # set once the plugin is registered with the spec
        converter = plugin.converter
        operation: dict[str, Any] = {
            "operationId": route.module,
            "summary": _summary(route),
            "description": _AUTH_NOTE[ep.auth] + (f" Permission: `{ep.permission}`." if ep.permission else ""),
            "parameters": params,
            "responses": {
                **_success(route, converter),
                "default": {"description": _ERRORS, "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        if ep.auth not in (Auth.NONE, Auth.WEBHOOK):
            operation["security"] = [{"bearer": []}] + ([{}] if ep.auth is Auth.OPTIONAL_CUSTOMER else [])
        if ep.query is not None:
            operation["parameters"] += converter.schema2parameters(ep.query(unknown=EXCLUDE), location="query")
        if ep.body is not None:
            body_schema = ep.body(unknown=EXCLUDE if surface == "public" else RAISE)
            # An absent body loads as {} (runtime/http.load_body): it may be left out when no field is required.
            required = any(f.required for f in body_schema.fields.values())
            operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": body_schema}}}
        elif ep.raw_body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        by_path.setdefault(path, {})[ep.method.lower()] = operation
    for path, operations in by_path.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    shapes = document["components"].get("schemas", {})
    for name, schema in shapes.items():
        shapes[name] = _shape(schema)
    return document


def _success(route: Route, converter: OpenAPIConverter) -> dict[str, Any]:
    ep = route.endpoint
    if ep.response is None:
        if ep.status == 204:
            return {"204": {"description": "No content"}}
        # Not declared yet: described as an untyped envelope (tests/runtime/test_docs.py lists who may).
        return {str(ep.status): {"description": "Success", "content": {"application/json": {"schema": _envelope({})}}}}
    shape = _shape(converter.resolve_nested_schema(ep.response))  # type: ignore[no-untyped-call]  # apispec: unannotated
    if not ep.envelope:
        return {str(ep.status): {"description": "Success", "content": {"application/json": {"schema": shape}}}}
    if ep.query is not None and issubclass(ep.query, PageQuery):
        page = {
            "type": "object",
            "required": ["items", "next_cursor", "has_more"],
            "properties": {
                "items": {"type": "array", "items": shape},
                "next_cursor": {"type": "string", "nullable": True, "description": "opaque; pass as ?cursor="},
                "has_more": {"type": "boolean"},
            },
        }
        return {
            str(ep.status): {"description": _PAGE_NOTE, "content": {"application/json": {"schema": _envelope(page)}}}
        }
    return {str(ep.status): {"description": "Success", "content": {"application/json": {"schema": _envelope(shape)}}}}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"type": "boolean", "enum": [True]}, "data": data},
    }


def _shape(schema: Any) -> Any:
    """A response schema as sent: every property is present unless its field says OPTIONAL, and
    the nested objects likewise (apispec takes `required` from the fields, which describe loading)."""
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shaped = {key: _shape(value) for key, value in schema.items() if key != "x-optional"}
    null, ref = {"type": "object", "nullable": True}, [part for part in shaped.get("anyOf", ()) if "$ref" in part]
    if len(shaped.get("anyOf", ())) == 2 and null in shaped["anyOf"] and len(ref) == 1:
        # apispec writes a nullable component as anyOf [any object or null, the component]: that
        # admits any object; 3.0's own idiom, allOf [the component] with nullable, says what is meant.
        del shaped["anyOf"]
        shaped.update({"allOf": ref, "nullable": True})
    if shaped.get("additionalProperties") is False:
        del shaped["additionalProperties"]  # a field added later must not break a client built today
    if schema.get("type") == "object" and "properties" in schema:
        shaped.pop("required", None)
        required = [name for name, prop in schema["properties"].items() if not prop.get("x-optional")]
        if required:
            shaped["required"] = required
    return shaped


def _component_name(schema: type[Schema] | Schema) -> str:
    kind = schema if isinstance(schema, type) else type(schema)
    if kind.__module__ == SHARED_SHAPES:
        return kind.__name__
    return None  # type: ignore[return-value]  # apispec: None means "inline", its stub says str


def _summary(route: Route) -> str:
    module = sys.modules.get(route.module)
    doc = (module.__doc__ if module else None) or route.endpoint.summary or ""
    return doc.strip().splitlines()[0] if doc.strip() else route.module
