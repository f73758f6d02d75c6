"""Request-context middleware: request ids, the body size limit, access logs and metrics.

This is plain ASGI middleware, not Starlette's BaseHTTPMiddleware, because it must wrap
`receive` to count body bytes as they stream in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLargeError, error_response
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# The status that logs and metrics record for a request whose client went away before its body
# was read (nginx's convention); no response is sent.
CLIENT_CLOSED_REQUEST = 499
# Incoming ids are echoed into logs and headers, so only short plain tokens are honoured.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UNMATCHED_ROUTE = "unmatched"
# The standard HTTP methods, by which requests are counted in the metrics.
_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_OTHER_METHOD = "other"


class RequestContextMiddleware:
    """Assign request ids, limit body size, log one line per request and record metrics.

    An unhandled exception becomes a 500 JSON response with the request id and is
    logged here with its traceback, so it is logged once and the server keeps serving.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ServiceMetrics,
                 route_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        # Paths of the app's routes, to label requests rejected before routing.
        self.route_paths = route_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = _request_id(headers.get(REQUEST_ID_HEADER))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status: dict[str, Any] = {"code": 500, "started": False}

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            declared = _content_length(headers)
            if declared is not None and declared > self.max_body_bytes:
                # Rejected before any byte of the body is read.
                raise BodyTooLargeError(self.max_body_bytes)
            await self.app(scope, self._limited(receive), send_with_request_id)
        except BodyTooLargeError as error:
            logger.warning("request %s failed with 413: %s", request_id, error.message)
            if not status["started"]:
                response = error_response(request_id, 413, error.message)
                await response(scope, receive, send_with_request_id)
        except ClientDisconnect:
            # The client closed the connection before its body arrived or while its texts were
            # translated. No response can reach it, and the server made no error, so this is
            # not counted as a 500.
            logger.info("request %s: the client disconnected before the response", request_id)
            if not status["started"]:
                status["code"] = CLIENT_CLOSED_REQUEST
        except Exception as error:
            self.metrics.exceptions.labels(type(error).__name__).inc()
            logger.exception("request %s failed with an unhandled exception", request_id)
            if not status["started"]:
                response = error_response(request_id, 500, "internal server error")
                await response(scope, receive, send_with_request_id)
        finally:
            self._finish(scope, state, status["code"], time.perf_counter() - started)

    def _limited(self, receive: Receive) -> Receive:
        """Wrap `receive` to raise BodyTooLargeError once the body passes the limit."""
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        return receive_within_limit

    def _finish(self, scope: Scope, state: dict[str, Any], status: int, elapsed_s: float) -> None:
        route = _route_label(scope, self.route_paths)
        method = scope.get("method", "")
        # uvicorn accepts any token as a method, so the others share one label.
        method_label = method if method in _HTTP_METHODS else _OTHER_METHOD
        self.metrics.requests.labels(route, method_label, str(status)).inc()
        self.metrics.latency.labels(route).observe(elapsed_s)
        if status >= 400:
            self.metrics.errors.labels(route, f"{status // 100}xx").inc()

        logger.info(
            "request_id=%s method=%s path=%s status=%d texts=%d chars=%d latency_ms=%.1f",
            state["request_id"],
            method,
            scope.get("path", ""),
            status,
            state.get("text_count", 0),
            state.get("char_count", 0),
            elapsed_s * 1000,
        )


def _request_id(incoming: str | None) -> str:
    if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None  # absent or invalid; the streamed byte count still applies
    return int(value)


def _route_label(scope: Scope, route_paths: frozenset[str]) -> str:
    """Return the route's path template, so that unknown paths share one metrics label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path

    # Requests rejected before routing (a body over the limit) carry no route yet.
    if scope.get("path") in route_paths:
        return scope["path"]
    return _UNMATCHED_ROUTE
