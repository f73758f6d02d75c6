"""Decoding of request bodies: JSON, URL-encoded forms and multipart forms.

Bodies are decoded here rather than by Starlette's form parser because that parser
replaces bytes that are not UTF-8 instead of rejecting them. Every failure raises an
APIError whose message states what is wrong with the body.

A JSON body keeps its JSON types, so `TranslateRequest` validates it strictly. Form
fields are all strings, so `"4"` must still become the integer 4 there.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import APIError, field_error, truncate

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
URLENCODED_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
SUPPORTED_TYPES = (JSON_TYPE, URLENCODED_TYPE, MULTIPART_TYPE)
# Digits of the longest JSON integer accepted: far above any limit, far below int()'s 4300.
MAX_JSON_INTEGER_DIGITS = 100

# Form fields that become a list when repeated (`q=a&q=b`) or, for `texts`, always.
_LIST_FIELDS = ("q", "texts")


@dataclass(frozen=True)
class RequestBody:
    """Fields of a decoded request body and the media type of the body."""

    fields: dict[str, Any]
    media_type: str

    @property
    def is_json(self) -> bool:
        """Whether the fields keep JSON types; form fields are strings."""
        return self.media_type == JSON_TYPE


async def read_body(request: Request) -> RequestBody:
    """Read the request body and return its fields, whatever the content type."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    media_type = content_type.decode("latin-1").lower()
    if media_type not in SUPPORTED_TYPES:
        problem = "missing Content-Type header"
        if media_type:
            problem = f"unsupported content type {media_type}"
        raise APIError(415, f"{problem}; send {', '.join(SUPPORTED_TYPES)}")
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        # RFC 9110 (section 15.5.16) calls for 415 when the server cannot read a content coding,
        # with Accept-Encoding listing the codings it can read.
        raise APIError(415, f"unsupported Content-Encoding {truncate(encoding)}; send the body "
                            f"uncompressed", headers={"Accept-Encoding": "identity"})

    # The request-context middleware rejects bodies over the size limit while streaming.
    body = await request.body()
    if media_type == JSON_TYPE:
        fields = _decode_json(body)
    elif media_type == URLENCODED_TYPE:
        fields = _collect_form(_decode_urlencoded(body))
    else:
        fields = _collect_form(_decode_multipart(body, options.get(b"boundary")))
    return RequestBody(fields, media_type)


def _decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise APIError(
            400,
            f"{source} is not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}",
        ) from error


def _decode_json(body: bytes) -> dict[str, Any]:
    # RFC 8259 (section 8.1) lets a parser ignore a byte order mark, which some clients send.
    text = _decode_utf8(body, "request body").removeprefix("\ufeff")
    if not text.strip():
        raise APIError(400, 'request body is empty; send a JSON object such as {"text": "..."}')
    try:
        data = json.loads(text, object_pairs_hook=_reject_repeated_keys, parse_int=_parse_int,
                          parse_float=_parse_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise APIError(
            400,
            f"malformed JSON: {error.msg} (line {error.lineno}, column {error.colno})",
        ) from error
    except RecursionError as error:  # json.loads recurses once per level of nesting
        raise APIError(400, "malformed JSON: arrays or objects are nested too deeply") from error
    if not isinstance(data, dict):
        message = f"must be a JSON object, got {_json_type_name(data)}"
        raise field_error("body", message, f"request body {message}")
    return data


def _parse_int(digits: str) -> int:
    """Parse a JSON integer, rejecting one too long to be any field's value.

    Without this check, int() raises a plain ValueError above 4300 digits (the default
    sys.get_int_max_str_digits() of Python 3.11 and later).
    """
    count = len(digits.lstrip("-"))
    if count > MAX_JSON_INTEGER_DIGITS:
        raise APIError(400, f"malformed JSON: an integer has {count} digits, more than the "
                            f"{MAX_JSON_INTEGER_DIGITS} accepted")
    return int(digits)


def _parse_float(text: str) -> float:
    """Parse a JSON number with a fraction or exponent, rejecting one beyond float's range."""
    value = float(text)
    if math.isinf(value):
        raise APIError(400, f"malformed JSON: the number {truncate(text)} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    """Reject NaN, Infinity and -Infinity, which Python's json accepts but JSON does not."""
    raise APIError(400, f"malformed JSON: {name} is not a JSON value")


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, rejecting a key given twice: json.loads would keep only the last."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise field_error(truncate(key), "field is given more than once")
        data[key] = value
    return data


def _json_type_name(value: Any) -> str:
    """Return the JSON name of the type of a value that json.loads returned, with its article."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int, because bool is a subclass of int
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _decode_urlencoded(body: bytes) -> list[tuple[str, str]]:
    # curl -d sends UTF-8 bytes unescaped, browsers percent-encode them: accept both,
    # and reject invalid UTF-8 in either.
    text = _decode_utf8(body, "request body")
    try:
        # surrogateescape keeps each invalid byte as a lone surrogate, found below by field.
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                          errors="surrogateescape")
    except ValueError as error:
        raise APIError(400, f"malformed form body: {error}") from error
    for name, value in pairs:
        for part, data in (("name", name), ("value", value)):
            invalid = next((c for c in data if "\udc80" <= c <= "\udcff"), None)
            if invalid is not None:
                field = truncate(name.encode("utf-8", "replace").decode("utf-8"))
                raise APIError(400, f"form field {field}: its {part} is not valid UTF-8 after "
                                    f"percent-decoding (byte 0x{ord(invalid) - 0xDC00:02x})")
    return pairs


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
            message = "file uploads are not accepted; send the text as a field"
            raise field_error(truncate(name), message)
        fields.append((name, _decode_utf8(data, f"multipart field {truncate(name)}")))
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
            raise field_error(truncate(name), "field is given more than once")
    return fields
