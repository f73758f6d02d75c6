"""Request and response bodies of the HTTP API.

`TranslateRequest` accepts both the native form (`text` or `texts`) and the
LibreTranslate form (`q`). It checks types and structure only; `service.checks` checks
the texts and options against the limits in the settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SOURCE_LANGUAGE = "hi"
TARGET_LANGUAGE = "en"
AUTO_LANGUAGE = "auto"
TEXT_FORMAT = "text"


class TranslateRequest(BaseModel):
    """Body of POST /translate: exactly one of `text`, `texts` or `q`, plus options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "नमस्ते, आप कैसे हैं?"},
                {"texts": ["नमस्ते।", "आप कैसे हैं?"], "beam_size": 5, "alternatives": 2},
                {"q": "नमस्ते", "source": "hi", "target": "en", "format": "text"},
            ]
        },
    )

    text: str | None = Field(None, description="One text to translate")
    texts: list[str] | None = Field(None, description="Several texts, translated in input order")
    q: str | list[str] | None = Field(
        None, description="LibreTranslate form: one text or a list of texts"
    )
    source: str | None = Field(None, description="Source language: hi or auto (treated as hi)")
    target: str | None = Field(None, description="Target language: en")
    format: str | None = Field(None, description="Text format: only text is supported")
    beam_size: int | None = Field(None, ge=1, description="Beam width; defaults to the server's")
    alternatives: int = Field(0, ge=0, description="Extra translations to return after the best")
    max_length: int | None = Field(
        None, ge=1, description="Maximum target tokens per sentence; defaults to the model's"
    )
    api_key: str | None = Field(None, repr=False, description="API key, if the server needs one")
    return_attention: bool = Field(
        False,
        description=(
            "Also return, for each translated sentence, the cross-attention between its Hindi "
            "and English subword tokens, averaged over the heads of one decoder layer. Only "
            "for the native single-text form (`text`)"
        ),
    )
    attention_layer: int | None = Field(
        None,
        description=(
            "Decoder layer of the attention map, counted from 0; negative values count from "
            "the last layer (-1). Defaults to the last layer. Needs `return_attention`"
        ),
    )

    @field_validator("text", "texts", mode="before")
    @classmethod
    def _reject_null_input(cls, value: Any, info: ValidationInfo) -> Any:
        # A null input field is an error of that field, not a body without input.
        if value is None:
            kind = "a string" if info.field_name == "text" else "a list of strings"
            raise PydanticCustomError("null_input", "must be {kind}", {"kind": kind})
        return value

    @field_validator("q", mode="before")
    @classmethod
    def _check_q_type(cls, value: Any) -> Any:
        # Checked before the union so that a wrong type gives one error, not one per member.
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise PydanticCustomError(
                        "q_type", "must be a string or a list of strings; item {index} is not",
                        {"index": index},
                    )
        elif not isinstance(value, str):
            raise PydanticCustomError("q_type", "must be a string or a list of strings")
        return value

    @model_validator(mode="after")
    def _check_one_input(self) -> TranslateRequest:
        given = [name for name in ("text", "texts", "q") if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "one_input",
                "give exactly one of the fields text, texts or q; got {given}",
                {"given": ", ".join(given) or "none"},
            )
        return self

    @property
    def is_libretranslate(self) -> bool:
        """Whether the request uses the LibreTranslate form and expects its response shape."""
        return self.q is not None

    @property
    def input_field(self) -> str:
        """Name of the field that contains the texts: text, texts or q."""
        for name in ("text", "texts"):
            if getattr(self, name) is not None:
                return name
        return "q"

    @property
    def input_texts(self) -> list[str]:
        """The texts to translate, in request order."""
        value = getattr(self, self.input_field)
        return [value] if isinstance(value, str) else list(value)

    @property
    def is_single(self) -> bool:
        """Whether the request contains one text as a string (not a list)."""
        return isinstance(self.text, str) or isinstance(self.q, str)


class SentenceAttention(BaseModel):
    """Cross-attention of one translated sentence: target tokens × source tokens."""

    source: str = Field(description="The Hindi sentence as the service segmented it")
    translation: str = Field(description="Its English translation")
    layer: int = Field(description="Decoder layer of the weights, counted from 0")
    source_tokens: list[str] = Field(
        description="Hindi subword tokens (SentencePiece pieces, ▁ starts a word); the last is "
        "the end-of-sentence token </s>"
    )
    target_tokens: list[str] = Field(
        description="English subword tokens the model produced; the last is </s>"
    )
    weights: list[list[float]] = Field(
        description="weights[i][j]: attention of target token i to source token j, averaged "
        "over the layer's heads. One row per target token, one column per source token; each "
        "row sums to 1"
    )


class TranslationResponse(BaseModel):
    """Translation of a request with `text`."""

    translation: str
    score: float = Field(
        description="Mean over the sentences of the length-penalized log-probability"
    )
    alternatives: list[str] | None = Field(
        None, description="Next-best translations, best first; present when requested"
    )
    alternative_scores: list[float] | None = Field(
        None, description="Score of each alternative, on the same scale as `score`"
    )
    flags: list[str] = Field(
        default_factory=list,
        description="Warnings about this translation: not_hindi, split, untranslated, "
        "repetition, truncated (see nmt.quality.FLAGS)",
    )
    time_ms: float = Field(description="Time spent translating the request, in milliseconds")
    attention: list[SentenceAttention] | None = Field(
        None, description="One attention map per translated sentence; present with return_attention"
    )


class TranslationsResponse(BaseModel):
    """Translations of a request with `texts`, in input order."""

    translations: list[str]
    scores: list[float]
    alternatives: list[list[str]] | None = None
    alternative_scores: list[list[float]] | None = Field(
        None, description="Score of each alternative of each text; present with alternatives"
    )
    flags: list[list[str]] = Field(
        default_factory=list, description="Warnings about each translation, in input order"
    )
    time_ms: float


class LibreTranslateResponse(BaseModel):
    """LibreTranslate-compatible response to a request with `q`."""

    translatedText: str | list[str]  # noqa: N815 - name fixed by the LibreTranslate API
    alternatives: list[str] | list[list[str]] | None = None


class Language(BaseModel):
    """One source language and the target languages it can be translated into."""

    code: str
    name: str
    targets: list[str]


class LimitsResponse(BaseModel):
    """Limits and defaults that the server applies to POST /translate."""

    max_text_chars: int = Field(description="Maximum characters (code points) in one text")
    max_texts: int = Field(description="Maximum texts in one request")
    max_body_bytes: int = Field(description="Maximum request body in bytes")
    default_beam_size: int = Field(description="Beam size used when a request sets none")
    max_beam_size: int = Field(description="Maximum beam_size a request may set")
    max_alternatives: int = Field(description="Maximum alternatives a request may ask for")
    max_output_tokens: int = Field(description="Maximum max_length a request may set, in tokens")
    max_pending_sentences: int = Field(
        description="Maximum sentences waiting for translation; a request with more gets 422"
    )
    decoder_layers: int | None = Field(
        None,
        description="Decoder layers of the loaded model, the range of attention_layer; null while "
        "the model is loading or when the server's translator returns no attention",
    )


class HealthResponse(BaseModel):
    """Liveness of the process."""

    status: str = "ok"


class ReadyResponse(BaseModel):
    """Readiness of the model."""

    status: str = Field(description="loading, ready or failed")
    model_dir: str | None = None
    engine: str | None = Field(None, description="Inference engine: native or ctranslate2")
    compute_type: str | None = Field(
        None, description="Compute type that the engine was configured with, e.g. float32 or int8"
    )
    error: str | None = None


class ErrorDetail(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: str
    request_id: str
    details: list[ErrorDetail] | None = None
