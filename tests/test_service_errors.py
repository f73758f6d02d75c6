"""Tests that bad input gets a 4xx JSON error naming the field or limit, never a 500 or a hang.

The limits come from the `service_settings` fixture: 200 characters per text, 4 texts,
4096 body bytes, beam 8, 3 alternatives, max_length 100.
"""

from __future__ import annotations

import gzip
import logging
import re

import pytest
from fastapi.testclient import TestClient

from service.app import create_app

INVALID_BODIES = [
    # (JSON body, field named in the error, words the message must contain)
    ({"text": ""}, "text", "empty"),
    ({"text": "   \n\t"}, "text", "empty"),
    ({"texts": ["ठीक", " "]}, "texts[1]", "empty"),
    ({"texts": []}, "texts", "at least one"),
    ({"q": ""}, "q", "empty"),
    ({"q": ["ठीक", ""]}, "q[1]", "empty"),
    ({}, "body", "exactly one of the fields text, texts or q"),
    ({"text": "एक", "q": "दो"}, "body", "exactly one"),
    ({"text": "क" * 201}, "text", "201 characters are over the limit of 200"),
    ({"texts": ["क" * 201]}, "texts[0]", "over the limit of 200"),
    ({"texts": ["क"] * 5}, "texts", "5 texts are over the limit of 4"),
    ({"q": ["क"] * 5}, "q", "over the limit of 4"),
    ({"text": "क", "beam_size": 9}, "beam_size", "9 is over the limit of 8"),
    ({"text": "क", "beam_size": 0}, "beam_size", "greater than or equal to 1"),
    ({"text": "क", "alternatives": 4}, "alternatives", "4 is over the limit of 3"),
    ({"text": "क", "alternatives": -1}, "alternatives", "greater than or equal to 0"),
    ({"text": "क", "max_length": 101}, "max_length", "101 is over the limit of 100"),
    ({"text": "क", "beam_size": 2, "alternatives": 2}, "beam_size", "smaller than alternatives"),
    ({"text": "क", "beam": 4}, "beam", "unknown field"),
    ({"text": 5}, "text", "valid string"),
    ({"texts": "क"}, "texts", "valid list"),
    ({"q": 5}, "q", "string or a list of strings"),
    ({"text": "क", "beam_size": "four"}, "beam_size", "valid integer"),
    # JSON values must have the field's JSON type: no conversion from bool or string.
    ({"text": "क", "beam_size": True}, "beam_size", "valid integer, got true"),
    ({"text": "क", "beam_size": "4"}, "beam_size", 'valid integer, got "4"'),
    ({"text": "क", "alternatives": "2"}, "alternatives", 'valid integer, got "2"'),
    ({"text": "क", "max_length": 10.5}, "max_length", "valid integer, got 10.5"),
    ({"text": "क", "return_attention": "yes"}, "return_attention", 'valid boolean, got "yes"'),
    ({"text": "क", "return_attention": 1}, "return_attention", "valid boolean, got 1"),
    ({"text": "क", "source": 5}, "source", "valid string, got 5"),
    ({"texts": ["क", 5]}, "texts[1]", "valid string, got 5"),
    ({"texts": "क"}, "texts", 'valid list, got "क"'),
    ({"text": None}, "text", "text: must be a string, got null"),
    ({"texts": None}, "texts", "texts: must be a list of strings, got null"),
    ({"q": None}, "q", "q: must be a string or a list of strings, got null"),
    ({"q": ["क", None]}, "q", 'q: must be a string or a list of strings; item 1 is not, got ["क",'),
]


@pytest.mark.parametrize(("body", "field", "words"), INVALID_BODIES)
def test_invalid_field_422(service_client: TestClient, body, field: str, words: str) -> None:
    response = service_client.post("/translate", json=body)
    assert response.status_code == 422
    error = response.json()
    assert words in error["error"]
    assert field in [detail["field"] for detail in error["details"]]
    assert error["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"q": "क", "source": "fr"}, 400, "source language 'fr' is not supported"),
        ({"q": "क", "target": "de"}, 400, "target language 'de' is not supported"),
        ({"q": "क", "format": "html"}, 400, "format 'html' is not supported"),
        ({"text": "क", "format": "markdown"}, 400, "format 'markdown' is not supported"),
    ],
)
def test_unsupported_language_or_format(service_client: TestClient, fields, status, words) -> None:
    response = service_client.post("/translate", json=fields)
    assert response.status_code == status
    assert words in response.json()["error"]


@pytest.mark.parametrize("source", ["hi", "HI", "auto"])
def test_supported_sources(service_client: TestClient, source: str) -> None:
    response = service_client.post("/translate", json={"q": "क", "source": source})
    assert response.status_code == 200


RAW_BODIES = [
    # (content type, body bytes, status, words in the error)
    ("application/json", b'{"text": ', 400, "malformed JSON"),
    ("application/json", b'{"text": "\xe0\xa4\xae', 400,
     "Unterminated string starting at (line 1, column 10)"),
    ("application/json", b'{"text": "x", "beam_size": NaN}', 400, "NaN is not a JSON value"),
    ("application/json", b'{"text": "x", "beam_size": -Infinity}', 400,
     "-Infinity is not a JSON value"),
    ("application/json", b'{"text": "x", "beam_size": 1e400}', 400,
     "the number 1e400 is out of range"),
    ("application/json", b"", 400, "request body is empty"),
    ("application/json", b'{"text": "\xff\xfe"}', 400, "not valid UTF-8: byte 0xff at offset 10"),
    ("application/x-www-form-urlencoded", b"q=\xff", 400, "not valid UTF-8"),
    ("application/x-www-form-urlencoded", b"q=%FF%FE", 400,
     "form field q: its value is not valid UTF-8 after percent-decoding (byte 0xff)"),
    ("application/x-www-form-urlencoded", b"%FF=1", 400, "its name is not valid UTF-8"),
    # Nesting deeper than json.loads can recurse, and integers longer than int() parses.
    ("application/json", b'{"text": "a", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400,
     "nested too deeply"),
    ("application/json", b'{"text": "a", "beam_size": 1' + b"0" * 200 + b"}", 400,
     "an integer has 201 digits, more than the 100 accepted"),
    ("application/json", b'{"text": "a", "beam_size": -1' + b"0" * 100 + b"}", 400,
     "101 digits"),
    # A UTF-16 surrogate encoded as if it were a character is not valid UTF-8.
    ("application/x-www-form-urlencoded", b"q=%ED%A0%80", 400, "not valid UTF-8"),
    ("application/x-www-form-urlencoded", b"q=\xed\xa0\x80", 400, "not valid UTF-8"),
    ("application/x-www-form-urlencoded", b"q=a&source=hi&source=en", 422, "more than once"),
    ("text/plain", b"text", 415, "unsupported content type text/plain"),
    ("", b'{"text": "ok"}', 415, "missing Content-Type header; send application/json"),
    ("multipart/form-data", b"--x\r\n", 400, "missing its boundary"),
    (
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="q"\r\n\r\n\xff\r\n--xyz--\r\n',
        400,
        "multipart field q is not valid UTF-8",
    ),
    (
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="q"\r\n\r\n\xed\xa0\x80\r\n--xyz--\r\n',
        400,
        "multipart field q is not valid UTF-8",
    ),
    (
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="q"; filename="a.txt"\r\n\r\n'
        b"text\r\n--xyz--\r\n",
        422,
        "file uploads are not accepted",
    ),
]


@pytest.mark.parametrize(("content_type", "body", "status", "words"), RAW_BODIES)
def test_malformed_body(service_client: TestClient, content_type, body, status, words) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = service_client.post("/translate", content=body, headers=headers)
    assert response.status_code == status
    error = response.json()
    assert words in error["error"]
    assert error["request_id"]


@pytest.mark.parametrize(
    ("body", "type_name"),
    [
        (b'["text"]', "an array"),
        (b"null", "null"),
        (b'"x"', "a string"),
        (b"123", "a number"),
        (b"1.5", "a number"),
        (b"true", "a boolean"),
    ],
)
def test_non_object_json_422(service_client: TestClient, body: bytes, type_name: str) -> None:
    response = service_client.post(
        "/translate", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    error = response.json()
    assert error["error"] == f"request body must be a JSON object, got {type_name}"
    assert error["details"] == [
        {"field": "body", "message": f"must be a JSON object, got {type_name}"}
    ]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"q": "क", "target": "x" * 3000}, 400),
        ({"q": "क", "source": "x" * 3000}, 400),
        ({"text": "क", "beam_size": "x" * 3000}, 422),
        ({"text": "क", "x" * 3000: 1}, 422),
    ],
)
def test_long_value_truncated_in_error(service_client: TestClient, fields, status) -> None:
    response = service_client.post("/translate", json=fields)

    assert response.status_code == status
    error = response.json()
    # At most 100 characters, of which the quotes around a JSON string are one.
    assert re.search(r"x{99,100}…", error["error"])
    assert "x" * 101 not in error["error"]
    for detail in error.get("details", []):
        assert "x" * 101 not in detail["field"]
        assert "x" * 101 not in detail["message"]


def test_form_field_types_converted(service_client: TestClient, fake_translator) -> None:
    # Form values are strings by nature, so "4" still means 4 there.
    fields = {"text": "नमस्ते", "beam_size": "4", "alternatives": "1", "return_attention": "false"}
    form = service_client.post("/translate", data=fields)
    multipart = service_client.post(
        "/translate", files={name: (None, value) for name, value in fields.items()}
    )

    assert form.status_code == 200
    assert multipart.status_code == 200
    assert form.json()["alternatives"] == ["EN1(नमस्ते)"]
    assert [call[1:3] for call in fake_translator.calls] == [(4, 2), (4, 2)]


SURROGATE_BODIES = [
    # (JSON body text with escapes, field, code point, position)
    ('{"text": "\\ud800नमस्ते"}', "text", "U+D800", 0),
    ('{"text": "\\ud83d"}', "text", "U+D83D", 0),
    ('{"text": "नमस्ते \\udfff"}', "text", "U+DFFF", 7),
    ('{"q": "नमस्ते \\ud800"}', "q", "U+D800", 7),
    ('{"q": ["ठीक", "\\ude00 दो"]}', "q[1]", "U+DE00", 0),
    ('{"texts": ["नमस्ते \\ud800"]}', "texts[0]", "U+D800", 7),
    ('{"texts": ["ठीक", "ठीक \\ud800\\ud800"]}', "texts[1]", "U+D800", 4),
]


@pytest.mark.parametrize(("body", "field", "code_point", "position"), SURROGATE_BODIES)
def test_lone_surrogate_422(
    service_client: TestClient, fake_translator, body: str, field, code_point, position
) -> None:
    response = service_client.post(
        "/translate", content=body.encode(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    error = response.json()
    words = f"contains an unpaired surrogate code point {code_point} at position {position}"
    assert f"{field}: {words}" in error["error"]
    assert [detail["field"] for detail in error["details"]] == [field]
    assert fake_translator.calls == []


def test_surrogate_pair_translated(service_client: TestClient) -> None:
    body = '{"text": "नमस्ते \\ud83d\\ude00"}'.encode()
    response = service_client.post(
        "/translate", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 200
    assert response.json()["translation"] == "EN(नमस्ते \U0001f600)"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        # pydantic rejects a field name that UTF-8 cannot encode before it looks it up.
        ('{"text": "क", "\\ud800": 1}', 422, "body: Input should be a valid string"),
        ('{"q": "क", "source": "\\ud800"}', 400, "source language '\\ud800' is not supported"),
        ('{"text": "क", "beam_size": "\\ud800"}', 422, 'valid integer, got "\\ud800"'),
    ],
)
def test_surrogate_echoed_escaped(service_client: TestClient, body: str, status, words) -> None:
    response = service_client.post(
        "/translate", content=body.encode(), headers={"content-type": "application/json"}
    )

    assert response.status_code == status
    assert words in response.json()["error"]


def test_body_over_limit_by_length(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "over the limit of 4096 bytes" in response.json()["error"]


def test_body_over_limit_keeps_route_label(service_client: TestClient) -> None:
    service_client.post(
        "/translate", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    metrics = service_client.get("/metrics").text
    assert 'nmt_http_requests_total{method="POST",route="/translate",status="413"} 1.0' in metrics


def test_body_over_limit_streamed(service_client: TestClient) -> None:
    # A generator body is sent chunked, without Content-Length, so only the byte count applies.
    def chunks():
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 1000

    response = service_client.post(
        "/translate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "over the limit of 4096 bytes" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nope", 404), ("GET", "/translate", 405)]
)
def test_unknown_route_json(service_client: TestClient, method, path, status) -> None:
    response = service_client.request(method, path)
    assert response.status_code == status
    assert set(response.json()) == {"error", "request_id"}


def test_error_logged_once(service_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = service_client.post(
        "/translate", json={"text": ""}, headers={"X-Request-ID": "bad-1"}
    )
    assert response.status_code == 422
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert "bad-1" in errors[0].getMessage()
    assert "text" in errors[0].getMessage()


class ExplodingTranslator:
    """A translator whose every call raises, as a bug in the model code would."""

    max_source_tokens = 64

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def translate(self, texts, **options):
        raise RuntimeError("model exploded")


def test_unexpected_error_500(service_settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with TestClient(create_app(service_settings, ExplodingTranslator())) as client:
        response = client.post(
            "/translate", json={"text": "नमस्ते"}, headers={"X-Request-ID": "boom-1"}
        )
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error", "request_id": "boom-1"}
        assert "model exploded" not in response.text

        # The server keeps serving.
        assert client.get("/health").status_code == 200
        assert client.post("/translate", json={"text": "फिर"}).status_code == 500

    failures = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "boom-1" in r.getMessage()
    ]
    assert len(failures) == 1
    assert failures[0].exc_info is not None


def test_wrong_translation_count_500(service_settings) -> None:
    class ShortTranslator(ExplodingTranslator):
        def translate(self, texts, **options):
            return []

    with TestClient(create_app(service_settings, ShortTranslator())) as client:
        response = client.post("/translate", json={"text": "नमस्ते"})
    assert response.status_code == 500


API_KEY_CASES = [
    # (headers, body extra, status)
    ({}, {}, 401),
    ({"X-API-Key": "wrong"}, {}, 403),
    ({}, {"api_key": "wrong"}, 403),
    ({"Authorization": "Bearer secret-2"}, {}, 200),
    ({"X-API-Key": "secret-1"}, {}, 200),
    ({}, {"api_key": "secret-2"}, 200),
    ({"Authorization": "Basic secret-1"}, {}, 401),
]


@pytest.mark.parametrize(("headers", "extra", "status"), API_KEY_CASES)
def test_api_keys(service_settings, fake_translator, headers, extra, status) -> None:
    service_settings.api_keys = " secret-1, secret-2 "
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post("/translate", json={"q": "क", **extra}, headers=headers)
        assert response.status_code == status
        if status != 200:
            assert "API key" in response.json()["error"]
        assert client.get("/health").status_code == 200


def test_api_key_wrong_type_422(service_settings, fake_translator) -> None:
    service_settings.api_keys = "secret-1"
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post("/translate", json={"q": "क", "api_key": 5})
    assert response.status_code == 422
    assert response.json()["error"] == "api_key: Input should be a valid string, got 5"
    assert response.json()["details"] == [
        {"field": "api_key", "message": "Input should be a valid string, got 5"}]


def test_api_key_with_surrogate_403(service_settings, fake_translator) -> None:
    service_settings.api_keys = "secret-1"
    body = '{"q": "क", "api_key": "secret-1\\ud800"}'.encode()
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post(
            "/translate", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 403
    assert "invalid API key" in response.json()["error"]


def test_api_key_in_form(service_settings, fake_translator) -> None:
    service_settings.api_keys = "secret-1"
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post("/translate", data={"q": "क", "api_key": "secret-1"})
    assert response.status_code == 200


def test_repeated_json_key_422(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate", content='{"text": "भारत", "text": "दिल्ली"}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "text: field is given more than once"


@pytest.mark.parametrize("content, content_type", [
    ('{"": 1, "text": "भारत"}'.encode(), "application/json"),
    ("=1&q=भारत".encode(), "application/x-www-form-urlencoded"),
])
def test_empty_field_name_shown_quoted(service_client: TestClient, content: bytes,
                                       content_type: str) -> None:
    response = service_client.post("/translate", content=content,
                                   headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert response.json()["error"].startswith('"": unknown field')


def test_compressed_body_415(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate", content=gzip.compress('{"text": "भारत"}'.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415
    assert response.json()["error"] == (
        "unsupported Content-Encoding gzip; send the body uncompressed")
    assert response.headers["accept-encoding"] == "identity"


def test_json_byte_order_mark_ignored(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate", content='\ufeff{"text": "भारत"}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["translation"]


def test_disconnect_mid_body_not_500(
    service_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes the connection mid-body gets no response and is no server error."""
    caplog.set_level(logging.INFO)
    messages = iter([
        {"type": "http.request", "body": b'{"text": "', "more_body": True},
        {"type": "http.disconnect"},
    ])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/translate", "raw_path": b"/translate", "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100"),
                    (b"x-request-id", b"gone-1")],
    }
    service_client.portal.call(service_client.app, scope, receive, send)

    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    request_lines = [r.getMessage() for r in caplog.records if "gone-1" in r.getMessage()]
    assert any("status=499" in line for line in request_lines)
