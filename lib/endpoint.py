"""The handler contract: Endpoint declarations, Auth kinds, the per-request Ctx and Reply."""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from marshmallow import Schema

from lib.principal import Principal
from lib.services import Services

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_ROUTE = re.compile(r"^(/[A-Za-z0-9._~-]+|/\{[a-z_][a-z0-9_]*(:[a-z]+(\([a-z0-9=, ]*\))?)?\})+$")


class Auth(enum.Enum):
    """Who may call an endpoint. There is no default: every endpoint must say."""

    NONE = "none"
    OPTIONAL_CUSTOMER = "optional_customer"
    CUSTOMER = "customer"
    MITRA = "mitra"
    ANY_APP_USER = "any_app_user"
    CC_USER = "cc_user"
    WEBHOOK = "webhook"


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """What a handler module declares as ``ENDPOINT``."""

    method: str
    route: str
    auth: Auth
    permission: str | None = None
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    status: int = 200
    summary: str = ""
    # The shape of a success's `data` (of one item, for a cursor list, whose envelope every list shares),
    # for the OpenAPI description; with `envelope=False`, of the whole body. None with status 204: no body.
    response: type[Schema] | None = None
    envelope: bool = True  # describe the body unwrapped, as the handler's Reply(envelope=False) sends it
    raw_body: bool = False  # hand the verbatim body to the handler (ctx.raw_body) instead of parsing it
    dev_only: bool = False  # mounted only when APP_ENV is development or test

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unsupported method {self.method!r}")
        if not _ROUTE.match(self.route):
            raise ValueError(f"malformed route {self.route!r}")
        if not isinstance(self.auth, Auth):
            raise TypeError("auth must be an Auth value")
        if self.permission is not None and self.auth is not Auth.CC_USER:
            raise ValueError("permission only applies to Auth.CC_USER")
        if self.body is not None and self.method == "GET":
            raise ValueError("GET endpoints take no body")
        if self.status == 204 and self.response is not None:
            raise ValueError("a 204 has no body to declare a response for")


@dataclass(slots=True)
class Reply:
    """A non-default response: another status, headers, cookies, or a body outside the envelope."""

    status: int = 200
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[dict[str, Any]] = field(default_factory=list)
    envelope: bool = True
    media_type: str | None = None  # set for a non-JSON body (data is then str or bytes, sent as is)


@dataclass(slots=True)
class Ctx:
    """Everything a handler may use. Built per request; holds no state between requests."""

    request_id: str
    services: Services
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    now: Callable[[], datetime]
    principal: Principal | None = None
    body: Any = None
    query: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    client_ip: str = ""
    raw_body: bytes = b""
