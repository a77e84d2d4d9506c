"""Builds the realtime listener's ASGI app: the WebSocket gateway at `/api/shared/ws`, and `/health`
and `/ready` like the REST listeners."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import falcon
import falcon.asgi
from falcon.asgi import Request, Response, WebSocket

from lib import metrics as prom
from lib.config.env import Settings, check_jwt_secret
from lib.config.env import settings as env_settings
from lib.errors import ApiError
from lib.jsonenc import dumps
from lib.services import Services
from lib.valkey import is_up
from runtime.container import build_services
from runtime.gateway import Gateway, discover_frames

WS_ROUTE = "/api/shared/ws"


class RealtimeApp(falcon.asgi.App):  # type: ignore[type-arg]
    """The ASGI app, carrying its gateway (the worker class asks it to close sockets on SIGTERM)."""

    gateway: Gateway


class _Lifespan:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def process_startup(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        await self.gateway.startup()

    async def process_shutdown(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        await self.gateway.shutdown()
        self.gateway.services.close()


class _Socket:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def on_websocket(self, req: Request, ws: WebSocket) -> None:
        await self.gateway.serve(ws)


class _Health:
    async def on_get(self, req: Request, resp: Response) -> None:
        resp.data = dumps({"success": True, "data": {"status": "ok"}})
        resp.content_type = falcon.MEDIA_JSON


class _Ready:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _check(self) -> tuple[str, str]:
        s = self.gateway.services
        try:
            with s.db.connection(timeout=1.0) as conn:
                conn.execute("SELECT 1")
            database = "up"
        except ApiError:
            database = "down"
        return database, "up" if is_up(s.valkey) else "down"

    async def on_get(self, req: Request, resp: Response) -> None:
        database, valkey = await self.gateway.blocking(self._check)
        body: dict[str, Any] = {"status": "ready", "database": database, "valkey": valkey}
        body["sockets"] = self.gateway.connection_count()
        resp.content_type = falcon.MEDIA_JSON
        if database == "down":
            resp.status = 503
            resp.set_header("Retry-After", "5")
            error = {"code": "SERVICE_UNAVAILABLE", "message": "Database unavailable", "details": body}
            resp.data = dumps({"success": False, "error": error})
        else:
            resp.data = dumps({"success": True, "data": body})


def create_realtime_app(services: Services | None = None, settings: Settings | None = None) -> RealtimeApp:
    settings = services.settings if services is not None else settings or env_settings()
    check_jwt_secret(settings.auth_jwt_secret)
    if services is None:
        services = build_services(settings, application_name="halobestie-realtime")
    gateway = Gateway(services, discover_frames())
    app = RealtimeApp(middleware=[_Lifespan(gateway)])
    # Falcon's receive buffer (a pump task and a queue per socket) exists to notice a disconnect
    # while the app is not receiving; the gateway always is, and gunicorn's protocol already keeps
    # a bounded queue (runtime/worker_class.py). Without it each frame costs one task hop less.
    app.ws_options.max_receive_queue = 0
    app.add_route(WS_ROUTE, _Socket(gateway))
    app.add_route("/health", _Health())
    app.add_route("/ready", _Ready(gateway))
    app.gateway = gateway
    prom.announce("realtime")
    return app
