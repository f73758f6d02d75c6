"""Error type of the API and the handlers that turn errors into JSON responses.

Every error response has the body `{"error": "...", "request_id": "..."}` (plus `details`
for invalid fields), and every error is logged once, with its request id, where it is
turned into a response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import ErrorDetail, ErrorResponse, TranslateRequest

logger = logging.getLogger(__name__)

UNKNOWN_REQUEST_ID = "-"
# Values and field names from a request are cut to this many characters in error messages.
MAX_ECHOED_CHARS = 100


class APIError(Exception):
    """An error with an HTTP status and a message meant for the client."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        details: Sequence[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        message = escape_surrogates(message)
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.details = [_escape_detail(detail) for detail in details] if details else None
        self.headers = dict(headers) if headers else None


class BodyTooLargeError(APIError):
    """The request body is over the configured size limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes")


def truncate(text: str) -> str:
    """Cut `text` to MAX_ECHOED_CHARS characters, marking a cut with "…"."""
    if len(text) <= MAX_ECHOED_CHARS:
        return text
    return text[:MAX_ECHOED_CHARS] + "…"


def format_value(value: Any) -> str:
    """Format a request value as JSON text for an error message, cut by `truncate`."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return truncate(text)


def escape_surrogates(text: str) -> str:
    """Replace each lone UTF-16 surrogate in `text` with its escape, e.g. \\ud800.

    JSON may carry lone surrogates as escapes, but UTF-8 cannot encode them, so an error
    message that echoed one verbatim could not be sent.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _escape_detail(detail: ErrorDetail) -> ErrorDetail:
    return ErrorDetail(
        field=escape_surrogates(detail.field), message=escape_surrogates(detail.message)
    )


def request_id_of(request: Request) -> str:
    """Return the request id that the request-context middleware assigned."""
    return getattr(request.state, "request_id", UNKNOWN_REQUEST_ID)


def error_response(
    request_id: str,
    status_code: int,
    message: str,
    *,
    details: Sequence[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the JSON error response that every error of the API uses."""
    body = ErrorResponse(error=message, request_id=request_id, details=details or None)
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status_code, headers=dict(headers or {})
    )


def field_error(field: str, message: str, full_message: str | None = None) -> APIError:
    """Return a 422 with one detail; `full_message` defaults to "field: message"."""
    detail = ErrorDetail(field=field, message=message)
    return APIError(422, full_message or f"{field}: {message}", details=[detail])


def validation_error(error: ValidationError | RequestValidationError) -> APIError:
    """Convert a pydantic validation error into a 422 that names each invalid field."""
    details = [
        ErrorDetail(field=_field_name(item.get("loc", ())), message=_message(item))
        for item in error.errors()
    ]
    message = "; ".join(f"{detail.field}: {detail.message}" for detail in details)
    return APIError(422, message, details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn API, validation and HTTP errors into JSON."""
    app.add_exception_handler(APIError, _handle_api_error)
    app.add_exception_handler(RequestValidationError, _handle_request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)


async def _handle_api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, APIError)
    request_id = request_id_of(request)
    level = logging.ERROR if error.status_code >= 500 else logging.WARNING
    logger.log(level, "request %s failed with %d: %s", request_id, error.status_code, error.message)
    return error_response(
        request_id, error.status_code, error.message, details=error.details, headers=error.headers
    )


async def _handle_request_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return await _handle_api_error(request, validation_error(error))


async def _handle_http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    api_error = APIError(error.status_code, str(error.detail), headers=error.headers)
    return await _handle_api_error(request, api_error)


_EMPTY_NAME = '""'


def _field_name(location: Sequence[Any]) -> str:
    # ("body", "texts", 2) and ("texts", 2) both become "texts[2]". A field with an empty name
    # (a JSON key "" or a form field "=value") is shown as "".
    name = ""
    for part in location:
        if part == "body":
            continue
        if isinstance(part, int):
            name += f"[{part}]"
            continue
        text = truncate(str(part)) or _EMPTY_NAME
        name = f"{name}.{text}" if name else text
    return name or "body"


def _message(item: Mapping[str, Any]) -> str:
    error_type = item.get("type")
    if error_type == "extra_forbidden":
        accepted = ", ".join(TranslateRequest.model_fields)
        return f"unknown field; the accepted fields are {accepted}"

    message = str(item.get("msg", "invalid value"))
    # A model-level error has no location, and its input is the whole body.
    if item.get("loc") and "input" in item and error_type != "missing":
        message += f", got {format_value(item['input'])}"
    return message
