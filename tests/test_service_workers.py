"""`nmt serve --workers 2` as a real server on loopback: /metrics counts every worker."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120
REQUESTS = 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def _sample(metrics: str, series: str) -> float | None:
    """Return the value of one series line of the exposition text, or None if it is absent."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.fixture
def two_workers(tiny_model_dir: Path, tmp_path: Path):
    """Start `nmt serve --workers 2` on a free loopback port and yield its base URL."""
    port = _free_port()
    env = {**os.environ, "NMT_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "nmt.cli", "serve", "--model", str(tiny_model_dir), "--host",
         "127.0.0.1", "--port", str(port), "--workers", "2", "--threads", "1"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # readiness is the minimum over the workers, so this waits for both
            try:
                status, metrics = _get(f"{base}/metrics")
                if status == 200 and _sample(metrics, "nmt_model_ready") == 1:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the server did not get ready:\n"
                            + (tmp_path / "serve.log").read_text(encoding="utf-8"))
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def test_metrics_sum_over_workers(two_workers: str) -> None:
    body = json.dumps({"text": "भारत एक देश है।"}).encode("utf-8")
    for _ in range(REQUESTS):
        request = urllib.request.Request(f"{two_workers}/translate", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    # Each scrape reaches one worker or the other, and every one must count all requests.
    series = 'nmt_http_requests_total{method="POST",route="/translate",status="200"}'
    for _ in range(6):
        status, metrics = _get(f"{two_workers}/metrics")
        assert status == 200
        assert _sample(metrics, series) == REQUESTS
        assert _sample(metrics, "nmt_sentences_total") == REQUESTS
        assert _sample(metrics, "nmt_model_ready") == 1
        assert _sample(metrics, "nmt_pending_sentences") == 0
        assert re.search(r'^nmt_model_info\{compute_type="float32",engine="native"\} 1\.0$',
                         metrics, re.MULTILINE)


def test_metrics_forget_dead_workers(tmp_path: Path) -> None:
    from service.metrics import _forget_dead_workers

    dead = 2**22 + 12345  # above 4194304, the largest pid_max of 64-bit Linux
    (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"")
    (tmp_path / f"gauge_livemin_{os.getpid()}.db").write_bytes(b"")
    (tmp_path / f"counter_{dead}.db").write_bytes(b"")

    _forget_dead_workers(str(tmp_path))

    assert not (tmp_path / f"gauge_livesum_{dead}.db").exists()
    assert (tmp_path / f"gauge_livemin_{os.getpid()}.db").exists()  # a live process
    assert (tmp_path / f"counter_{dead}.db").exists()  # counters of dead workers still count


@pytest.mark.parametrize("kind, words", [
    ("missing", "is not an existing directory; create it or unset the variable"),
    ("file", "is not an existing directory"),
])
def test_serve_rejects_bad_metrics_dir(tiny_model_dir: Path, tmp_path: Path, monkeypatch,
                                       caplog, kind: str, words: str) -> None:
    import argparse

    from service.cli import add_serve_arguments, run_serve

    folder = tmp_path / "metrics"
    if kind == "file":
        folder.write_text("not a folder\n", encoding="utf-8")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: pytest.fail("server started"))
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_model_dir), "--port", str(_free_port()),
                              "--workers", "2"])

    assert run_serve(args) == 2
    assert f"PROMETHEUS_MULTIPROC_DIR={folder} {words}" in caplog.text
