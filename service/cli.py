"""`nmt serve`: run the translation service with uvicorn.

Command-line options override the NMT_* environment variables, which override the
defaults in `service.settings.Settings`.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
        help="torch device, e.g. cpu or cuda (default: NMT_DEVICE, else cpu)",
    )
    parser.add_argument(
        "--log-level",
        dest="serve_log_level",  # `nmt --log-level` already uses the name log_level
        type=str.lower,
        default=None,
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level of the service (default: NMT_LOG_LEVEL, else info)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until it is stopped. Return the process exit code."""
    overrides: dict[str, Any] = {
        "model_dir": args.model,
        "host": args.host,
        "port": args.port,
        "device": args.device,
        "log_level": args.serve_log_level,
    }
    overrides = {name: value for name, value in overrides.items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        logger.error("invalid settings: %s", error)
        return EXIT_USAGE

    if args.workers < 1:
        logger.error("--workers must be at least 1, got %d", args.workers)
        return EXIT_USAGE
    problem = _check_model_dir(settings.model_dir)
    if problem:
        logger.error("%s; pass --model DIR or set NMT_MODEL_DIR", problem)
        return EXIT_USAGE

    import uvicorn

    # uvicorn applies this logging configuration itself, in every worker process.
    log_config = _log_config(settings.log_level)
    logger.info("serving %s on http://%s:%d", settings.model_dir, settings.host, settings.port)
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

    # Worker processes build their own app from the environment, so pass overrides there.
    for name, value in overrides.items():
        os.environ[f"NMT_{name.upper()}"] = str(value)
    uvicorn.run(
        "service.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_config=log_config,
        access_log=False,
    )
    return 0


def _check_model_dir(model_dir: Path) -> str | None:
    """Return why `model_dir` cannot hold a model, or None when all its files are there."""
    if not model_dir.is_dir():
        return f"model directory {model_dir} does not exist"
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        return f"model directory {model_dir} is missing {', '.join(missing)}"
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
