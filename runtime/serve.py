"""The servers: granian (runtime/granian_server.py) or gunicorn gthread for the REST listeners, as
WEB_SERVER says; gunicorn's native ASGI worker for the realtime gateway. Per-process pools,
graceful shutdown under each. Every server's master chooses prometheus-client's multiprocess mode
before it forks, and serves METRICS_PORT when set (lib/metrics.py)."""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from lib import log as logsetup
from lib import metrics as prom
from lib.config.env import Settings
from runtime.granian_server import granian_options, refuse_new_connections, serve_granian

APPS = {"public": "runtime.public:app", "internal": "runtime.internal:app", "realtime": "runtime.realtime:app"}
log = logging.getLogger("runtime.serve")


def default_bind(surface: str, settings: Settings) -> str:
    if surface == "internal":
        return f"{settings.internal_host}:{settings.internal_port}"
    if surface == "realtime":
        return f"0.0.0.0:{settings.realtime_port}"
    return f"0.0.0.0:{settings.public_port}"


def _on_starting(server: Arbiter) -> None:
    # gunicorn's own logging setup replaced ours; put the JSON/text handler back before forking.
    s = server.app.settings
    logsetup.configure(s.log_format, s.log_level)


def _post_worker_init(worker: Worker) -> None:
    # The app (and its pool) was built in this worker, after the fork; warm the pool now so the
    # first requests do not pay for connecting.
    services = getattr(getattr(worker, "wsgi", None), "services", None)
    if services is not None and services.settings.database_url:
        try:
            services.db._ensure_open()
        except Exception:
            log.warning("could not open the database pool at worker start", exc_info=True)


def _child_exit(server: Arbiter, worker: Worker) -> None:
    prom.process_exited(worker.pid)  # in the master, for a worker that exited or was killed


def _worker_exit(server: Arbiter, worker: Worker) -> None:
    services = getattr(getattr(worker, "wsgi", None), "services", None)
    if services is not None:
        services.close()


def gunicorn_options(surface: str, settings: Settings, bind: str | None = None) -> dict[str, Any]:
    """The production config; bench/ measured the alternatives (see README, "Performance")."""
    if surface == "realtime":
        return {
            **_common(surface, settings, bind),
            "worker_class": "runtime.worker_class.RealtimeWorker",
            "workers": settings.web_concurrency,
            "asgi_lifespan": "on",  # the gateway starts its bus link and presence refresh there
            "asgi_loop": "uvloop",  # gunicorn's public setting; docs/performance.md has the measured gain
        }
    return {
        **_common(surface, settings, bind),
        "worker_class": "runtime.worker_class.GracefulThreadWorker",
        "workers": settings.web_concurrency,
        "threads": settings.web_threads,
        "keepalive": 5,
        "http_parser": "auto",  # the gunicorn-h1c C parser when installed (gunicorn[fast])
    }


def _common(surface: str, settings: Settings, bind: str | None) -> dict[str, Any]:
    return {
        "bind": [bind or default_bind(surface, settings)],
        "graceful_timeout": settings.graceful_timeout,
        "timeout": 60,
        "preload_app": False,  # import the app, and so open pools, in each worker after fork
        "control_socket_disable": True,  # two instances sharing the default socket path clash
        "accesslog": None,  # our RequestContext middleware logs each request with its id
        "errorlog": "-",
        # gunicorn's own lines go through the root handler too, so they share our JSON/text format.
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "root": {"level": settings.log_level, "handlers": []},
            "loggers": {
                "gunicorn.error": {"level": settings.log_level, "handlers": [], "propagate": True},
                "gunicorn.access": {"handlers": [], "propagate": False},
            },
        },
        "loglevel": settings.log_level.lower(),
        "proc_name": f"halobestie-{surface}",
        "worker_tmp_dir": "/dev/shm",  # noqa: S108 (tmpfs, as gunicorn's docs advise)  # heartbeat files off the (possibly read-only) disk
        "forwarded_allow_ips": "127.0.0.1,::1",
        "limit_request_line": 8190,
        "on_starting": _on_starting,
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
    }


class DrainingArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, refusing new connections before it stops. Its workers share one listening
    socket: the master closes its copy, then each worker drains the queue and closes its own
    (runtime/worker_class.py), and whatever the kernel queued after the last worker's last accept was
    reset at that close (tests/runtime/test_worker_class.py lost 1 request in 96 runs). The master
    first drops every new SYN on the socket, as the granian stop does, so nothing new enters the
    queue once the stop has begun (a handshake already answered still completes into it, and is
    drained): a client's retransmitted SYN meets a closed port and is refused."""

    def stop(self, graceful: bool = True) -> None:
        # gunicorn's own test before it unlinks the sockets: they are this server's alone, not
        # handed on to a re-executed master or held by systemd for the next start.
        if self.reexec_pid == self.master_pid == 0 and not self.systemd:
            for listener in self.LISTENERS:
                refuse_new_connections(listener.sock)
        super().stop(graceful)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        surface: str,
        settings: Settings,
        bind: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.surface = surface
        self.settings = settings
        self.options = {**gunicorn_options(surface, settings, bind), **(overrides or {})}
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if value is not None or key == "accesslog":
                self.cfg.set(key, value)

    def load(self) -> Any:
        module, _, attr = APPS[self.surface].partition(":")
        return getattr(import_module(module), attr)

    def run(self) -> None:
        try:
            DrainingArbiter(self).run()
        except RuntimeError as exc:  # as BaseApplication.run: gunicorn's start-up errors, without a traceback
            sys.exit(f"\nError: {exc}\n")


def serve(
    surface: str,
    settings: Settings,
    bind: str | None = None,
    overrides: dict[str, Any] | None = None,
    server: str | None = None,
) -> None:
    """Run a listener until SIGTERM; overrides are options of the chosen server (bench/run.py)."""
    server = server or settings.web_server
    prom.enable_multiprocess(surface)
    if settings.metrics_port:
        prom.serve_port(settings.metrics_port)
    if server == "granian" and surface != "realtime":
        options = granian_options(
            APPS[surface],
            bind or default_bind(surface, settings),
            settings.web_concurrency,
            settings.web_threads,
            settings.graceful_timeout,
        )
        serve_granian({**options, **(overrides or {})})
    else:
        GunicornServer(surface, settings, bind, overrides).run()
