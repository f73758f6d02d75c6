"""POST /translate: the native API and the LibreTranslate-compatible form on one route."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from nmt.translator import needs_translation
from service.batcher import DecodeOptions, TooManySentencesError
from service.body import JSON_TYPE, MULTIPART_TYPE, URLENCODED_TYPE, read_body
from service.checks import check_request
from service.deps import check_api_key, get_settings, get_translation_service
from service.errors import APIError, field_error, format_value, truncate, validation_error
from service.schemas import (
    AUTO_LANGUAGE,
    SOURCE_LANGUAGE,
    TARGET_LANGUAGE,
    TEXT_FORMAT,
    ErrorDetail,
    ErrorResponse,
    LibreTranslateResponse,
    SentenceAttention,
    TranslateRequest,
    TranslationResponse,
    TranslationsResponse,
)
from service.settings import Settings
from service.translation import TextResult, TranslationService

logger = logging.getLogger(__name__)

T = TypeVar("T")
# How often a request that waits for its translation checks whether its client is still there.
DISCONNECT_POLL_S = 0.5

router = APIRouter(tags=["translation"])

_REQUEST_SCHEMA = TranslateRequest.model_json_schema()
_ERRORS = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Malformed body, unsupported language or format",
        401: "Missing API key",
        403: "Invalid API key",
        413: "Body over the size limit",
        415: "Unsupported content type",
        422: "Invalid field, wrong JSON type or a limit exceeded",
        501: "Attention maps requested from a translator that returns none",
        503: "Model not loaded yet or server busy",
    }.items()
}


@router.post(
    "/translate",
    response_model=TranslationResponse | TranslationsResponse | LibreTranslateResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media_type: {"schema": _REQUEST_SCHEMA}
                for media_type in (JSON_TYPE, URLENCODED_TYPE, MULTIPART_TYPE)
            },
        }
    },
)
async def translate(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    service: Annotated[TranslationService, Depends(get_translation_service)],
) -> TranslationResponse | TranslationsResponse | LibreTranslateResponse:
    """Translate Hindi text to English.

    Send `text` (one string) for `translation`, `texts` (a list) for `translations`,
    or the LibreTranslate fields `q`, `source`, `target`, `format` for `translatedText`.
    Texts may hold several sentences and paragraphs; the layout is kept. With `text`,
    `return_attention: true` adds each sentence's cross-attention map to the response.
    """
    body = await read_body(request)
    body_key = body.fields.get("api_key")
    if body_key is not None and not isinstance(body_key, str):
        # Checked before the key itself, so a wrong type is not reported as a missing key.
        message = f"Input should be a valid string, got {format_value(body_key)}"
        raise field_error("api_key", message)
    check_api_key(request, body_key, settings)

    try:
        # JSON values must have the field's type; form values are strings and are converted.
        translate_request = TranslateRequest.model_validate(body.fields, strict=body.is_json)
    except ValidationError as error:
        raise validation_error(error) from error
    check_request(translate_request, settings)
    _check_languages(translate_request)
    attention_layer = _attention_layer(translate_request, service)

    texts = translate_request.input_texts
    request.state.text_count = len(texts)
    request.state.char_count = sum(len(text) for text in texts)

    started = time.perf_counter()
    try:
        results = await until_disconnected(
            request, service.translate(texts, _decode_options(translate_request, settings))
        )
    except TooManySentencesError as error:
        field = translate_request.input_field
        detail = ErrorDetail(field=field, message=error.message)
        raise APIError(422, f"{field}: {error.message}", details=[detail]) from error
    elapsed_ms = (time.perf_counter() - started) * 1000

    attention = None
    if attention_layer is not None:
        # A sentence passed through untranslated has no attention between two languages.
        translated = [pair for pair in results[0].sentences if needs_translation(pair[0])]
        maps = await service.attention_maps(translated, attention_layer)
        attention = [
            SentenceAttention(
                source=source,
                translation=target,
                layer=attention_layer,
                source_tokens=attention_map.source_tokens,
                target_tokens=attention_map.target_tokens,
                weights=attention_map.weights,
            )
            for (source, target), attention_map in zip(translated, maps, strict=True)
        ]
    return _build_response(translate_request, results, elapsed_ms, attention)


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, and cancel it once the client has disconnected.

    Cancelling the translation drops the request's sentences that have not been translated yet,
    so a client that gave up does not hold up the requests behind it. The batch running at that
    moment runs to its end. Raises ClientDisconnect after cancelling.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                logger.info("request %s: the client disconnected, so its translation is "
                            "cancelled", getattr(request.state, "request_id", "-"))
                raise ClientDisconnect()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _attention_layer(
    translate_request: TranslateRequest, service: TranslationService
) -> int | None:
    """Return the decoder layer (from 0) of the requested attention maps, or None if none."""
    if not translate_request.return_attention:
        return None
    layers = service.decoder_layers
    if layers is None:
        raise APIError(
            501,
            "this server's translator returns no attention weights; "
            "send the request without return_attention",
        )

    layer = -1 if translate_request.attention_layer is None else translate_request.attention_layer
    if not -layers <= layer < layers:
        message = (
            f"{layer} is out of range for a decoder of {layers} layer(s); "
            f"use a value from {-layers} to {layers - 1}"
        )
        detail = ErrorDetail(field="attention_layer", message=message)
        raise APIError(422, f"attention_layer: {message}", details=[detail])
    return layer % layers


def _check_languages(translate_request: TranslateRequest) -> None:
    source = translate_request.source or SOURCE_LANGUAGE
    if source.lower() not in (SOURCE_LANGUAGE, AUTO_LANGUAGE):
        raise APIError(
            400,
            f"source language {truncate(source)!r} is not supported; this service "
            f"translates from Hindi: use {SOURCE_LANGUAGE!r} or {AUTO_LANGUAGE!r}",
        )
    target = translate_request.target or TARGET_LANGUAGE
    if target.lower() != TARGET_LANGUAGE:
        raise APIError(
            400,
            f"target language {truncate(target)!r} is not supported; this service "
            f"translates into English: use {TARGET_LANGUAGE!r}",
        )
    text_format = translate_request.format or TEXT_FORMAT
    if text_format.lower() != TEXT_FORMAT:
        raise APIError(
            400,
            f"format {truncate(text_format)!r} is not supported; send plain text with "
            f"format {TEXT_FORMAT!r}",
        )


def _decode_options(translate_request: TranslateRequest, settings: Settings) -> DecodeOptions:
    n_best = translate_request.alternatives + 1
    beam_size = translate_request.beam_size or max(settings.default_beam_size, n_best)
    return DecodeOptions(
        beam_size=beam_size, n_best=n_best, max_length=translate_request.max_length
    )


def _build_response(
    translate_request: TranslateRequest,
    results: list[TextResult],
    elapsed_ms: float,
    attention: list[SentenceAttention] | None = None,
) -> TranslationResponse | TranslationsResponse | LibreTranslateResponse:
    want_alternatives = translate_request.alternatives > 0
    translations = [result.translation for result in results]
    alternatives = [result.alternatives for result in results]

    if translate_request.is_libretranslate:
        if translate_request.is_single:
            return LibreTranslateResponse(
                translatedText=translations[0],
                alternatives=alternatives[0] if want_alternatives else None,
            )
        return LibreTranslateResponse(
            translatedText=translations,
            alternatives=alternatives if want_alternatives else None,
        )

    if translate_request.is_single:
        return TranslationResponse(
            translation=translations[0],
            score=results[0].score,
            alternatives=alternatives[0] if want_alternatives else None,
            alternative_scores=results[0].alternative_scores if want_alternatives else None,
            flags=results[0].flags,
            time_ms=round(elapsed_ms, 1),
            attention=attention,
        )
    return TranslationsResponse(
        translations=translations,
        scores=[result.score for result in results],
        alternatives=alternatives if want_alternatives else None,
        alternative_scores=(
            [result.alternative_scores for result in results] if want_alternatives else None
        ),
        flags=[result.flags for result in results],
        time_ms=round(elapsed_ms, 1),
    )
