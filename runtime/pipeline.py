"""The request pipeline every endpoint runs, whoever calls it: a listener, a test or a developer's
shell (`runtime.invoke`, `python -m runtime invoke`).

In the order a request meets them:

1. `http.RequestContext` (middleware): the request id in; X-Request-Id, metrics and the access log out.
2. Falcon's router: the route templates and their converters (`{id:uuid}`); no match is a 404.
3. `responder()` below, built once per route: path parameters through the shared input checks,
   authentication and permission (`runtime.auth`), the body and the query loaded through the
   endpoint's schemas with the surface's unknown-field rule, the handler, the rendering of its
   result (a dict, `None` for 204, a `Reply`).
4. `http.install_error_handlers`: every exception becomes the error envelope, in one place.

The Falcon app of `runtime.app.create_app` is this pipeline; `runtime.invoke` drives that same app
through a WSGI call, so nothing here has a second copy to drift from.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import falcon
from marshmallow import EXCLUDE, RAISE

from lib import inputs
from lib.clock import utcnow
from lib.endpoint import Ctx
from lib.requests_ip import client_ip
from lib.services import Services
from runtime import http
from runtime.auth import make_authenticator
from runtime.router import Route

log = logging.getLogger("handler")

Responder = Any  # falcon calls it as responder(req, resp, **params)


def unknown_fields(surface: str) -> Literal["exclude", "raise"]:
    """Old app builds send extra fields; the control center is ours, so typos there are errors."""
    return EXCLUDE if surface == "public" else RAISE


def responder(route: Route, services: Services) -> Responder:
    """The on_<method> responder of one route. Everything that can be decided from the declaration
    is decided here, once; the returned function is the hot path of every request."""
    endpoint, handle = route.endpoint, route.handle
    body_schema = endpoint.body(unknown=unknown_fields(route.surface)) if endpoint.body else None
    query_schema = endpoint.query(unknown=EXCLUDE) if endpoint.query else None
    authenticate = make_authenticator(endpoint, route.surface, services)
    status = endpoint.status
    trusted_hops = services.settings.trusted_proxy_hops
    raw_body = endpoint.raw_body

    def respond(req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        if params:
            inputs.check_params(params)
        ctx = Ctx(
            request_id=req.context.request_id,
            services=services,
            log=log,
            now=utcnow,
            principal=authenticate(req),
            params=params,
            client_ip=client_ip(req, trusted_hops),
        )
        if raw_body:
            ctx.raw_body = http.read_raw(req)
        elif body_schema is not None:
            ctx.body = http.load_body(req, body_schema)
        if query_schema is not None:
            ctx.query = http.load_query(req, query_schema)
        http.render(resp, handle(req, ctx), status)

    respond.__name__ = f"on_{endpoint.method.lower()}"
    return respond
