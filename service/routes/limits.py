"""GET /limits: the limits and defaults that POST /translate applies, for clients and the page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.deps import get_runtime, get_settings
from service.runtime import ModelRuntime
from service.schemas import LimitsResponse
from service.settings import Settings

router = APIRouter(tags=["translation"])


@router.get("/limits", response_model=LimitsResponse)
async def limits(
    settings: Annotated[Settings, Depends(get_settings)],
    runtime: Annotated[ModelRuntime, Depends(get_runtime)],
) -> LimitsResponse:
    """Report the server's request limits and defaults, also while the model is loading."""
    decoder_layers = runtime.service.decoder_layers if runtime.service is not None else None
    return LimitsResponse(
        max_text_chars=settings.max_text_chars,
        max_texts=settings.max_texts,
        max_body_bytes=settings.max_body_bytes,
        default_beam_size=settings.default_beam_size,
        max_beam_size=settings.max_beam_size,
        max_alternatives=settings.max_alternatives,
        max_output_tokens=settings.max_output_tokens,
        max_pending_sentences=settings.max_pending_sentences,
        decoder_layers=decoder_layers,
    )
