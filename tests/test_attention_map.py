"""Tests of `nmt.attention_map` and of the return_attention option of POST /translate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from nmt.attention_map import AttentionMap, cross_attention
from nmt.normalize import normalize_text
from nmt.protect import protect
from nmt.translator import Translator
from service.app import create_app
from service.settings import Settings

ROW_SUM_TOLERANCE = 1e-4
EOS_PIECE = "</s>"
SOURCE = "भारत की राजधानी नई दिल्ली है।"
TWO_SENTENCES = "भारत की राजधानी नई दिल्ली है। आज मौसम साफ़ है।"


@pytest.fixture(scope="module")
def translator(tiny_model_dir: Path) -> Translator:
    return Translator.load(tiny_model_dir)


@pytest.fixture(scope="module")
def model_client(tiny_model_dir: Path, translator: Translator) -> Iterator[TestClient]:
    settings = Settings(model_dir=tiny_model_dir, max_text_chars=300, batch_window_ms=1)
    with TestClient(create_app(settings, translator)) as client:
        yield client


def assert_well_formed(attention: AttentionMap) -> None:
    """Check the shape (target × source), the row sums and the eos labels of a map."""
    assert len(attention.weights) == len(attention.target_tokens)
    for row in attention.weights:
        assert len(row) == len(attention.source_tokens)
        assert min(row) >= 0.0
        assert abs(sum(row) - 1.0) < ROW_SUM_TOLERANCE
    assert attention.source_tokens[-1] == EOS_PIECE
    assert attention.target_tokens[-1] == EOS_PIECE


# --- nmt.attention_map ---


def test_map_of_translation(translator: Translator) -> None:
    translation = translator.translate([SOURCE], beam_size=2)[0].text
    attention = cross_attention(translator, SOURCE, translation)

    assert_well_formed(attention)
    source_ids = translator.tokenizer.encode(protect(normalize_text(SOURCE)).text, normalize=False)
    assert len(attention.source_tokens) == len(source_ids) + 1
    target_ids = translator.tokenizer.encode(translation)
    assert len(attention.target_tokens) == len(target_ids) + 1


def test_map_of_fixed_target(translator: Translator) -> None:
    attention = cross_attention(translator, SOURCE, "The capital of India is New Delhi.")

    assert_well_formed(attention)
    assert len(attention.target_tokens) > 2


def test_map_equals_incremental_decoding(translator: Translator) -> None:
    """Teacher forcing gives the rows that one-step-at-a-time decoding gives."""
    target = "The capital of India is New Delhi."
    attention = cross_attention(translator, SOURCE, target)

    tokenizer, model = translator.tokenizer, translator.model
    source_ids = tokenizer.encode(protect(normalize_text(SOURCE)).text, normalize=False)
    source = torch.tensor([source_ids + [tokenizer.eos_id]])
    target_input = [tokenizer.bos_id] + tokenizer.encode(target)
    with torch.inference_mode():
        memory, source_mask = model.encode(source)
        cache = model.start_cache(memory, source_mask)
        for step, token in enumerate(target_input):
            _, weights = model.decode(torch.tensor([[token]]), cache, attention_layer=0)
            row = weights[0, :, 0].mean(dim=0).tolist()  # (S,)
            assert row == pytest.approx(attention.weights[step], abs=1e-5)


def test_map_empty_target(translator: Translator) -> None:
    attention = cross_attention(translator, SOURCE, "")

    assert_well_formed(attention)
    assert attention.target_tokens == [EOS_PIECE]


def test_map_labels_protected_spans(translator: Translator) -> None:
    """A number becomes a placeholder for the model; its label shows the number."""
    attention = cross_attention(translator, "2024 में 15 लोग आए।", "15 people came in 2024.")

    assert_well_formed(attention)
    assert "2024" in "".join(attention.source_tokens)
    assert "2024" in "".join(attention.target_tokens)
    assert not any("\uff5f" in token for token in attention.source_tokens + attention.target_tokens)


@pytest.mark.parametrize("layer", [0, -1])
def test_map_layer_in_range(translator: Translator, layer: int) -> None:
    assert_well_formed(cross_attention(translator, SOURCE, "Delhi", layer=layer))


@pytest.mark.parametrize("layer", [1, -2, 10])
def test_map_layer_out_of_range(translator: Translator, layer: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        cross_attention(translator, SOURCE, "Delhi", layer=layer)


# --- POST /translate with return_attention ---


def test_api_returns_map_per_sentence(model_client: TestClient) -> None:
    response = model_client.post(
        "/translate", json={"text": TWO_SENTENCES, "return_attention": True}
    )

    assert response.status_code == 200, response.json()
    maps = response.json()["attention"]
    assert [item["source"] for item in maps] == ["भारत की राजधानी नई दिल्ली है।", "आज मौसम साफ़ है।"]
    for item in maps:
        assert item["layer"] == 0  # the tiny model's only, and last, decoder layer
        assert_well_formed(
            AttentionMap(item["source_tokens"], item["target_tokens"], item["weights"])
        )


def test_api_no_map_for_untranslated_sentence(model_client: TestClient) -> None:
    response = model_client.post(
        "/translate", json={"text": "Hello only English. आज मौसम साफ़ है।", "return_attention": True}
    )

    assert response.status_code == 200, response.json()
    assert [item["source"] for item in response.json()["attention"]] == ["आज मौसम साफ़ है।"]


def test_api_map_matches_module(model_client: TestClient, translator: Translator) -> None:
    body = model_client.post(
        "/translate", json={"text": SOURCE, "return_attention": True, "attention_layer": -1}
    ).json()

    [item] = body["attention"]
    assert item["translation"] == body["translation"]
    expected = cross_attention(translator, SOURCE, body["translation"])
    assert item["source_tokens"] == expected.source_tokens
    assert item["target_tokens"] == expected.target_tokens
    assert len(item["weights"]) == len(expected.weights)
    for row, expected_row in zip(item["weights"], expected.weights, strict=True):
        assert row == pytest.approx(expected_row)


def test_api_no_map_by_default(model_client: TestClient) -> None:
    response = model_client.post("/translate", json={"text": SOURCE})

    assert response.status_code == 200
    assert "attention" not in response.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"texts": [SOURCE], "return_attention": True}, "return_attention"),
        ({"q": SOURCE, "return_attention": True}, "return_attention"),
        ({"text": SOURCE, "return_attention": True, "attention_layer": 1}, "attention_layer"),
        ({"text": SOURCE, "return_attention": True, "attention_layer": -2}, "attention_layer"),
        ({"text": SOURCE, "attention_layer": 0}, "attention_layer"),
    ],
)
def test_api_rejects_attention_request(model_client: TestClient, body: dict, field: str) -> None:
    response = model_client.post("/translate", json=body)

    assert response.status_code == 422
    assert [detail["field"] for detail in response.json()["details"]] == [field]


def test_api_without_model_weights(service_client: TestClient) -> None:
    """A translator without a model (the fake one) cannot return attention."""
    response = service_client.post("/translate", json={"text": SOURCE, "return_attention": True})

    assert response.status_code == 501
    assert "return_attention" in response.json()["error"]


def test_api_alternative_scores(model_client: TestClient) -> None:
    body = model_client.post(
        "/translate", json={"text": SOURCE, "alternatives": 1, "beam_size": 2}
    ).json()

    assert len(body["alternative_scores"]) == len(body["alternatives"])
    assert all(score <= body["score"] for score in body["alternative_scores"])


def test_limits_report_settings_and_layers(model_client: TestClient) -> None:
    response = model_client.get("/limits")

    assert response.status_code == 200
    body = response.json()
    assert body["max_text_chars"] == 300
    assert body["decoder_layers"] == 1


def test_limits_without_model_weights(service_client: TestClient, service_settings) -> None:
    body = service_client.get("/limits").json()

    assert body["max_text_chars"] == service_settings.max_text_chars
    assert body["max_beam_size"] == service_settings.max_beam_size
    assert body["max_pending_sentences"] == service_settings.max_pending_sentences
    assert body["decoder_layers"] is None


def test_openapi_documents_attention(model_client: TestClient) -> None:
    schema = model_client.get("/openapi.json").json()

    request_body = schema["paths"]["/translate"]["post"]["requestBody"]["content"]
    properties = request_body["application/json"]["schema"]["properties"]
    assert "cross-attention" in properties["return_attention"]["description"]
    assert "last layer" in properties["attention_layer"]["description"]
    weights = schema["components"]["schemas"]["SentenceAttention"]["properties"]["weights"]
    assert "sums to 1" in weights["description"]
    assert "/limits" in schema["paths"]
