"""Operational routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import get_metrics, get_runtime
from service.metrics import ServiceMetrics
from service.runtime import ModelRuntime, ModelStatus
from service.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """Report that the process is alive, without touching the model."""
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Model loading or failed"}},
)
async def ready(runtime: Annotated[ModelRuntime, Depends(get_runtime)]) -> JSONResponse:
    """Report whether the model is loaded: 200 when ready, 503 while loading or after a failure."""
    body = ReadyResponse(
        status=runtime.status.value,
        model_dir=str(runtime.model_dir),
        engine=runtime.settings.engine,
        compute_type=runtime.settings.compute_type,
        error=runtime.error,
    )
    status_code = 200 if runtime.status is ModelStatus.READY else 503
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status_code)


# HEAD for monitors that probe without reading a body. The routes stay out of the OpenAPI
# schema, because FastAPI would give HEAD and GET the same operationId.
for _path, _endpoint in (("/health", health), ("/ready", ready)):
    router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False)


@router.get("/metrics", response_class=Response)
async def metrics(
    service_metrics: Annotated[ServiceMetrics, Depends(get_metrics)],
) -> Response:
    """Expose the service's metrics in the Prometheus text format."""
    return Response(service_metrics.render(), media_type=CONTENT_TYPE_LATEST)
