"""Checks of a parsed translation request: its texts, and its options against the limits.

These run after `TranslateRequest` has checked types, because the limits come from the
server's settings. Every problem is reported at once, each naming its field
(`texts[2]`, `beam_size`) and, for limits, the value and the limit.
"""

from __future__ import annotations

import logging

from service.errors import APIError
from service.schemas import ErrorDetail, TranslateRequest
from service.settings import Settings

logger = logging.getLogger(__name__)


def check_request(request: TranslateRequest, settings: Settings) -> None:
    """Raise APIError 422 listing every text or option of `request` that breaks a limit."""
    problems = (
        _check_texts(request, settings)
        + _check_options(request, settings)
        + _check_attention_options(request)
    )
    if problems:
        message = "; ".join(f"{detail.field}: {detail.message}" for detail in problems)
        raise APIError(422, message, details=problems)


def _check_texts(request: TranslateRequest, settings: Settings) -> list[ErrorDetail]:
    field = request.input_field
    texts = request.input_texts
    if request.is_single:
        return _check_text(field, texts[0], settings.max_text_chars)

    if not texts:
        return [ErrorDetail(field=field, message="must contain at least one text")]
    if len(texts) > settings.max_texts:
        message = f"{len(texts)} texts are over the limit of {settings.max_texts} texts per request"
        return [ErrorDetail(field=field, message=message)]

    problems = []
    for index, text in enumerate(texts):
        problems += _check_text(f"{field}[{index}]", text, settings.max_text_chars)
    return problems


def _check_text(field: str, text: str, max_chars: int) -> list[ErrorDetail]:
    if not text.strip():
        return [ErrorDetail(field=field, message="must not be empty or only whitespace")]
    surrogate = _find_lone_surrogate(text)
    if surrogate is not None:
        message = (
            f"contains an unpaired surrogate code point U+{ord(text[surrogate]):04X} at "
            f"position {surrogate}; send valid Unicode text"
        )
        return [ErrorDetail(field=field, message=message)]
    if len(text) > max_chars:
        message = f"{len(text)} characters are over the limit of {max_chars} characters per text"
        return [ErrorDetail(field=field, message=message)]
    return []


def _find_lone_surrogate(text: str) -> int | None:
    """Return the index of the first lone UTF-16 surrogate in `text`, or None.

    JSON escapes such as \\ud800 decode to such code points. A valid pair of escapes
    decodes to one code point outside the BMP, so every surrogate left in a str is unpaired,
    and UTF-8 cannot encode it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def _check_options(request: TranslateRequest, settings: Settings) -> list[ErrorDetail]:
    problems = []
    limits = [
        ("beam_size", request.beam_size, settings.max_beam_size, ""),
        ("alternatives", request.alternatives, settings.max_alternatives, ""),
        ("max_length", request.max_length, settings.max_output_tokens, " tokens"),
    ]
    for field, value, limit, unit in limits:
        if value is not None and value > limit:
            message = f"{value} is over the limit of {limit}{unit}"
            problems.append(ErrorDetail(field=field, message=message))

    # A beam search returns at most beam_size hypotheses.
    n_best = request.alternatives + 1
    if request.beam_size is not None and request.beam_size < n_best:
        message = (
            f"{request.beam_size} is smaller than alternatives + 1 = {n_best}; "
            "raise beam_size or ask for fewer alternatives"
        )
        problems.append(ErrorDetail(field="beam_size", message=message))
    elif request.beam_size is None and n_best > settings.max_beam_size:
        message = (
            f"{request.alternatives} needs a beam of {n_best}, over the beam size limit of "
            f"{settings.max_beam_size}"
        )
        problems.append(ErrorDetail(field="alternatives", message=message))
    return problems


def _check_attention_options(request: TranslateRequest) -> list[ErrorDetail]:
    # The attention maps belong in TranslationResponse, the response to a single `text`.
    if request.return_attention and request.input_field != "text":
        message = (
            f"is only available for one text sent in the text field, not in "
            f"{request.input_field}; send each text in its own request as text"
        )
        return [ErrorDetail(field="return_attention", message=message)]
    if request.attention_layer is not None and not request.return_attention:
        message = "has no effect without return_attention: true; set both or neither"
        return [ErrorDetail(field="attention_layer", message=message)]
    return []
