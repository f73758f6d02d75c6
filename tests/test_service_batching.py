"""Tests of concurrency: translation off the event loop and dynamic batching.

A BlockingTranslator (conftest) holds its first call until the test releases it, so
the tests control which requests are queued together instead of relying on timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.batcher import DecodeOptions, DynamicBatcher, _Job, _pack
from service.metrics import ServiceMetrics
from service.settings import Settings

_WAIT_S = 5


def _post_in_thread(client: TestClient, body: dict) -> tuple[threading.Thread, list]:
    responses: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: responses.append(client.post("/translate", json=body)))
    thread.start()
    return thread, responses


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def _pending(client: TestClient) -> int:
    return client.app.state.runtime.service.batcher.pending_sentences


def test_health_answers_during_translation(service_settings, blocking_translator) -> None:
    with TestClient(create_app(service_settings, blocking_translator)) as client:
        thread, responses = _post_in_thread(client, {"text": "धीमा अनुवाद"})
        assert blocking_translator.started.wait(_WAIT_S)

        health = client.get("/health")
        assert health.status_code == 200
        assert not blocking_translator.release.is_set()  # the translation is still running
        assert client.get("/ready").status_code == 200

        blocking_translator.release.set()
        thread.join(_WAIT_S)
    assert responses[0].json()["translation"] == "EN(धीमा अनुवाद)"


def _run_queued_behind_first(client, translator, bodies: list[dict]) -> list[httpx.Response]:
    """Send one request that blocks the model, queue `bodies` behind it, then release all."""
    first, first_responses = _post_in_thread(client, {"text": "पहला"})
    assert translator.started.wait(_WAIT_S)

    threads = [_post_in_thread(client, body) for body in bodies]
    queued = 1 + sum(len(body.get("texts", [None])) for body in bodies)
    _wait_until(lambda: _pending(client) == queued)

    translator.release.set()
    first.join(_WAIT_S)
    for thread, _ in threads:
        thread.join(_WAIT_S)
    assert first_responses[0].status_code == 200
    return [responses[0] for _, responses in threads]


def test_concurrent_requests_merged(service_settings, blocking_translator) -> None:
    bodies = [{"text": "दो"}, {"texts": ["तीन", "चार"]}, {"text": "पाँच"}]
    with TestClient(create_app(service_settings, blocking_translator)) as client:
        responses = _run_queued_behind_first(client, blocking_translator, bodies)

    assert responses[0].json()["translation"] == "EN(दो)"
    assert responses[1].json()["translations"] == ["EN(तीन)", "EN(चार)"]
    assert responses[2].json()["translation"] == "EN(पाँच)"
    assert len(blocking_translator.calls) == 2
    assert sorted(blocking_translator.calls[1][0]) == sorted(["दो", "तीन", "चार", "पाँच"])


def test_batching_off_one_call_per_request(service_settings, blocking_translator) -> None:
    service_settings.batching = False
    bodies = [{"text": "दो"}, {"text": "तीन"}, {"text": "चार"}]
    with TestClient(create_app(service_settings, blocking_translator)) as client:
        responses = _run_queued_behind_first(client, blocking_translator, bodies)

    assert [r.json()["translation"] for r in responses] == ["EN(दो)", "EN(तीन)", "EN(चार)"]
    assert len(blocking_translator.calls) == 4
    assert all(len(texts) == 1 for texts, *_ in blocking_translator.calls)


def test_options_batched_separately(service_settings, blocking_translator) -> None:
    bodies = [
        {"text": "दो", "beam_size": 2},
        {"text": "तीन", "beam_size": 2},
        {"text": "चार", "beam_size": 4, "alternatives": 1},
    ]
    with TestClient(create_app(service_settings, blocking_translator)) as client:
        responses = _run_queued_behind_first(client, blocking_translator, bodies)

    assert all(response.status_code == 200 for response in responses)
    assert responses[2].json()["alternatives"] == ["EN1(चार)"]
    later_calls = sorted(
        (beam, n_best, sorted(texts)) for texts, beam, n_best, _ in blocking_translator.calls[1:]
    )
    assert later_calls == [(2, 1, ["तीन", "दो"]), (4, 2, ["चार"])]


def test_batched_equals_single(service_client: TestClient) -> None:
    texts = ["पहला वाक्य। दूसरा।", "तीसरा\n\nचौथा", "12"]
    batched = service_client.post("/translate", json={"texts": texts}).json()["translations"]
    single = [
        service_client.post("/translate", json={"text": t}).json()["translation"] for t in texts
    ]
    assert batched == single


def test_busy_server_503(service_settings, blocking_translator) -> None:
    service_settings.max_pending_sentences = 2
    with TestClient(create_app(service_settings, blocking_translator)) as client:
        thread, _ = _post_in_thread(client, {"text": "एक। दो।"})
        assert blocking_translator.started.wait(_WAIT_S)

        response = client.post("/translate", json={"text": "तीन"})
        assert response.status_code == 503
        assert "busy" in response.json()["error"]
        assert response.headers["Retry-After"] == "1"

        blocking_translator.release.set()
        thread.join(_WAIT_S)


@pytest.mark.parametrize("batching", [True, False])
@pytest.mark.parametrize(
    ("body", "field", "sentences"),
    [
        ({"text": "क। " * 6}, "text", 6),
        ({"texts": ["क। ख।", "ग। घ।", "च। छ।"]}, "texts", 6),
        ({"q": "क। " * 9}, "q", 9),
    ],
)
def test_request_over_pending_limit_422(
    service_settings, fake_translator, batching: bool, body: dict, field: str, sentences: int
) -> None:
    service_settings.max_pending_sentences = 5
    service_settings.batching = batching
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post("/translate", json=body)

    assert response.status_code == 422
    assert "Retry-After" not in response.headers
    error = response.json()
    words = f"{sentences} sentences are over the limit of 5 sentences"
    assert f"{field}: {words}" in error["error"]
    assert "NMT_MAX_PENDING_SENTENCES" in error["error"]
    assert [detail["field"] for detail in error["details"]] == [field]
    assert fake_translator.calls == []


def test_default_pending_limit_422(tmp_path, fake_translator) -> None:
    # Three texts under the default 5000 characters, 4998 sentences in all.
    settings = Settings(model_dir=tmp_path / "no-model", batch_window_ms=1)
    with TestClient(create_app(settings, fake_translator)) as client:
        response = client.post("/translate", json={"texts": ["क। " * 1666] * 3})

    assert response.status_code == 422
    assert "4998 sentences are over the limit of 4096" in response.json()["error"]


def test_request_at_pending_limit_translated(service_settings, fake_translator) -> None:
    service_settings.max_pending_sentences = 5
    with TestClient(create_app(service_settings, fake_translator)) as client:
        response = client.post("/translate", json={"text": "क। " * 5})

    assert response.status_code == 200
    assert sum(len(call[0]) for call in fake_translator.calls) == 5


class _FakeJob:
    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens


def test_pack_respects_padded_budget() -> None:
    job = _FakeJob([1, 2, 3, 3, 5, 9, 20])
    entries = [(job, index) for index in range(len(job.tokens))]
    batches = _pack(entries, max_batch_tokens=10)
    sizes = [[job.tokens[index] for _, index in batch] for batch in batches]
    assert sizes == [[1, 2, 3], [3, 5], [9], [20]]
    for batch in sizes[:-1]:
        assert len(batch) * max(batch) <= 10


async def _collect_arrivals(arrivals_s: list[float], window_s: float, max_wait_s: float
                            ) -> list[list[int]]:
    """Queue one job at each arrival time and return the job numbers of each collected batch."""
    batcher = DynamicBatcher(lambda sentences, options: sentences, merge_requests=True,
                             window_s=window_s, max_wait_s=max_wait_s, max_batch_tokens=1000,
                             max_pending_sentences=100, metrics=ServiceMetrics())
    loop = asyncio.get_running_loop()
    options = DecodeOptions(beam_size=1, n_best=1, max_length=None)
    jobs = [_Job([str(n)], [1], options, loop.create_future()) for n in range(len(arrivals_s))]

    async def produce() -> None:
        started = loop.time()
        for job, arrival in zip(jobs, arrivals_s, strict=True):
            await asyncio.sleep(max(0.0, started + arrival - loop.time()))
            batcher._queue.put_nowait(job)

    producer = asyncio.create_task(produce())
    batches = []
    while sum(len(b) for b in batches) < len(jobs):
        batches.append([int(job.sentences[0]) for job in await batcher._collect()])
    await producer
    return batches


def test_collect_takes_a_burst_longer_than_the_window() -> None:
    # Jobs 0.15 s apart keep a 0.3 s window open; a 0.9 s gap closes it.
    arrivals = [0.0, 0.15, 0.3, 0.45, 1.35]
    batches = asyncio.run(_collect_arrivals(arrivals, window_s=0.3, max_wait_s=5.0))
    assert batches == [[0, 1, 2, 3], [4]]


def test_collect_stops_at_max_wait() -> None:
    arrivals = [0.0, 0.15, 0.3, 0.45, 0.6]
    batches = asyncio.run(_collect_arrivals(arrivals, window_s=0.3, max_wait_s=0.4))
    assert batches == [[0, 1, 2], [3, 4]]


def test_disconnect_cancels_translation(monkeypatch) -> None:
    from starlette.requests import ClientDisconnect

    from service.routes import translate as route

    monkeypatch.setattr(route, "DISCONNECT_POLL_S", 0.01)
    cancelled = []

    class DisconnectedClient:
        state = type("State", (), {"request_id": "disconnected"})()

        async def is_disconnected(self) -> bool:
            return True

    async def slow_translation() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "done"

    async def run() -> None:
        with pytest.raises(ClientDisconnect):
            await route.until_disconnected(DisconnectedClient(), slow_translation())

    started = time.perf_counter()
    asyncio.run(run())
    assert cancelled == [True]
    assert time.perf_counter() - started < 5


def test_cancelled_request_not_translated() -> None:
    translated: list[list[str]] = []

    def translate_batch(sentences, options):
        translated.append(list(sentences))
        return sentences

    async def run() -> list[str]:
        batcher = DynamicBatcher(translate_batch, merge_requests=True, window_s=0.2,
                                 max_batch_tokens=1000, max_pending_sentences=100,
                                 metrics=ServiceMetrics())
        await batcher.start()
        options = DecodeOptions(beam_size=1, n_best=1, max_length=None)
        abandoned = asyncio.create_task(batcher.translate(["abandoned"], [1], options))
        await asyncio.sleep(0.05)  # queued, and the batcher waits for more within its window
        abandoned.cancel()
        result = await batcher.translate(["kept"], [1], options)
        assert batcher.pending_sentences == 0
        await batcher.stop()
        return result

    assert asyncio.run(run()) == ["kept"]
    assert translated == [["kept"]]
