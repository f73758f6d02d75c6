"""Service settings, read from `NMT_`-prefixed environment variables."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nmt.config import MAX_BEAM_SIZE
from service import engines

logger = logging.getLogger(__name__)

MODEL_SUBDIR = Path("models") / "hi-en"
_REPO_ROOT = Path(__file__).resolve().parents[1]
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def default_model_dir() -> Path:
    """Return the model directory used when NMT_MODEL_DIR is not set.

    In a source checkout this is `models/hi-en` under the repository root. When the
    package is installed elsewhere (a wheel, the container image), it is `models/hi-en`
    under the current working directory.
    """
    checkout_dir = _REPO_ROOT / MODEL_SUBDIR
    if checkout_dir.is_dir():
        return checkout_dir
    return Path.cwd() / MODEL_SUBDIR


class Settings(BaseSettings):
    """Configuration of the translation service. Each field is read from NMT_<FIELD>."""

    # An empty variable (NMT_TORCH_THREADS=) counts as unset, so the default applies.
    model_config = SettingsConfigDict(env_prefix="NMT_", extra="ignore", validate_assignment=True,
                                      env_ignore_empty=True)

    model_dir: Path = Field(
        default_factory=default_model_dir,
        description=(
            "Directory with model.safetensors, config.json, tokenizer.model, metadata.json; "
            "for engine ctranslate2, a folder written by `nmt export-ct2`"
        ),
    )
    device: str = Field(
        "cpu",
        description="Device for the model: a torch device such as cpu or cuda, or for engine "
        "ctranslate2 cpu or cuda",
    )
    # Validated after device, because which engines and compute types work depends on it.
    engine: str = Field(
        engines.NATIVE,
        description="Inference engine: native (PyTorch) or ctranslate2 (a CTranslate2 export)",
    )
    compute_type: str | None = Field(
        None,
        validate_default=True,
        description="Compute type: float32 (default) or int8 for engine native; for engine "
        "ctranslate2, a CTranslate2 compute type such as int8 (default: 'default', the type "
        "stored in the export)",
    )
    host: str = Field("127.0.0.1", description="Address that `nmt serve` binds to")
    port: int = Field(8000, ge=1, le=65535, description="TCP port that `nmt serve` listens on")

    max_text_chars: int = Field(5000, ge=1, description="Maximum characters in one text")
    max_texts: int = Field(64, ge=1, description="Maximum texts in one request")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Maximum request body in bytes")
    default_beam_size: int = Field(4, ge=1, description="Beam size when a request sets none")
    max_beam_size: int = Field(
        8, ge=1, le=MAX_BEAM_SIZE, description="Maximum beam_size a request may set"
    )
    max_alternatives: int = Field(5, ge=0, description="Maximum alternatives a request may ask for")
    max_output_tokens: int = Field(
        512, ge=1, description="Maximum max_length (target tokens per sentence) a request may set"
    )

    torch_threads: int | None = Field(
        None,
        ge=1,
        description="Inference threads of the native engine (nmt.gemm.set_threads), or "
        "CTranslate2's intra-op threads with engine ctranslate2; unset: one per core for the "
        "native engine, CTranslate2's choice for ctranslate2",
    )
    batching: bool = Field(True, description="Merge concurrent requests into shared batches")
    batch_window_ms: float = Field(
        5.0, ge=0, description="How long the batcher waits for another request after the latest"
    )
    batch_max_wait_ms: float = Field(
        50.0, ge=0, description="The longest the first request of a batch waits for others"
    )
    max_batch_tokens: int = Field(
        4096, ge=1, description="Maximum padded source tokens (sentences x longest) per batch"
    )
    max_pending_sentences: int = Field(
        4096,
        ge=1,
        description="Maximum sentences waiting for translation. A request with more sentences "
        "gets 422; one that would take the waiting sentences over it gets 503",
    )

    api_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated API keys; empty means no key is needed"
    )
    log_level: str = Field("info", description="Log level: critical, error, warning, info, debug")

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        engines.check_device(value)
        return value

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, value: str, info: ValidationInfo) -> str:
        engine = value.lower()
        if engine not in engines.ENGINES:
            raise ValueError(f"engine must be one of {', '.join(engines.ENGINES)}, got {value!r}")
        engines.check_engine(engine, info.data.get("device", "cpu"))
        return engine

    @field_validator("compute_type")
    @classmethod
    def _check_compute_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        engine = info.data.get("engine")
        if engine is None:  # an invalid engine has its own validation error
            return value
        compute_type = engines.default_compute_type(engine) if value is None else value.lower()
        engines.check_compute_type(engine, compute_type, info.data.get("device", "cpu"))
        return compute_type

    @field_validator("torch_threads")
    @classmethod
    def _check_torch_threads(cls, value: int | None) -> int | None:
        if value is not None:
            from nmt import gemm  # imports torch, which serving loads anyway

            gemm.check_threads(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.lower()
        if level not in _LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
        return level

    @model_validator(mode="after")
    def _check_default_beam_size(self) -> Settings:
        if self.default_beam_size > self.max_beam_size:
            raise ValueError(f"NMT_DEFAULT_BEAM_SIZE ({self.default_beam_size}) must not exceed "
                             f"NMT_MAX_BEAM_SIZE ({self.max_beam_size})")
        return self

    @property
    def api_key_set(self) -> frozenset[str]:
        """The accepted API keys, empty when the service is open."""
        keys = self.api_keys.get_secret_value().split(",")
        return frozenset(key.strip() for key in keys if key.strip())

    @property
    def batch_window_s(self) -> float:
        """The batching window in seconds."""
        return self.batch_window_ms / 1000

    @property
    def batch_max_wait_s(self) -> float:
        """The batcher's longest wait in seconds."""
        return self.batch_max_wait_ms / 1000
