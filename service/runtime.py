"""Model loading and the translation machinery that exists once the model is loaded.

The app's lifespan handler starts loading the model in a background thread, so that the
server responds to /health and /ready (503) at once. When the load finishes, a
`TranslationService` and its batcher are created and /ready turns 200.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from service import engines
from service.batcher import DynamicBatcher, translation_executor
from service.metrics import ServiceMetrics
from service.settings import Settings
from service.translation import TranslationService, TranslatorLike, run_translator

logger = logging.getLogger(__name__)


class ModelStatus(str, enum.Enum):
    """Stage of the model's life in the server."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def load_translator(settings: Settings) -> TranslatorLike:
    """Load the translator that `settings.engine` names. Blocking: run it in a thread.

    `settings.torch_threads` sets the inference threads of the native engine (see
    `nmt.gemm.set_threads`) and CTranslate2's intra-op threads for the ctranslate2 engine.
    """
    if settings.engine == engines.CTRANSLATE2:
        return _load_ct2_translator(settings)
    return _load_native_translator(settings)


def _load_native_translator(settings: Settings) -> TranslatorLike:
    from nmt import gemm
    from nmt.translator import Translator

    translator = Translator.load(settings.model_dir, device=settings.device)
    if settings.compute_type == "int8":
        from nmt.quantize import quantize_translator

        quantize_translator(translator)
    gemm.set_threads(settings.torch_threads, quantized=settings.compute_type == "int8")
    return translator


def _load_ct2_translator(settings: Settings) -> TranslatorLike:
    from nmt.ct2 import CT2Translator

    return CT2Translator.load(
        settings.model_dir,
        device=settings.device,
        compute_type=settings.compute_type or engines.default_compute_type(settings.engine),
        threads=settings.torch_threads or 0,  # 0 lets CTranslate2 choose
    )


class ModelRuntime:
    """The translator's state and, once it is loaded, the service that uses it."""

    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, translator: TranslatorLike | None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.status = ModelStatus.LOADING
        self.error: str | None = None
        self.service: TranslationService | None = None
        self.model_dir = Path(getattr(translator, "model_dir", settings.model_dir))
        metrics.set_model_info(settings.engine, settings.compute_type or "")
        self._injected = translator
        self._load_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the service with the injected translator, or start loading one."""
        self.status = ModelStatus.LOADING
        self.error = None
        if self._injected is not None:
            await self._activate(self._injected)
        else:
            self._load_task = asyncio.create_task(self._load(), name="nmt-model-load")

    async def stop(self) -> None:
        """Stop loading if still under way, then stop the batcher."""
        if self._load_task is not None:
            self._load_task.cancel()
            try:
                await self._load_task
            except asyncio.CancelledError:
                pass
            self._load_task = None
        if self.service is not None:
            await self.service.batcher.stop()
            self.service = None
        self.metrics.model_ready.set(0)

    async def _load(self) -> None:
        settings = self.settings
        logger.info(
            "loading model from %s on %s (engine %s, compute type %s)",
            settings.model_dir,
            settings.device,
            settings.engine,
            settings.compute_type,
        )
        # The model is loaded on the thread that will translate with it; see translation_executor.
        executor = translation_executor()
        try:
            loop = asyncio.get_running_loop()
            translator = await loop.run_in_executor(executor, load_translator, settings)
        except Exception as error:  # noqa: BLE001 - reported by /ready, logged here
            executor.shutdown(wait=False, cancel_futures=True)
            self.status = ModelStatus.FAILED
            self.error = f"{type(error).__name__}: {error}"
            logger.exception("loading the model from %s failed", settings.model_dir)
            return
        except asyncio.CancelledError:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        await self._activate(translator, executor)
        logger.info("model loaded from %s", settings.model_dir)

    async def _activate(self, translator: TranslatorLike,
                        executor: ThreadPoolExecutor | None = None) -> None:
        settings = self.settings
        batcher = DynamicBatcher(
            functools.partial(run_translator, translator),
            merge_requests=settings.batching,
            window_s=settings.batch_window_s,
            max_wait_s=settings.batch_max_wait_s,
            max_batch_tokens=settings.max_batch_tokens,
            max_pending_sentences=settings.max_pending_sentences,
            metrics=self.metrics,
            executor=executor,
        )
        service = TranslationService(translator, batcher)
        await batcher.start()
        self.service = service
        self.status = ModelStatus.READY
        self.metrics.model_ready.set(1)
