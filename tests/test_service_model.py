"""Tests of the service with a real (tiny, random) model loaded from a model directory."""

from __future__ import annotations

import argparse
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cli import EXIT_USAGE, add_serve_arguments, run_serve
from service.runtime import ModelStatus
from service.settings import Settings

_LOAD_TIMEOUT_S = 60


@pytest.fixture
def model_client(tiny_model_dir, tmp_path) -> TestClient:
    """A TestClient whose app loads the tiny model in its lifespan, waited for until ready."""
    settings = Settings(model_dir=tiny_model_dir, batch_window_ms=1, torch_threads=1)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime
        deadline = time.monotonic() + _LOAD_TIMEOUT_S
        while runtime.status is ModelStatus.LOADING and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/ready").status_code == 200, client.get("/ready").json()
        yield client


def test_model_translates_hindi(model_client: TestClient) -> None:
    response = model_client.post("/translate", json={"text": "नमस्ते, आप कैसे हैं?"})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["translation"], str)
    assert body["score"] <= 0


def test_model_batched_equals_single(model_client: TestClient) -> None:
    texts = ["मैं घर जा रहा हूँ।", "यह किताब बहुत अच्छी है। आज मौसम साफ़ है।", "पानी"]
    batched = model_client.post("/translate", json={"texts": texts, "beam_size": 2})
    assert batched.status_code == 200
    single = [
        model_client.post("/translate", json={"text": text, "beam_size": 2}).json()["translation"]
        for text in texts
    ]
    assert batched.json()["translations"] == single


def test_model_alternatives(model_client: TestClient) -> None:
    response = model_client.post(
        "/translate", json={"q": "भारत की राजधानी नई दिल्ली है।", "alternatives": 2, "source": "hi"}
    )
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["translatedText"], str)
    assert len(body["alternatives"]) <= 2


def test_model_keeps_blank_lines(model_client: TestClient) -> None:
    response = model_client.post("/translate", json={"text": "पहला।\n\nदूसरा।\n"})
    translation = response.json()["translation"]
    assert translation.count("\n") == 3
    assert "\n\n" in translation
    assert translation.endswith("\n")


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_serve_missing_model_exit_2(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "absent"
    assert run_serve(_serve_args("--model", str(missing))) == EXIT_USAGE
    assert f"model directory {missing} does not exist" in caplog.text


def test_serve_incomplete_model_exit_2(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert run_serve(_serve_args("--model", str(tmp_path))) == EXIT_USAGE
    assert "is missing model.safetensors, tokenizer.model, metadata.json" in caplog.text


@pytest.mark.parametrize(("metadata", "message"), [
    ('{"search": {"beta": -0.5}}',
     'invalid "search" setting: beta must be a finite number of at least 0, got -0.5'),
    ('{"search": ', "is not valid UTF-8 JSON: Expecting value"),
    ("[4]", "must contain a JSON object, got list"),
])
def test_serve_invalid_metadata_exit_2(tiny_model_dir, tmp_path, metadata: str, message: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "metadata.json").write_text(metadata)
    assert run_serve(_serve_args("--model", str(model_dir))) == EXIT_USAGE
    assert f"{model_dir / 'metadata.json'}" in caplog.text
    assert message in caplog.text


def test_serve_invalid_port_exit_2(tiny_model_dir) -> None:
    assert run_serve(_serve_args("--model", str(tiny_model_dir), "--port", "0")) == EXIT_USAGE
