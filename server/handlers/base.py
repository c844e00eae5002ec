"""What every HTTP handler shares: JSON bodies, and domain errors turned into statuses."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import tornado.web

from matcher.store import InvalidName, NotFound, StoreUnavailable
from server.catalog import Catalog, RequestRejected
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
    "not_found": 404,
    "method_not_allowed": 405,
    "unknown_collection": 404,
    "image_too_large": 413,
    "metadata_too_large": 413,
    "body_too_large": 413,
    "poor_reference": 422,
    "overloaded": 503,
    "store_unavailable": 503,
    "worker_failed": 503,
    "shutting_down": 503,
    "timeout": 504,
    "internal": 500,
}


class ApiHandler(tornado.web.RequestHandler):
    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.application.settings["catalog"]
        return catalog

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

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
        if isinstance(value, (RequestRejected, NotFound, InvalidName, StoreUnavailable, Overloaded)):
            return  # answered with a status; not a server fault
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, RequestRejected):
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
