"""What every HTTP handler shares: JSON bodies, and domain errors turned into statuses."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import tornado.httputil
import tornado.web

from matcher.store import InvalidName, NotFound, StoreUnavailable
from server.access import ANONYMOUS, Access, Forbidden, Unauthorized
from server.catalog import Catalog, RequestRejected
from server.credentials import Credential
from server.scheduler import Overloaded
from server.usage import collection_or_blank, token_of

log = logging.getLogger("catchlight.http")

# The one place where engine and rule codes become HTTP statuses.
STATUS_OF_CODE = {
    "invalid_image": 400,
    "invalid_name": 400,
    "invalid_metadata": 400,
    "invalid_request": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "unknown_collection": 404,
    "collection_not_served": 421,
    "collection_full": 409,
    "image_too_large": 413,
    "metadata_too_large": 413,
    "body_too_large": 413,
    "poor_reference": 422,
    "rate_limited": 429,
    "overloaded": 503,
    "store_unavailable": 503,
    "worker_failed": 503,
    "shutting_down": 503,
    "timeout": 504,
    "internal": 500,
}


# The same words whatever was wrong (missing, unknown, revoked, expired; or which rule refused): nothing to probe.
UNAUTHORIZED_MESSAGE = "a valid credential is required"
FORBIDDEN_MESSAGE = "this credential does not allow this request"


def presented_secret(request: tornado.httputil.HTTPServerRequest) -> str | None:
    """The credential of a request: `Authorization: Bearer ...`, else the `token` query argument (browsers)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    values = request.query_arguments.get("token")
    return values[-1].decode("utf-8", errors="replace") if values else None


def cors_origin(request: tornado.httputil.HTTPServerRequest, allowed: tuple[str, ...]) -> str | None:
    """The Origin to allow in CORS headers, or None."""
    origin = request.headers.get("Origin")
    if origin and ("*" in allowed or origin in allowed):
        return origin
    return None


def redacted_uri(request: tornado.httputil.HTTPServerRequest) -> str:
    """The request path without its query string (which may hold a token)."""
    return request.path + ("?..." if request.query else "")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without query strings, so tokens passed in URLs never reach the logs."""
    status = handler.get_status()
    if status < 400:
        return
    level = logging.WARNING if status < 500 else logging.ERROR
    logging.getLogger("tornado.access").log(
        level,
        "%d %s %s %.1fms",
        status,
        handler.request.method,
        redacted_uri(handler.request),
        1000.0 * handler.request.request_time(),
    )


class ApiHandler(tornado.web.RequestHandler):
    _credential: Credential | None = None

    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.application.settings["catalog"]
        return catalog

    @property
    def access(self) -> Access:
        access: Access = self.application.settings["access"]
        return access

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        config = self.application.settings.get("config")
        origin = cors_origin(self.request, config.server.cors_origins) if config is not None else None
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", "Location, ETag")
            self.add_header("Vary", "Origin")

    def options(self, *args: str) -> None:
        """CORS preflight: allowed origins learn the methods and headers they may use."""
        if self.request.headers.get("Origin") and "Access-Control-Allow-Origin" in self._headers:
            self.set_header("Access-Control-Allow-Methods", "GET, PUT, POST, PATCH, DELETE, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    @property
    def token_id(self) -> str | None:
        """The public id of the request's credential, for usage statistics (None: anonymous)."""
        credential = self._credential
        return None if credential is None or credential is ANONYMOUS else credential.id

    def allow(self, action: str, collection: str | None = None) -> Credential:
        """The request's credential if it may do `action` (on `collection`); raises Unauthorized or Forbidden."""
        if self._credential is None:
            self._credential = self.access.authenticate(presented_secret(self.request))
        self.access.authorize(self._credential, action, collection)
        return self._credential

    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, separators=(",", ":")))

    def send_error_code(self, code: str, message: str, **details: Any) -> None:
        self.send_json({"error": {"code": code, "message": message, **details}}, STATUS_OF_CODE.get(code, 500))

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise RequestRejected("invalid_request", "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise RequestRejected("invalid_request", "the body must be a JSON object")
        return body

    def on_finish(self) -> None:
        usage = self.application.settings.get("usage")
        if usage is not None:
            status = self.get_status()
            usage.count_request(
                f"{self.request.method} {endpoint_name(type(self))}",
                status,
                self.request.request_time(),
                self.usage_collection() if status < 400 else "",
                token_of(self),
            )

    def usage_collection(self) -> str:
        """The collection a request is counted for in the usage statistics ("" for none)."""
        return collection_or_blank(self.path_args[0]) if self.path_args else ""

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (RequestRejected, NotFound, InvalidName, StoreUnavailable, Overloaded, Unauthorized, Forbidden)):
            return  # answered with a status; not a server fault
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, Unauthorized):
            self.set_header("WWW-Authenticate", 'Bearer realm="catchlight"')
            self.send_error_code("unauthorized", UNAUTHORIZED_MESSAGE)
        elif isinstance(exc, Forbidden):
            self.send_error_code("forbidden", FORBIDDEN_MESSAGE)
        elif isinstance(exc, RequestRejected):
            self.send_error_code(exc.code, exc.message, **exc.details)
        elif isinstance(exc, NotFound):
            self.send_error_code("not_found", str(exc))
        elif isinstance(exc, InvalidName):
            self.send_error_code("invalid_name", str(exc))
        elif isinstance(exc, StoreUnavailable):
            self.send_error_code("store_unavailable", str(exc))
        elif isinstance(exc, Overloaded):
            self.send_error_code("overloaded", str(exc))
        elif status_code == 404:
            self.send_error_code("not_found", "no such resource")
        elif status_code == 405:
            self.send_error_code("method_not_allowed", f"{self.request.method} is not allowed here")
        elif isinstance(exc, tornado.web.HTTPError):
            self.send_json({"error": {"code": "http_error", "message": exc.log_message or self._reason}}, status_code)
        else:
            self.send_error_code("internal", "internal error")


class NotFoundHandler(ApiHandler):
    """Unknown paths answer in the API's JSON error shape."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


def endpoint_name(handler: type) -> str:
    """RecognizeHandler -> recognize, CollectionStatsHandler -> collection_stats: how statistics name an endpoint."""
    name = handler.__name__.removesuffix("Handler")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
