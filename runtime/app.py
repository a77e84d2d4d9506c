"""Builds the public and internal Falcon WSGI apps from the discovered endpoint modules: the request
pipeline of runtime/pipeline.py behind Falcon's router, its middleware and error handlers."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import falcon

from lib import metrics as prom
from lib.config.env import Settings, check_jwt_secret
from lib.config.env import settings as env_settings
from lib.services import Services
from runtime import http, pipeline, probes
from runtime.container import build_services
from runtime.docs import doc_routes
from runtime.openapi import build_spec
from runtime.router import Route, discover

SURFACES = ("public", "internal")


def routes_for(surface: str, routes: list[Route] | None = None, settings: Settings | None = None) -> list[Route]:
    """A listener's routes: the runtime's own (probes on both, the API docs on the internal one)
    and the discovered endpoints of its surface. With `settings`, only what is mounted there."""
    found = discover() if routes is None else routes
    own = [
        Route(surface, probes.HEALTH, probes.health, "runtime.probes.health"),
        Route(surface, probes.READY, probes.ready, "runtime.probes.ready"),
    ]
    if surface == "internal":
        own.append(Route(surface, probes.METRICS, probes.metrics, "runtime.probes.metrics"))
        own += doc_routes(lambda documented: openapi_document(documented, found, settings))
    listed = own + [r for r in found if r.surface == surface]
    # Development and test hooks (/internal/_test/...) do not exist in other environments.
    return listed if settings is None or settings.is_dev_or_test else [r for r in listed if not r.endpoint.dev_only]


def openapi_document(
    surface: str, routes: list[Route] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    return build_spec(surface, routes_for(surface, routes, settings))


def route_table(routes: list[Route] | None = None) -> list[str]:
    """`<surface> <METHOD> <route> <auth> <module>` per route, sorted (python -m runtime routes)."""
    found = discover() if routes is None else routes
    rows = []
    for surface in SURFACES:
        for r in routes_for(surface, found):
            auth = r.endpoint.auth.value + (f":{r.endpoint.permission}" if r.endpoint.permission else "")
            auth += ":dev-only" if r.endpoint.dev_only else ""
            rows.append(f"{surface} {r.endpoint.method} {r.endpoint.route} {auth} {r.module}")
    return sorted(rows)


class HaloApp(falcon.App):  # type: ignore[type-arg]
    """A Falcon app that carries its per-process services (for tests and the gunicorn hooks)."""

    services: Services


class _Resource:
    """One per route template; holds an on_<method> responder per declared endpoint."""


def create_app(
    surface: str,
    services: Services | None = None,
    routes: list[Route] | None = None,
    settings: Settings | None = None,
) -> HaloApp:
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}")
    settings = services.settings if services is not None else settings or env_settings()
    check_jwt_secret(settings.auth_jwt_secret)
    settings.check_payments()
    if surface == "public":
        settings.check_otp_provider()
    if services is None:
        services = build_services(settings, application_name=f"halobestie-{surface}")

    middleware: list[Any] = [http.RequestContext(surface)]
    if surface == "internal" and services.settings.cc_origin:
        middleware.append(
            falcon.CORSMiddleware(
                allow_origins=list(services.settings.cc_origin),
                allow_credentials=list(services.settings.cc_origin),
            )
        )
    app = HaloApp(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    http.install_error_handlers(app)

    by_template: dict[str, _Resource] = defaultdict(_Resource)
    for route in routes_for(surface, routes, services.settings):
        setattr(
            by_template[route.endpoint.route],
            f"on_{route.endpoint.method.lower()}",
            pipeline.responder(route, services),
        )
    for template, resource in by_template.items():
        app.add_route(template, resource)
    app.services = services
    prom.announce(surface)
    return app
