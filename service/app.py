"""FastAPI application factory of the translation service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import RequestContextMiddleware
from service.routes import languages, limits, page, system, translate
from service.runtime import ModelRuntime
from service.settings import Settings
from service.translation import TranslatorLike

logger = logging.getLogger(__name__)

API_DESCRIPTION = (
    "Hindi-to-English machine translation. POST /translate accepts the native JSON form "
    "(`text` or `texts`) and the LibreTranslate form (`q`, `source`, `target`, `format`), "
    "as JSON, URL-encoded or multipart form bodies. GET /limits reports the request limits, "
    "and GET / serves a web page that uses this API."
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: ModelRuntime = app.state.runtime
    await runtime.start()
    try:
        yield
    finally:
        await runtime.stop()
        app.state.metrics.close()


def create_app(
    settings: Settings | None = None, translator: TranslatorLike | None = None
) -> FastAPI:
    """Build the app. Without `translator`, the model in `settings.model_dir` is loaded
    in the background when the app starts."""
    settings = settings or Settings()
    metrics = ServiceMetrics()

    app = FastAPI(
        title="Hindi-English translation",
        version=_package_version(),
        description=API_DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = ModelRuntime(settings, metrics, translator)

    install_error_handlers(app)
    routers = [translate.router, languages.router, limits.router, system.router, page.router]
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        # FastAPI's own pages (/docs, /openapi.json) are in app.routes already.
        route_paths=frozenset(route.path for route in app.routes)
        | frozenset(route.path for router in routers for route in router.routes),
    )
    for router in routers:
        app.include_router(router)
    app.mount(page.STATIC_PATH, StaticFiles(directory=page.STATIC_DIR), name="static")
    return app


def create_app_from_env() -> FastAPI:
    """Build the app from NMT_* environment variables (the uvicorn factory for workers)."""
    return create_app()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hindi-nmt")
    except PackageNotFoundError:
        return "0.0.0+unknown"
