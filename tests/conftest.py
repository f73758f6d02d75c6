"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """Directory of the small data files under tests/fixtures (see its README)."""
    return FIXTURES_DIR


@pytest.fixture(autouse=True)
def restore_gemm_choice(monkeypatch):
    """Undo changes to NMT_GEMM and to nmt.gemm's cached backend, such as `nmt serve` makes."""
    from nmt import gemm

    value = os.environ.get("NMT_GEMM")
    if value is None:
        monkeypatch.delenv("NMT_GEMM", raising=False)
    else:
        monkeypatch.setenv("NMT_GEMM", value)
    yield
    gemm.backend.cache_clear()


@pytest.fixture(autouse=True)
def at_least_two_cpus(monkeypatch):
    """Let the tests that run 2 threads pass on a machine with one CPU, where thread counts
    above the CPUs available are rejected (`nmt.gemm.check_threads`)."""
    from nmt import gemm

    if gemm.available_cpus() < 2:
        monkeypatch.setattr(gemm, "available_cpus", lambda: 2)


# --- Service fixtures: a fake translator with the `nmt.translator.Translator` methods ---

import threading  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402

_FAKE_WAIT_S = 10  # upper bound on how long a blocked fake translation waits to be released


class FakeTranslator:
    """Deterministic stand-in for `Translator`: "translates" text s to "EN(s)".

    The k-th alternative of s is "EN<k>(s)". Every call to `translate` is recorded in
    `calls` as (texts, beam_size, n_best, max_length). Tokens are whitespace-separated words.
    """

    max_source_tokens = 64

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int | None, int, int | None]] = []
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam_size: int | None = None,
        n_best: int = 1,
        max_length: int | None = None,
    ) -> list:
        from nmt.translator import Hypothesis, Translation

        with self._lock:
            self.calls.append((list(texts), beam_size, n_best, max_length))
        results = []
        for text in texts:
            score = -float(len(text)) / 100
            hypotheses = [Hypothesis(f"EN({text})", score)]
            hypotheses += [Hypothesis(f"EN{k}({text})", score - k) for k in range(1, n_best)]
            results.append(Translation(hypotheses[0].text, score, hypotheses))
        return results


class BlockingTranslator(FakeTranslator):
    """FakeTranslator whose calls wait until `release` is set; `started` is set on each call."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def translate(self, texts: Sequence[str], **options) -> list:  # type: ignore[override]
        self.started.set()
        if not self.release.wait(_FAKE_WAIT_S):
            raise TimeoutError("BlockingTranslator was never released")
        return super().translate(texts, **options)


@pytest.fixture
def fake_translator() -> FakeTranslator:
    """A fresh FakeTranslator."""
    return FakeTranslator()


@pytest.fixture
def blocking_translator() -> Iterator[BlockingTranslator]:
    """A fresh BlockingTranslator, released at teardown so that no worker thread stays blocked."""
    translator = BlockingTranslator()
    yield translator
    translator.release.set()


@pytest.fixture
def service_settings(tmp_path: Path):
    """Service settings with small limits, so that tests can exceed them cheaply."""
    from service.settings import Settings

    return Settings(
        model_dir=tmp_path / "no-model",
        max_text_chars=200,
        max_texts=4,
        max_body_bytes=4096,
        max_beam_size=8,
        max_alternatives=3,
        max_output_tokens=100,
        batch_window_ms=1,
        api_keys="",
    )


@pytest.fixture
def service_client(service_settings, fake_translator) -> Iterator:
    """A TestClient of the service with the fake translator, lifespan started."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(service_settings, fake_translator)) as client:
        yield client


# --- Translation core fixtures ---


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model directory (seed 0, max_positions 64) built once per test session.

    Tests must not modify it; copy it to change files.
    """
    from nmt.testing import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"), seed=0)
