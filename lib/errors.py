"""Typed API errors; rendered into the error envelope in one place (runtime.app)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base of every error a client may see. Subclasses fix the HTTP status and default code."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        self.details = details or {}
        self.headers = dict(headers or {})
        self.cookies: list[dict[str, Any]] = []  # e.g. clear a dead refresh cookie along with a 401
        super().__init__(f"{self.code}: {self.message}")

    def body(self) -> dict[str, Any]:
        return {
            "success": False,
            "error": {"code": self.code, "message": self.message, "details": self.details},
        }


class BadRequest(ApiError):
    status, code, message = 400, "BAD_REQUEST", "Malformed request"


class Unauthorized(ApiError):
    status, code, message = 401, "UNAUTHORIZED", "Authentication required"


class Forbidden(ApiError):
    status, code, message = 403, "FORBIDDEN", "Not allowed"


class NotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "Not found"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class Conflict(ApiError):
    status, code, message = 409, "CONFLICT", "Conflict"


class Gone(ApiError):
    status, code, message = 410, "GONE", "No longer available"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "UNSUPPORTED_MEDIA_TYPE", "Request body must be application/json"


class ValidationFailed(ApiError):
    """422 with ``details.fields = {field: [messages]}``."""

    status, code, message = 422, "VALIDATION_ERROR", "Invalid input"

    def __init__(
        self,
        fields: dict[str, Any] | None = None,
        message: str | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code, details={"fields": fields or {}})


class Locked(ApiError):
    status, code, message = 423, "LOCKED", "Locked"


class _RetryLater(ApiError):
    """An error that tells the client when to come back (Retry-After + details)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int = 1,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(
            message,
            code=code,
            details={**(details or {}), "retry_after_seconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


class RateLimited(_RetryLater):
    status, code, message = 429, "RATE_LIMITED", "Too many requests"


class ServiceUnavailable(_RetryLater):
    status, code, message = 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"


class BadGateway(ApiError):
    status, code, message = 502, "BAD_GATEWAY", "Upstream service failed"


class InternalError(ApiError):
    """The generic 500: never carries exception text."""
