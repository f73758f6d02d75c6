"""Dynamic batching: concurrent requests' sentences translated together.

Each request submits its sentences as one job. With merging on, the batcher keeps taking
jobs while they arrive less than a short window apart, up to a longer limit after the
first. It groups the collected sentences by
decoding options, because sentences with different beam or n-best settings cannot share
a search. It sorts each group by length and packs it into batches of at most
`max_batch_tokens` padded source tokens. With merging off, each job is packed and
translated on its own. Either way the model runs in one worker thread, never on the
event loop, and batches run one at a time.

NOTE: a batch runs until its last sentence ends, and requests that arrive meanwhile wait for
the whole batch. A search that took new sentences between decoding steps (continuous batching)
was tried and kept its rows full, but on 2 cores of an Intel Xeon it was no faster. A step's time
grew almost in proportion to its rows there, so the steps it saved were worth about a tenth of
the time, and its wider attention and slot bookkeeping cost as much (see benchmarks/README.md).
On an AVX2 AMD EPYC a step has a larger fixed cost (about 2.3 ms at 4 rows, 11 ms at 128), so
by the same estimate the saved steps would be worth about an eighth of the time there. That was
not measured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from service.errors import APIError
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class DecodeOptions:
    """Search settings shared by every sentence of a batch."""

    beam_size: int
    n_best: int
    max_length: int | None


TranslateBatch = Callable[[list[str], DecodeOptions], Sequence[Any]]


class TooManySentencesError(APIError):
    """A request has more sentences than may wait for translation at once.

    Such a request can never be accepted, so it gets 422 and no Retry-After.
    """

    def __init__(self, sentences: int, limit: int) -> None:
        super().__init__(
            422,
            f"{sentences} sentences are over the limit of {limit} sentences that may wait "
            f"for translation at once (NMT_MAX_PENDING_SENTENCES); send the texts in several "
            f"smaller requests",
        )
        self.sentences = sentences
        self.limit = limit


class TranslationFailedError(RuntimeError):
    """The translator raised while translating a batch that contained this request."""


@dataclass(eq=False)
class _Job:
    sentences: list[str]
    tokens: list[int]
    options: DecodeOptions
    future: asyncio.Future[list[Any]]
    results: list[Any] = field(default_factory=list)
    remaining: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.sentences)
        self.remaining = len(self.sentences)


_Entry = tuple[_Job, int]  # a job and the index of one of its sentences


def translation_executor() -> ThreadPoolExecutor:
    """Return the one-thread executor that runs all work on the model.

    Loading the model there too matters for torch's oneDNN products: with another thread that
    had already run torch operations, beam search on the worker thread ran up to 1.5 times
    slower (2 cores, libgomp OpenMP, torch 2.13).
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmt-translate")


class DynamicBatcher:
    """Collect sentences from concurrent requests and translate them in shared batches."""

    def __init__(
        self,
        translate_batch: TranslateBatch,
        *,
        merge_requests: bool,
        window_s: float,
        max_wait_s: float | None = None,
        max_batch_tokens: int,
        max_pending_sentences: int,
        metrics: ServiceMetrics,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """`executor`, if given, must have one worker thread; the batcher shuts it down on stop."""
        self._translate_batch = translate_batch
        self._merge_requests = merge_requests
        self._window_s = window_s
        self._max_wait_s = window_s if max_wait_s is None else max(max_wait_s, window_s)
        self._max_batch_tokens = max_batch_tokens
        self._max_pending_sentences = max_pending_sentences
        self._metrics = metrics
        self._executor = executor or translation_executor()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._pending_sentences = 0
        self.batches_run = 0

    async def start(self) -> None:
        """Start collecting jobs. Call from the event loop that will submit them."""
        if self._merge_requests and self._task is None:
            self._task = asyncio.create_task(self._collect_forever(), name="nmt-batcher")

    async def stop(self) -> None:
        """Stop the batcher, fail the jobs still queued and shut the worker thread down."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(APIError(503, "the service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_in_worker(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(*args)` in the translation worker thread, between batches.

        For other work on the model, such as attention maps, so that it never runs
        concurrently with a translation batch.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    @property
    def pending_sentences(self) -> int:
        """Sentences submitted and not yet translated."""
        return self._pending_sentences

    async def translate(
        self, sentences: list[str], tokens: list[int], options: DecodeOptions
    ) -> list[Any]:
        """Translate `sentences` (with their source token counts) and return results in order.

        Raises TooManySentencesError when `sentences` alone are more than
        `max_pending_sentences`, and APIError 503 when they would be with the sentences
        already waiting.
        """
        if not sentences:
            return []
        if len(sentences) > self._max_pending_sentences:
            raise TooManySentencesError(len(sentences), self._max_pending_sentences)
        if self._pending_sentences + len(sentences) > self._max_pending_sentences:
            raise APIError(
                503,
                f"the server is busy: {self._pending_sentences} sentences are waiting for "
                f"translation (limit {self._max_pending_sentences}); retry later",
                headers={"Retry-After": str(_RETRY_AFTER_S)},
            )

        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        job = _Job(sentences, tokens, options, future)
        self._add_pending(len(sentences))
        try:
            if self._merge_requests:
                self._queue.put_nowait(job)
            else:
                await self._run_jobs([job])
            return await future
        finally:
            self._add_pending(-len(sentences))

    def _add_pending(self, count: int) -> None:
        self._pending_sentences += count
        self._metrics.pending_sentences.set(self._pending_sentences)

    async def _collect_forever(self) -> None:
        while True:
            jobs = await self._collect()
            try:
                await self._run_jobs(jobs)
            except Exception as error:  # noqa: BLE001 - keep the batcher alive
                logger.exception("batcher failed on %d jobs", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(TranslationFailedError(str(error)))

    async def _collect(self) -> list[_Job]:
        """Wait for one job, then gather more while they keep coming.

        Collection stops when the batch is full, when no job arrives for `window_s` after the
        latest one, or `max_wait_s` after the first. A burst of requests (for example clients
        answered by the previous batch sending their next request) thus becomes one batch
        instead of a small one that starts too early and a large one behind it.
        """
        loop = asyncio.get_running_loop()
        jobs = [await self._queue.get()]
        tokens = sum(jobs[0].tokens)
        deadline = loop.time() + self._max_wait_s

        while tokens < self._max_batch_tokens:
            timeout = min(self._window_s, deadline - loop.time())
            try:
                if timeout > 0:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                else:
                    job = self._queue.get_nowait()
            except (TimeoutError, asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            jobs.append(job)
            tokens += sum(job.tokens)
        return jobs

    async def _run_jobs(self, jobs: list[_Job]) -> None:
        groups: dict[DecodeOptions, list[_Entry]] = defaultdict(list)
        for job in jobs:
            if job.future.done():  # the client went away while the job was queued
                continue
            groups[job.options].extend((job, index) for index in range(len(job.sentences)))

        for options, entries in groups.items():
            entries.sort(key=lambda entry: entry[0].tokens[entry[1]])
            for batch in _pack(entries, self._max_batch_tokens):
                await self._run_batch(options, batch)

    async def _run_batch(self, options: DecodeOptions, batch: list[_Entry]) -> None:
        batch = [(job, index) for job, index in batch if not job.future.done()]
        if not batch:
            return

        sentences = [job.sentences[index] for job, index in batch]
        tokens = sum(job.tokens[index] for job, index in batch)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, self._translate_batch, sentences, options
            )
            if len(results) != len(sentences):
                raise RuntimeError(
                    f"translator returned {len(results)} results for {len(sentences)} sentences"
                )
        except Exception as error:  # noqa: BLE001 - passed on to every request in the batch
            for job in {job for job, _ in batch}:
                if not job.future.done():
                    failure = TranslationFailedError(
                        f"translating a batch of {len(sentences)} sentences failed: {error}"
                    )
                    failure.__cause__ = error
                    job.future.set_exception(failure)
            return

        self.batches_run += 1
        self._record_batch(len(sentences), tokens, time.perf_counter() - started)
        for (job, index), result in zip(batch, results, strict=True):
            job.results[index] = result
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                job.future.set_result(job.results)

    def _record_batch(self, sentences: int, tokens: int, duration_s: float) -> None:
        self._metrics.batch_sentences.observe(sentences)
        self._metrics.batch_tokens.observe(tokens)
        self._metrics.batch_duration.observe(duration_s)
        self._metrics.sentences.inc(sentences)
        self._metrics.source_tokens.inc(tokens)
        logger.debug(
            "translated a batch of %d sentences, %d tokens in %.3f s", sentences, tokens, duration_s
        )


def _pack(entries: list[_Entry], max_batch_tokens: int) -> list[list[_Entry]]:
    """Split length-sorted entries into batches whose padded size fits max_batch_tokens.

    The padded size of a batch is its sentence count times its longest sentence, the
    size of the source tensor the model builds. A sentence longer than the budget gets
    a batch of its own.
    """
    batches: list[list[_Entry]] = []
    current: list[_Entry] = []
    for entry in entries:
        job, index = entry
        longest = job.tokens[index]  # entries are sorted, so the newest is the longest
        if current and (len(current) + 1) * longest > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(entry)
    if current:
        batches.append(current)
    return batches
