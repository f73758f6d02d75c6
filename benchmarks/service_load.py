"""Load test of the HTTP service on loopback, with dynamic batching on and off.

For each batching setting the script starts `nmt serve` on a free 127.0.0.1 port in a subprocess
(NMT_BATCHING=true or false, the same inference thread count), waits for /ready, then runs C
concurrent clients that each send R single-sentence POST /translate requests one after the other.
It reports requests/s, latency percentiles and the server's peak resident memory (VmHWM from
/proc/PID/status, summed over its worker processes), then stops the server. The raw engine
figure is `Translator.translate` on the same sentences in batches of 32 in this process, with no
server running, on as many threads as all workers together. Every request and the whole run have
time limits, so the script always ends by itself.

    python benchmarks/service_load.py --model models/hi-en --data-dir DATA_DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.evaluate import read_lines  # noqa: E402

HOST = "127.0.0.1"
TEST_SET = Path("eval") / "iitb-test.hi"
RAW_BATCH_SIZE = 32
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one load test against one server."""

    label: str
    requests: int
    failures: int
    seconds: float
    latencies_s: list[float]
    peak_rss_kib: int | None

    @property
    def requests_per_second(self) -> float:
        return (self.requests - self.failures) / self.seconds

    def percentile_ms(self, percent: float) -> float:
        """Return the latency below which `percent` % of successful requests fall (nearest rank)."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def peak_rss_kib(pid: int) -> int | None:
    """Return the peak resident set size (VmHWM) of process `pid` in KiB, or None if unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def peak_rss_tree_kib(pid: int) -> int | None:
    """Return the summed peak resident set size of process `pid` and its descendants in KiB,
    such as the worker processes of `nmt serve --workers N`, or None if unknown."""
    total = peak_rss_kib(pid)
    if total is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        total += peak_rss_tree_kib(int(child)) or 0
    return total


def start_server(model: Path, port: int, batching: bool, threads: int,
                 extra_env: dict[str, str], workers: int = 1) -> subprocess.Popen:
    """Start `nmt serve` on HOST:port with `threads` per worker process and return the
    process (not yet ready)."""
    env = {**os.environ, "NMT_BATCHING": "true" if batching else "false",
           "NMT_TORCH_THREADS": str(threads), **extra_env}
    command = [sys.executable, "-m", "nmt.cli", "serve", "--model", str(model), "--host", HOST,
               "--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)


def wait_ready(process: subprocess.Popen, base_url: str, workers: int = 1) -> None:
    """Poll /ready until it returns 200; raise if the server exits or takes too long.

    Each worker process loads its own model, and a request reaches whichever worker accepts its
    connection. So with several workers, each poll sends 4 × workers requests at once on new
    connections, and two polls in a row must see only 200s. NOTE: the kernel picks the worker
    for each connection, so this makes it very likely, not certain, that every worker is ready.
    """
    requests, polls_needed = (1, 1) if workers == 1 else (4 * workers, 2)
    deadline = time.monotonic() + READY_TIMEOUT_S
    successes = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} at start-up")
        statuses = asyncio.run(_poll_ready(base_url, requests))
        successes = successes + 1 if all(status == 200 for status in statuses) else 0
        if successes >= polls_needed:
            return
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"the server at {base_url} was not ready after {READY_TIMEOUT_S:.0f} s")


async def _poll_ready(base_url: str, requests: int) -> list[int]:
    """Send `requests` GET /ready at once, each on its own connection; return the statuses
    (0 for a request that could not connect)."""
    async def poll() -> int:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                return (await client.get(f"{base_url}/ready")).status_code
        except httpx.TransportError:
            return 0

    return list(await asyncio.gather(*(poll() for _ in range(requests))))


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server with SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class HTTPClient:
    """A minimal HTTP/1.1 keep-alive client for JSON POST requests.

    The load generator shares the cores with the server, so it should cost little CPU per
    request. This client writes each request as bytes and reads the response by its
    Content-Length, as load tools such as wrk do.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> HTTPClient:
        return cls(*await asyncio.open_connection(host, port))

    async def post_json(self, path: str, payload: dict) -> tuple[int, bytes]:
        body = json.dumps(payload, ensure_ascii=False).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def run_clients(
    port: int, sentences: list[str], clients: int, requests: int, request_timeout_s: float,
    deadline_s: float,
) -> tuple[list[float], int, float]:
    """Run `clients` concurrent clients of `requests` requests each; return latencies, failures
    and the wall time. Client c sends sentences c·requests to (c + 1)·requests - 1 over one
    keep-alive connection."""
    latencies: list[float] = []
    failures = 0

    async def client(index: int) -> None:
        nonlocal failures
        http = await HTTPClient.connect(HOST, port)
        try:
            for sentence in sentences[index * requests:(index + 1) * requests]:
                started = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(
                        http.post_json("/translate", {"text": sentence}), request_timeout_s)
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError,
                        asyncio.TimeoutError):
                    failures += 1
                    http = await HTTPClient.connect(HOST, port)  # the connection is unusable
                    continue
                if status != 200:
                    failures += 1
                    continue
                latencies.append(time.perf_counter() - started)
        finally:
            await http.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), deadline_s)
    return latencies, failures, time.perf_counter() - started


def load_test(args: argparse.Namespace, sentences: list[str], batching: bool,
              extra_env: dict[str, str], label: str) -> LoadResult:
    """Start a server, load it, read its peak memory and stop it."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    process = start_server(args.model, port, batching, args.threads, extra_env, args.workers)
    try:
        wait_ready(process, base_url, args.workers)
        # One request first, so that neither setting pays for the first call's set-up.
        asyncio.run(run_clients(port, sentences[:1], 1, 1, args.request_timeout,
                                args.request_timeout))
        latencies, failures, seconds = asyncio.run(run_clients(
            port, sentences, args.clients, args.requests, args.request_timeout,
            args.run_timeout))
        peak = peak_rss_tree_kib(process.pid)
    finally:
        stop_server(process)
    return LoadResult(label, args.clients * args.requests, failures, seconds, latencies, peak)


def raw_engine_rate(model: Path, sentences: list[str], threads: int) -> float:
    """Return sentences/s of `Translator.translate` in batches of RAW_BATCH_SIZE, in-process."""
    from nmt import gemm
    from nmt.translator import Translator

    translator = Translator.load(model)
    gemm.set_threads(threads)
    translator.translate(sentences[:4])
    started = time.perf_counter()
    for start in range(0, len(sentences), RAW_BATCH_SIZE):
        translator.translate(sentences[start:start + RAW_BATCH_SIZE])
    return len(sentences) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory to serve")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                        help="data folder with eval/iitb-test.hi "
                             "(default: shared/data beside the repository)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: 32)")
    parser.add_argument("--requests", type=int, default=8,
                        help="requests per client, one sentence each (default: 8)")
    parser.add_argument("--threads", type=int, default=2,
                        help="inference threads of each server worker (default: 2); the raw "
                             "engine gets threads x workers")
    parser.add_argument("--workers", type=int, default=1,
                        help="server worker processes, each with its own model and batcher "
                             "(default: 1)")
    parser.add_argument("--request-timeout", type=float, default=300.0,
                        help="seconds one request may take (default: 300)")
    parser.add_argument("--run-timeout", type=float, default=900.0,
                        help="seconds one load test may take in all (default: 900)")
    parser.add_argument("--modes", nargs="+", choices=["batching", "no-batching"],
                        default=["batching", "no-batching"])
    args = parser.parse_args(argv)
    from nmt import gemm  # imports torch, which the raw engine loads anyway

    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    label = "--threads" if args.workers == 1 else "--threads x --workers"
    try:
        gemm.check_threads(args.threads * args.workers, label)
    except ValueError as error:
        parser.error(str(error))

    sentences = read_lines(args.data_dir / TEST_SET)[: args.clients * args.requests]
    if len(sentences) < args.clients * args.requests:
        parser.error(f"{TEST_SET} has only {len(sentences)} sentences")
    print(f"{args.clients} clients x {args.requests} requests, {args.workers} worker(s) x "
          f"{args.threads} threads, model {args.model}")

    raw = raw_engine_rate(args.model, sentences, args.threads * args.workers)
    print(f"raw engine: {raw:.2f} sentences/s (Translator.translate, batches of {RAW_BATCH_SIZE})")

    results = {}
    for mode in args.modes:
        results[mode] = load_test(args, sentences, mode == "batching", {}, mode)
        print_result(results[mode], raw)

    if len(results) == 2:
        ratio = (results["batching"].requests_per_second
                 / results["no-batching"].requests_per_second)
        print(f"batching on / off: {ratio:.2f} (target >= 4)")
    return 0


def print_result(result: LoadResult, raw: float) -> None:
    peak = "unknown" if result.peak_rss_kib is None else f"{result.peak_rss_kib / 1024:.0f} MiB"
    print(f"{result.label:12s} {result.requests_per_second:7.2f} requests/s  "
          f"p50 {result.percentile_ms(50):7.0f} ms  p95 {result.percentile_ms(95):7.0f} ms  "
          f"p99 {result.percentile_ms(99):7.0f} ms  failures {result.failures}  "
          f"peak RSS {peak}  service / raw engine {result.requests_per_second / raw:.2f}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
