"""Tests of the HTTP service's routes with a fake translator (see FakeTranslator in conftest)."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.runtime import ModelStatus


def test_translate_text(service_client: TestClient) -> None:
    response = service_client.post("/translate", json={"text": "नमस्ते, आप कैसे हैं?"})
    assert response.status_code == 200
    body = response.json()
    assert body["translation"] == "EN(नमस्ते, आप कैसे हैं?)"
    assert isinstance(body["score"], float)
    assert body["time_ms"] >= 0
    assert "alternatives" not in body


def test_translate_texts_keeps_order(service_client: TestClient) -> None:
    texts = ["पहला।", "दूसरा वाक्य।", "तीसरा"]
    response = service_client.post("/translate", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["translations"] == [f"EN({text})" for text in texts]
    assert len(body["scores"]) == 3


def test_paragraphs_one_batch_layout_kept(service_client: TestClient, fake_translator) -> None:
    text = "पहला वाक्य। दूसरा वाक्य?\n\nनया अनुच्छेद।\n1. सूची\n"
    response = service_client.post("/translate", json={"text": text})
    assert response.status_code == 200
    assert response.json()["translation"] == (
        "EN(पहला वाक्य।) EN(दूसरा वाक्य?)\n\nEN(नया अनुच्छेद।)\n1. EN(सूची)\n"
    )
    assert len(fake_translator.calls) == 1
    assert sorted(fake_translator.calls[0][0]) == sorted(
        ["पहला वाक्य।", "दूसरा वाक्य?", "नया अनुच्छेद।", "सूची"]
    )


def test_untranslatable_text_skips_model(service_client: TestClient, fake_translator) -> None:
    response = service_client.post("/translate", json={"text": "12.5 %"})
    assert response.status_code == 200
    assert response.json()["translation"] == "12.5 %"
    assert fake_translator.calls == []


def test_alternatives_and_beam_passed(service_client: TestClient, fake_translator) -> None:
    response = service_client.post(
        "/translate", json={"text": "नमस्ते", "alternatives": 2, "beam_size": 5, "max_length": 20}
    )
    assert response.status_code == 200
    assert response.json()["alternatives"] == ["EN1(नमस्ते)", "EN2(नमस्ते)"]
    assert fake_translator.calls == [(["नमस्ते"], 5, 3, 20)]


def test_default_beam_widened_for_alternatives(service_settings, fake_translator) -> None:
    service_settings.default_beam_size = 2
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post("/translate", json={"text": "नमस्ते", "alternatives": 3})
    assert response.status_code == 200
    assert fake_translator.calls == [(["नमस्ते"], 4, 4, None)]


def test_multi_sentence_alternatives(service_client: TestClient) -> None:
    response = service_client.post("/translate", json={"texts": ["एक। दो।"], "alternatives": 1})
    assert response.status_code == 200
    assert response.json()["alternatives"] == [["EN1(एक।) EN1(दो।)"]]


def test_libretranslate_json_single(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate", json={"q": "नमस्ते", "source": "hi", "target": "en", "format": "text"}
    )
    assert response.status_code == 200
    assert response.json() == {"translatedText": "EN(नमस्ते)"}


def test_libretranslate_json_list(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate", json={"q": ["एक", "दो"], "source": "auto", "target": "en", "alternatives": 1}
    )
    assert response.status_code == 200
    assert response.json() == {
        "translatedText": ["EN(एक)", "EN(दो)"],
        "alternatives": [["EN1(एक)"], ["EN1(दो)"]],
    }


def test_libretranslate_urlencoded_form(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate",
        data={"q": "नमस्ते", "source": "hi", "target": "en", "alternatives": "2"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "translatedText": "EN(नमस्ते)",
        "alternatives": ["EN1(नमस्ते)", "EN2(नमस्ते)"],
    }


def test_libretranslate_raw_utf8_form(service_client: TestClient) -> None:
    # `curl -d 'q=नमस्ते'` sends the UTF-8 bytes without percent-encoding.
    response = service_client.post(
        "/translate",
        content="q=नमस्ते&source=hi&target=en".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json() == {"translatedText": "EN(नमस्ते)"}


def test_form_repeated_q_is_list(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate",
        content=b"q=%E0%A4%8F%E0%A4%95&q=two&source=hi",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json() == {"translatedText": ["EN(एक)", "EN(two)"]}


def test_libretranslate_multipart_form(service_client: TestClient) -> None:
    response = service_client.post(
        "/translate",
        files={"q": (None, "नमस्ते"), "source": (None, "hi"), "target": (None, "en")},
    )
    assert response.status_code == 200
    assert response.json() == {"translatedText": "EN(नमस्ते)"}


def test_native_fields_in_form(service_client: TestClient) -> None:
    response = service_client.post("/translate", data={"texts": ["एक", "दो"], "beam_size": "2"})
    assert response.status_code == 200
    assert response.json()["translations"] == ["EN(एक)", "EN(दो)"]


def test_languages(service_client: TestClient) -> None:
    response = service_client.get("/languages")
    assert response.status_code == 200
    assert response.json() == [{"code": "hi", "name": "Hindi", "targets": ["en"]}]


def test_health_and_ready(service_client: TestClient) -> None:
    assert service_client.get("/health").json() == {"status": "ok"}
    ready = service_client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_head_health_and_ready(service_client: TestClient, path: str) -> None:
    response = service_client.head(path)

    assert response.status_code == 200
    assert response.content == b""
    assert "head" not in service_client.get("/openapi.json").json()["paths"][path]


def test_ready_503_while_loading(service_settings, monkeypatch) -> None:
    release = threading.Event()

    def slow_load(*args, **kwargs):
        release.wait(10)
        raise RuntimeError("load released by the test")

    monkeypatch.setattr("service.runtime.load_translator", slow_load)
    with TestClient(create_app(service_settings)) as client:
        try:
            assert client.get("/health").status_code == 200
            ready = client.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["status"] == ModelStatus.LOADING.value
            translate = client.post("/translate", json={"text": "नमस्ते"})
            assert translate.status_code == 503
            assert "loading" in translate.json()["error"]
        finally:
            release.set()


def test_ready_503_after_failed_load(service_settings) -> None:
    # service_settings points at a model directory that does not exist.
    with TestClient(create_app(service_settings)) as client:
        runtime = client.app.state.runtime
        for _ in range(200):
            if runtime.status is not ModelStatus.LOADING:
                break
            threading.Event().wait(0.01)
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert client.head("/ready").status_code == 503
        translate = client.post("/translate", json={"text": "नमस्ते"})
        assert translate.status_code == 503
        assert "failed to load" in translate.json()["error"]


def test_metrics_label_fastapi_pages(service_client: TestClient) -> None:
    service_client.get("/docs")
    service_client.get("/no-such-page")
    text = service_client.get("/metrics").text
    assert 'nmt_http_requests_total{method="GET",route="/docs",status="200"} 1.0' in text
    assert 'nmt_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


def test_metrics_group_unknown_methods(service_client: TestClient) -> None:
    for method in ("M1", "M2", "BREW"):
        service_client.request(method, "/no-such-page")
    text = service_client.get("/metrics").text
    assert 'method="other",route="unmatched"' in text
    assert 'method="M1"' not in text
    assert 'method="BREW"' not in text


def test_metrics(service_client: TestClient) -> None:
    service_client.post("/translate", json={"texts": ["एक।", "दो।"]})
    service_client.post("/translate", json={"text": ""})
    text = service_client.get("/metrics").text
    assert 'nmt_http_requests_total{method="POST",route="/translate",status="200"} 1.0' in text
    assert 'nmt_http_requests_total{method="POST",route="/translate",status="422"} 1.0' in text
    assert 'nmt_http_errors_total{route="/translate",status_class="4xx"} 1.0' in text
    assert "nmt_http_request_duration_seconds_bucket" in text
    assert "nmt_batch_sentences_sum 2.0" in text
    assert "nmt_source_tokens_total 2.0" in text
    assert "nmt_model_ready 1.0" in text


def test_request_id_echoed(service_client: TestClient) -> None:
    response = service_client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("incoming", [None, "bad id with spaces", "x" * 200])
def test_request_id_generated(service_client: TestClient, incoming: str | None) -> None:
    headers = {"X-Request-ID": incoming} if incoming else {}
    response = service_client.post("/translate", json={"text": ""}, headers=headers)
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32
    assert response.json()["request_id"] == request_id


def test_access_log_line(service_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="service.middleware")
    service_client.post(
        "/translate", json={"texts": ["एक", "दो"]}, headers={"X-Request-ID": "log-1"}
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "service.middleware"]
    assert len(lines) == 1
    assert "request_id=log-1" in lines[0]
    assert "status=200" in lines[0]
    assert "texts=2" in lines[0]
    assert "chars=4" in lines[0]
    assert "latency_ms=" in lines[0]


def test_openapi_docs(service_client: TestClient) -> None:
    schema = service_client.get("/openapi.json").json()
    content = schema["paths"]["/translate"]["post"]["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    assert service_client.get("/docs").status_code == 200
