"""`nmt serve`: run the translation service with uvicorn.

Command-line options override the NMT_* environment variables, which override the
defaults in `service.settings.Settings`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nmt.model_dir import CT2_FILES, METADATA, engine_mismatch, read_metadata
from service import engines
from service.metrics import MULTIPROCESS_DIR_VARIABLE, multiprocess_mode
from service.settings import Settings

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.model", "metadata.json")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `nmt serve` to `parser`."""
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="DIR",
        help="model directory (default: NMT_MODEL_DIR, else models/hi-en)",
    )
    parser.add_argument(
        "--host", default=None, help="address to bind (default: NMT_HOST, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="TCP port (default: NMT_PORT, else 8000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes; each loads its own copy of the model (default: 1)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda; cpu or cuda for --engine ctranslate2 "
        "(default: NMT_DEVICE, else cpu)",
    )
    parser.add_argument(
        "--engine",
        type=str.lower,
        default=None,
        choices=engines.ENGINES,
        help="inference engine: native runs the PyTorch model, ctranslate2 a folder written "
        "by `nmt export-ct2` (default: NMT_ENGINE, else native)",
    )
    parser.add_argument(
        "--compute-type",
        type=str.lower,
        default=None,
        help="float32 or int8 (dynamic quantization) for --engine native; a CTranslate2 "
        "compute type such as default, float32, int8 or int8_float32 for --engine ctranslate2 "
        "(default: NMT_COMPUTE_TYPE, else float32 for native and default for ctranslate2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="inference threads of each worker, at most the CPUs available (default: "
        "NMT_TORCH_THREADS, else the CPUs divided among --workers, or with one worker one per "
        "core for --engine native and CTranslate2's choice for --engine ctranslate2)",
    )
    parser.add_argument(
        "--log-level",
        dest="serve_log_level",  # `nmt --log-level` already uses the name log_level
        type=str.lower,
        default=None,
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level of the service (default: NMT_LOG_LEVEL, else info)",
    )


# Settings that `nmt serve` also takes as an option.
_SETTING_OPTIONS = {
    "model_dir": "--model",
    "host": "--host",
    "port": "--port",
    "device": "--device",
    "engine": "--engine",
    "compute_type": "--compute-type",
    "log_level": "--log-level",
    "torch_threads": "--threads",
}


def describe_settings_error(error: ValidationError) -> list[str]:
    """Return one line per invalid setting, naming its option or NMT_ variable and its value."""
    lines = []
    for problem in error.errors(include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        if not problem["loc"]:  # a check across settings names them in its message
            lines.append(message)
            continue
        field = str(problem["loc"][0])
        names = f"NMT_{field.upper()}"
        if field in _SETTING_OPTIONS:
            names = f"{_SETTING_OPTIONS[field]} or {names}"
        if " got " not in message:  # the project's own checks already show the value
            message = f"{message}, got {problem['input']!r}"
        lines.append(f"{names}: {message}")
    return lines


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until it is stopped. Return the process exit code."""
    overrides: dict[str, Any] = {
        "model_dir": args.model,
        "host": args.host,
        "port": args.port,
        "device": args.device,
        "engine": args.engine,
        "compute_type": args.compute_type,
        "log_level": args.serve_log_level,
        "torch_threads": args.threads,
    }
    overrides = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        for line in describe_settings_error(error):
            logger.error("invalid setting: %s", line)
        return EXIT_USAGE

    if args.workers < 1:
        logger.error("--workers must be at least 1, got %d", args.workers)
        return EXIT_USAGE
    problem = _check_model_dir(settings.model_dir, settings.engine)
    if problem:
        logger.error("%s", problem)
        return EXIT_USAGE
    try:
        from nmt import gemm

        # The batcher translates on a worker thread, see nmt.gemm.automatic_backend. NMT_GEMM
        # only applies to the native engine.
        if settings.engine == engines.NATIVE:
            gemm.use_worker_thread_backend()
    except ValueError as error:
        logger.error("%s", error)
        return EXIT_USAGE
    # Checked before start-up: a server whose model cannot load would only ever return 503.
    problem = engines.device_unavailable_reason(settings.engine, settings.device)
    if problem:
        logger.error("%s", problem)
        return EXIT_USAGE

    problem = _port_unavailable_reason(settings.host, settings.port)
    if problem:
        logger.error("%s", problem)
        return EXIT_USAGE
    problem = _metrics_dir_problem()
    if problem:
        logger.error("%s", problem)
        return EXIT_USAGE

    import uvicorn

    # uvicorn applies this logging configuration itself, in every worker process.
    log_config = _log_config(settings.log_level)
    logger.info(
        "serving %s with engine %s (compute type %s) on http://%s:%d",
        settings.model_dir,
        settings.engine,
        settings.compute_type,
        settings.host,
        settings.port,
    )
    if args.workers == 1:
        from service.app import create_app

        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=log_config,
            access_log=False,  # the service logs one line per request itself
        )
        return 0

    # Each worker process runs its own searches. By default they share the CPUs, instead of each
    # taking one thread per core.
    cpus = gemm.available_cpus()
    if settings.torch_threads is None:
        overrides["torch_threads"] = max(1, cpus // args.workers)
        logger.info("%d workers share %d CPUs: %d inference thread(s) each", args.workers, cpus,
                    overrides["torch_threads"])
    elif settings.torch_threads * args.workers > cpus:
        logger.warning("%d workers x %d inference threads exceed the %d CPUs available, so "
                       "their searches will wait for each other; lower --threads or --workers",
                       args.workers, settings.torch_threads, cpus)
    # Worker processes build their own app from the environment, so pass overrides there.
    for name, value in overrides.items():
        os.environ[f"NMT_{name.upper()}"] = str(value)
    # The workers keep their metrics in one folder, so that /metrics counts all of them
    # (service.metrics). An operator's own PROMETHEUS_MULTIPROC_DIR is used as it is.
    metrics_dir = None
    if not multiprocess_mode():
        metrics_dir = tempfile.mkdtemp(prefix="nmt-metrics-")
        os.environ[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
    try:
        uvicorn.run(
            "service.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            log_config=log_config,
            access_log=False,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ[MULTIPROCESS_DIR_VARIABLE]
    return 0


def _metrics_dir_problem() -> str | None:
    """Return why PROMETHEUS_MULTIPROC_DIR, where an operator set it, cannot hold the metrics,
    or None. Warn when it still contains metrics files, whose values /metrics would add in."""
    folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if not folder:
        return None
    path = Path(folder)
    if not path.is_dir():
        return (f"{MULTIPROCESS_DIR_VARIABLE}={folder} is not an existing directory; create it "
                "or unset the variable")
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{MULTIPROCESS_DIR_VARIABLE}={folder} is not writable by this user"
    leftovers = list(path.glob("*.db"))
    if leftovers:
        logger.warning("%s=%s already contains %d metrics files, whose counts /metrics will add "
                       "in; empty it between runs", MULTIPROCESS_DIR_VARIABLE, folder,
                       len(leftovers))
    return None


def _port_unavailable_reason(host: str, port: int) -> str | None:
    """Return why the server could not listen on host:port, or None when a test bind works.

    NOTE: another process can still take the port between this check and uvicorn's bind;
    uvicorn then reports the error itself and exits with status 3.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"cannot listen on {host}:{port}: {error.strerror}"
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            return (f"cannot listen on {host}:{port}: {error.strerror}; stop the process "
                    f"that uses the port or choose another with --port or NMT_PORT")
    return None


def _check_model_dir(model_dir: Path, engine: str) -> str | None:
    """Return why `engine` cannot load `model_dir`, or None when all its files are there.

    The native engine needs a model directory and the ctranslate2 engine a folder written by
    `nmt export-ct2`. For a folder of the other kind, the message names the command that
    serves or converts it.
    """
    if not model_dir.is_dir():
        return f"model directory {model_dir} does not exist; pass --model DIR or set NMT_MODEL_DIR"
    mismatch = engine_mismatch(model_dir, engine)
    if mismatch:
        return mismatch

    required = CT2_FILES if engine == engines.CTRANSLATE2 else MODEL_FILES
    missing = [name for name in required if not (model_dir / name).is_file()]
    if missing:
        return (
            f"model directory {model_dir} is missing {', '.join(missing)}; "
            f"pass --model DIR or set NMT_MODEL_DIR"
        )
    return _check_search_settings(model_dir / METADATA)


def _check_search_settings(path: Path) -> str | None:
    """Return why the search settings in metadata file `path` are invalid, or None.

    The workers read them only after the server has started, so a mistake is caught here.
    """
    if not path.is_file():
        return None  # the search defaults apply
    from nmt.translator import SearchOptions  # imports torch, which serving needs anyway

    try:
        SearchOptions.from_metadata(read_metadata(path), str(path))
    except ValueError as error:
        return str(error)
    return None


def _log_config(level: str) -> dict[str, Any]:
    """Return a logging dictConfig that uvicorn applies in every worker process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": _LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper(), "propagate": True},
            "uvicorn.access": {"level": "WARNING", "propagate": True},
        },
    }
