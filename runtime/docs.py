"""The OpenAPI documents and a browsable page, served on the internal (private) listener only."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from lib.endpoint import Auth, Ctx, Endpoint, Reply
from runtime.router import Route


class SpecQuery(Schema):
    surface = fields.String(load_default="internal", validate=validate.OneOf(["public", "internal"]))


OPENAPI = Endpoint(
    method="GET",
    route="/internal/openapi.json",
    auth=Auth.NONE,
    query=SpecQuery,
    summary="OpenAPI description of a listener (?surface=public|internal)",
)
DOCS = Endpoint(method="GET", route="/internal/docs", auth=Auth.NONE, summary="Browsable API documentation")

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Halo Bestie API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({dom_id: "#ui", urls: [
  {url: "openapi.json?surface=public", name: "public (apps)"},
  {url: "openapi.json?surface=internal", name: "internal (control center)"}]});</script>
<noscript>Raw documents: <a href="openapi.json?surface=public">public</a>,
<a href="openapi.json?surface=internal">internal</a>.</noscript>
</body></html>
"""


def doc_routes(spec_of: Callable[[str], dict[str, Any]]) -> list[Route]:
    """The two documentation routes; `spec_of(surface)` builds a listener's document (once)."""
    cached = lru_cache(maxsize=2)(spec_of)

    def openapi(req: falcon.Request, ctx: Ctx) -> Reply:
        return Reply(200, cached(ctx.query["surface"]), envelope=False)

    return [
        Route("internal", OPENAPI, openapi, "runtime.docs.openapi"),
        Route("internal", DOCS, docs, "runtime.docs.docs"),
    ]


def docs(req: falcon.Request, ctx: Ctx) -> Reply:
    return Reply(200, _PAGE, media_type="text/html; charset=utf-8")
