"""Decoding of request bodies: JSON, URL-encoded forms and multipart forms.

Bodies are decoded here rather than by Starlette's form parser because that parser
replaces bytes that are not UTF-8 instead of rejecting them. Every failure raises an
APIError whose message states what is wrong with the body.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import APIError

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
URLENCODED_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
SUPPORTED_TYPES = (JSON_TYPE, URLENCODED_TYPE, MULTIPART_TYPE)

# Form fields that become a list when repeated (`q=a&q=b`) or, for `texts`, always.
_LIST_FIELDS = ("q", "texts")


async def read_fields(request: Request) -> dict[str, Any]:
    """Read the request body and return its fields, whatever the content type."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    media_type = content_type.decode("latin-1").lower()
    if media_type not in SUPPORTED_TYPES:
        received = media_type or "none"
        raise APIError(
            415,
            f"unsupported content type {received}; send {', '.join(SUPPORTED_TYPES)}",
        )

    # The request-context middleware rejects bodies over the size limit while streaming.
    body = await request.body()
    if media_type == JSON_TYPE:
        return _decode_json(body)
    if media_type == URLENCODED_TYPE:
        return _collect_form(_decode_urlencoded(body))
    return _collect_form(_decode_multipart(body, options.get(b"boundary")))


def _decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise APIError(
            400,
            f"{source} is not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}",
        ) from error


def _decode_json(body: bytes) -> dict[str, Any]:
    text = _decode_utf8(body, "request body")
    if not text.strip():
        raise APIError(400, 'request body is empty; send a JSON object such as {"text": "..."}')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise APIError(
            400,
            f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from error
    if not isinstance(data, dict):
        raise APIError(422, f"request body must be a JSON object, got a JSON {type(data).__name__}")
    return data


def _decode_urlencoded(body: bytes) -> list[tuple[str, str]]:
    # curl -d sends UTF-8 bytes unescaped, browsers percent-encode them: accept both,
    # and reject invalid UTF-8 in either.
    text = _decode_utf8(body, "request body")
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as error:
        message = f"form field is not valid UTF-8 after percent-decoding: {error}"
        raise APIError(400, message) from error
    except ValueError as error:
        raise APIError(400, f"malformed form body: {error}") from error


def _decode_multipart(body: bytes, boundary: bytes | None) -> list[tuple[str, str]]:
    if not boundary:
        raise APIError(400, "multipart/form-data content type is missing its boundary parameter")

    parts = _MultipartCollector()
    parser = MultipartParser(boundary, callbacks=parts.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise APIError(400, f"malformed multipart body: {error}") from error

    fields = []
    for headers, data in parts.parts:
        disposition, params = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise APIError(400, "malformed multipart body: a part has no form-data name")
        name = _decode_utf8(params[b"name"], "multipart field name")
        if b"filename" in params:
            raise APIError(422, f"{name}: file uploads are not accepted; send the text as a field")
        fields.append((name, _decode_utf8(data, f"multipart field {name}")))
    return fields


class _MultipartCollector:
    """Callbacks for python-multipart's MultipartParser that keep each part in memory."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[bytes, bytes], bytes]] = []
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._data = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def _on_part_end(self) -> None:
        self.parts.append((self._headers, bytes(self._data)))


def _collect_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turn form pairs into request fields: list fields collect repeats, others may not repeat."""
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name == "texts":
            fields.setdefault(name, []).append(value)
        elif name not in fields:
            fields[name] = value
        elif name in _LIST_FIELDS:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            raise APIError(422, f"{name}: field is given more than once")
    return fields
