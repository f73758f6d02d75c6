"""FastAPI dependencies that hand routes the settings, the metrics and the model."""

from __future__ import annotations

import hmac
import logging

from fastapi import Request

from service.errors import APIError
from service.metrics import ServiceMetrics
from service.runtime import ModelRuntime, ModelStatus
from service.settings import Settings
from service.translation import TranslationService

logger = logging.getLogger(__name__)


def get_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    return request.app.state.settings


def get_metrics(request: Request) -> ServiceMetrics:
    """Return the app's metrics."""
    return request.app.state.metrics


def get_runtime(request: Request) -> ModelRuntime:
    """Return the app's model runtime, loaded or not."""
    return request.app.state.runtime


def get_translation_service(request: Request) -> TranslationService:
    """Return the translation service, or raise 503 while the model is not loaded."""
    runtime = get_runtime(request)
    if runtime.service is not None:
        return runtime.service
    if runtime.status is ModelStatus.FAILED:
        raise APIError(503, f"the model failed to load: {runtime.error}")
    raise APIError(503, "the model is still loading; retry shortly", headers={"Retry-After": "5"})


def check_api_key(request: Request, body_key: str | None, settings: Settings) -> None:
    """Raise 401 or 403 unless the request carries one of the configured API keys.

    The key may be sent as `api_key` in the body, as `Authorization: Bearer KEY` or as
    an `X-API-Key` header. Without configured keys every request passes.
    """
    accepted = settings.api_key_set
    if not accepted:
        return

    key = body_key or request.headers.get("x-api-key") or _bearer_token(request)
    if not key:
        raise APIError(
            401,
            "missing API key: send it as api_key in the body, as an Authorization: Bearer "
            "header or as an X-API-Key header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Compare against every key, without stopping early, to keep timing independent of keys.
    # surrogatepass: a JSON body may carry lone surrogates, which plain UTF-8 cannot encode.
    key_bytes = key.encode("utf-8", "surrogatepass")
    matches = [
        hmac.compare_digest(key_bytes, known.encode("utf-8", "surrogatepass")) for known in accepted
    ]
    if not any(matches):
        raise APIError(403, "invalid API key")


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
