"""Prometheus metrics of the service.

Each app has its own registry, so several apps in one process (as in the tests) do not
register the same metric twice.

With several worker processes (`nmt serve --workers N`), a scrape of /metrics reaches one worker.
So `nmt serve` then sets PROMETHEUS_MULTIPROC_DIR before the workers start, and prometheus_client
keeps every worker's values in files there. /metrics then sums the counters and histograms of
all workers, including workers that have exited, and reports the gauges of the live ones:
pending sentences summed, readiness as the minimum (1 only when every worker has its model).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    multiprocess,
)

logger = logging.getLogger(__name__)

# The variable that switches prometheus_client to multiprocess mode. It must be set before the
# process imports prometheus_client, because that import chooses how values are stored.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    """Check whether this process keeps its metrics in PROMETHEUS_MULTIPROC_DIR."""
    return bool(os.environ.get(MULTIPROCESS_DIR_VARIABLE))

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_SENTENCE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_BATCH_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384)


class ServiceMetrics:
    """The counters and histograms that the middleware and the batcher update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_mode()

        # HTTP traffic, updated by the request-context middleware.
        self.requests = Counter(
            "nmt_http_requests",
            "HTTP requests by route, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "nmt_http_errors",
            "HTTP responses with a 4xx or 5xx status, by route and status class",
            ["route", "status_class"],
            registry=self.registry,
        )
        self.exceptions = Counter(
            "nmt_unhandled_exceptions",
            "Exceptions that no handler caught (each returned a 500 response), by exception type",
            ["exception"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nmt_http_request_duration_seconds",
            "Time from receiving a request to sending its response",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )

        # Model work, updated by the batcher.
        self.batch_sentences = Histogram(
            "nmt_batch_sentences",
            "Sentences in each batch given to the model",
            buckets=_BATCH_SENTENCE_BUCKETS,
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            "nmt_batch_source_tokens",
            "Source tokens (without padding) in each batch given to the model",
            buckets=_BATCH_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.batch_duration = Histogram(
            "nmt_batch_duration_seconds",
            "Time the model spends translating one batch",
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.source_tokens = Counter(
            "nmt_source_tokens",
            "Source tokens translated",
            registry=self.registry,
        )
        self.sentences = Counter(
            "nmt_sentences",
            "Sentences translated",
            registry=self.registry,
        )
        self.pending_sentences = Gauge(
            "nmt_pending_sentences",
            "Sentences waiting for or in translation",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        # Model state, updated when the model is loaded or the app stops.
        self.model_ready = Gauge(
            "nmt_model_ready",
            "1 when the model is loaded and requests can be translated, else 0",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        info_help = "Inference engine and compute type that the service is configured with"
        if self.multiprocess:
            # Info does not work in prometheus_client's multiprocess mode. A gauge of value 1 with
            # the same labels gives the same nmt_model_info series.
            self._model_info_gauge = Gauge(
                "nmt_model_info", info_help, ["engine", "compute_type"], registry=self.registry,
                multiprocess_mode="livemax",
            )
        else:
            self._model_info = Info("nmt_model", info_help, registry=self.registry)

    def set_model_info(self, engine: str, compute_type: str) -> None:
        """Record the engine and compute type in the nmt_model_info series."""
        if self.multiprocess:
            self._model_info_gauge.labels(engine=engine, compute_type=compute_type).set(1)
        else:
            self._model_info.info({"engine": engine, "compute_type": compute_type})

    def render(self) -> bytes:
        """Return the metrics in the Prometheus text exposition format: this process's, or with
        several workers, those of all workers together."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        _forget_dead_workers(os.environ[MULTIPROCESS_DIR_VARIABLE])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """Drop this worker's gauges from the shared values, as the worker stops."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


def _forget_dead_workers(folder: str) -> None:
    """Drop the gauges of workers that ended without `close`, such as a killed worker that
    uvicorn replaced, so that their last values do not stay in /metrics.

    Gauges of the live modes are kept per process in files named gauge_live*_PID.db.
    NOTE: a new process that reuses a dead worker's PID keeps that worker's gauges.
    """
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _process_exists(int(pid_text)):
            multiprocess.mark_process_dead(int(pid_text), folder)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 checks that the process exists and sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to another user
    return True
