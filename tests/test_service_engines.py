"""Tests of the service's inference engines: native float32 and int8, and CTranslate2."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from nmt.testing import TOY_PAIRS, make_scrambled_model_dir
from service import engines
from service.app import create_app
from service.cli import EXIT_USAGE, add_serve_arguments, run_serve
from service.runtime import ModelStatus
from service.settings import Settings

_LOAD_TIMEOUT_S = 60
HINDI_TEXTS = [hindi for hindi, _ in TOY_PAIRS]


@pytest.fixture(scope="module")
def scrambled_dir(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """A tiny model with large random weights, so that greedy outputs differ between inputs."""
    return make_scrambled_model_dir(tiny_model_dir, tmp_path_factory.mktemp("scrambled"), seed=3)


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory, scrambled_dir: Path) -> Path:
    """`scrambled_dir` exported to CTranslate2 with float32 weights."""
    pytest.importorskip("ctranslate2")
    from nmt.ct2 import export_ct2

    return export_ct2(scrambled_dir, tmp_path_factory.mktemp("ct2") / "model")


@contextmanager
def ready_client(**settings) -> Iterator[TestClient]:
    """Start the app with `settings` and wait until its model is loaded."""
    app_settings = Settings(batch_window_ms=1, torch_threads=1, **settings)
    with TestClient(create_app(app_settings)) as client:
        runtime = client.app.state.runtime
        deadline = time.monotonic() + _LOAD_TIMEOUT_S
        while runtime.status is ModelStatus.LOADING and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.json()
        yield client


def greedy_translations(client: TestClient) -> list[str]:
    response = client.post("/translate", json={"texts": HINDI_TEXTS, "beam_size": 1})
    assert response.status_code == 200, response.json()
    return response.json()["translations"]


# --- Serving with each engine ---


def test_ctranslate2_greedy_matches_native(scrambled_dir: Path, ct2_dir: Path) -> None:
    with ready_client(model_dir=scrambled_dir) as client:
        native = greedy_translations(client)
    with ready_client(model_dir=ct2_dir, engine="ctranslate2") as client:
        converted = greedy_translations(client)

    assert converted == native
    assert len(set(native)) > 1, "the test model should not give one output for every input"


def test_ctranslate2_reports_engine(ct2_dir: Path) -> None:
    with ready_client(model_dir=ct2_dir, engine="ctranslate2", compute_type="int8") as client:
        ready = client.get("/ready").json()
        metrics = client.get("/metrics").text

    assert ready["engine"] == "ctranslate2"
    assert ready["compute_type"] == "int8"
    assert 'nmt_model_info{compute_type="int8",engine="ctranslate2"} 1.0' in metrics


def test_ctranslate2_int8_serves_alternatives(ct2_dir: Path) -> None:
    with ready_client(model_dir=ct2_dir, engine="ctranslate2", compute_type="int8") as client:
        response = client.post("/translate", json={"text": HINDI_TEXTS[0], "alternatives": 1})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert isinstance(body["translation"], str)
    assert len(body["alternatives"]) == 1


def test_ctranslate2_attention_is_501(ct2_dir: Path) -> None:
    with ready_client(model_dir=ct2_dir, engine="ctranslate2") as client:
        response = client.post(
            "/translate", json={"text": HINDI_TEXTS[0], "return_attention": True}
        )

    assert response.status_code == 501
    assert "no attention weights" in response.json()["error"]


def test_native_int8_serves(scrambled_dir: Path) -> None:
    with ready_client(model_dir=scrambled_dir, compute_type="int8") as client:
        translations = greedy_translations(client)
        attention = client.post(
            "/translate", json={"text": HINDI_TEXTS[0], "return_attention": True}
        )
        ready = client.get("/ready").json()
        model = client.app.state.runtime.service.translator.model

    assert len(translations) == len(HINDI_TEXTS)
    assert attention.status_code == 200, attention.json()
    assert ready["engine"] == "native"
    assert ready["compute_type"] == "int8"
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert any(isinstance(module, quantized) for module in model.modules())


def test_native_float32_is_default(scrambled_dir: Path) -> None:
    with ready_client(model_dir=scrambled_dir) as client:
        ready = client.get("/ready").json()
        model = client.app.state.runtime.service.translator.model

    assert ready["engine"] == "native"
    assert ready["compute_type"] == "float32"
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert not any(isinstance(module, quantized) for module in model.modules())


# --- Settings validation ---


def test_settings_default_compute_types() -> None:
    assert Settings().compute_type == "float32"
    pytest.importorskip("ctranslate2")
    assert Settings(engine="ctranslate2").compute_type == "default"


def test_settings_read_engine_from_env(monkeypatch) -> None:
    pytest.importorskip("ctranslate2")
    monkeypatch.setenv("NMT_ENGINE", "CTranslate2")
    monkeypatch.setenv("NMT_COMPUTE_TYPE", "INT8_float32")
    settings = Settings()
    assert settings.engine == "ctranslate2"
    assert settings.compute_type == "int8_float32"


def test_settings_unknown_engine() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(engine="onnx")
    assert "engine must be one of native, ctranslate2, got 'onnx'" in str(error.value)


def test_settings_native_rejects_ct2_type() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(compute_type="int8_float16")
    message = str(error.value)
    assert "compute_type 'int8_float16' is not valid for engine 'native'" in message
    assert "use one of: float32, int8" in message


def test_settings_native_int8_needs_cpu() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(device="cuda", compute_type="int8")
    assert "runs on the CPU only, not on device 'cuda'" in str(error.value)


def test_settings_ctranslate2_unknown_type() -> None:
    pytest.importorskip("ctranslate2")
    with pytest.raises(ValidationError) as error:
        Settings(engine="ctranslate2", compute_type="int4")
    message = str(error.value)
    assert "compute_type 'int4' is not valid for engine 'ctranslate2'" in message
    assert "use one of: " + ", ".join(engines.CT2_COMPUTE_TYPES) in message


def test_settings_ctranslate2_type_unsupported_on_cpu() -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    supported = ctranslate2.get_supported_compute_types("cpu")
    explicit = [name for name in engines.CT2_COMPUTE_TYPES if name not in ("default", "auto")]
    unsupported = [name for name in explicit if name not in supported]
    if not unsupported:
        pytest.skip("CTranslate2 supports every compute type on this CPU")

    with pytest.raises(ValidationError) as error:
        Settings(engine="ctranslate2", compute_type=unsupported[0])
    message = str(error.value)
    expected = f"compute_type {unsupported[0]!r} is not supported by CTranslate2 on device 'cpu'"
    assert expected in message
    assert "use one of: default, auto, float32" in message


def test_settings_ctranslate2_rejects_device_index() -> None:
    pytest.importorskip("ctranslate2")
    with pytest.raises(ValidationError) as error:
        Settings(engine="ctranslate2", device="cuda:1")
    expected = "device 'cuda:1' is not valid for engine 'ctranslate2'; use one of: cpu, cuda"
    assert expected in str(error.value)


def test_settings_ctranslate2_not_installed(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # makes `import ctranslate2` fail
    with pytest.raises(ValidationError) as error:
        Settings(engine="ctranslate2")
    message = str(error.value)
    assert "engine 'ctranslate2' needs the ctranslate2 package, which is not installed" in message
    assert "set engine to 'native'" in message


@pytest.mark.parametrize(
    ("device", "words"),
    [
        ("bogus", "device 'bogus' (--device or NMT_DEVICE) is not a valid torch device"),
        ("cuda:abc", "device 'cuda:abc' (--device or NMT_DEVICE) is not a valid torch device"),
        ("", "device '' (--device or NMT_DEVICE) is not a valid torch device"),
        ("meta", "has type 'meta', which the service cannot run on"),
    ],
)
def test_settings_invalid_device(device: str, words: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(device=device)
    assert words in str(error.value)


@pytest.mark.parametrize("device", ["cpu", "cpu:0", "cuda", "cuda:1", "xpu", "mps"])
def test_settings_accept_device_spelling(device: str) -> None:
    # Whether the machine has the device is checked by `nmt serve`, not by Settings.
    assert Settings(device=device).device == device


def test_device_unavailable_reason(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    assert engines.device_unavailable_reason("native", "cpu") is None
    assert engines.device_unavailable_reason("native", "cuda") is None
    assert engines.device_unavailable_reason("native", "cuda:1") is None
    reason = engines.device_unavailable_reason("native", "cuda:2")
    assert "torch finds 2 CUDA device(s), so index 2 does not exist" in reason


def test_ct2_device_unavailable_reason(monkeypatch) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)

    assert engines.device_unavailable_reason("ctranslate2", "cpu") is None
    reason = engines.device_unavailable_reason("ctranslate2", "cuda")
    assert "CTranslate2 finds no CUDA device" in reason


# --- nmt serve ---


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_serve_passes_engine_to_app(ct2_dir: Path, monkeypatch) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))
    args = _serve_args("--model", str(ct2_dir), "--engine", "ctranslate2", "--compute-type", "int8")

    assert run_serve(args) == 0
    settings = started[0].state.settings
    assert settings.engine == "ctranslate2"
    assert settings.compute_type == "int8"


def test_serve_native_int8_flag(scrambled_dir: Path, monkeypatch) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))

    assert run_serve(_serve_args("--model", str(scrambled_dir), "--compute-type", "int8")) == 0
    settings = started[0].state.settings
    assert settings.engine == "native"
    assert settings.compute_type == "int8"


def test_serve_threads_option(scrambled_dir: Path, monkeypatch) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))
    monkeypatch.setattr("nmt.gemm.available_cpus", lambda: 4)

    assert run_serve(_serve_args("--model", str(scrambled_dir), "--threads", "3")) == 0
    assert started[0].state.settings.torch_threads == 3


def test_serve_too_many_threads_exit_2(scrambled_dir: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr("nmt.gemm.available_cpus", lambda: 2)
    assert run_serve(_serve_args("--model", str(scrambled_dir), "--threads", "3")) == EXIT_USAGE
    assert ("--threads or NMT_TORCH_THREADS: threads must be a whole number between 1 and 2 "
            "(the CPUs available to this process), got 3" in caplog.text)


def test_serve_workers_share_the_cpus(scrambled_dir: Path, monkeypatch) -> None:
    runs = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: runs.append(options))
    monkeypatch.setattr("nmt.gemm.available_cpus", lambda: 4)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # run_serve exports its settings
    os.environ.pop("NMT_TORCH_THREADS", None)

    assert run_serve(_serve_args("--model", str(scrambled_dir), "--workers", "2")) == 0
    assert runs[0]["workers"] == 2
    assert os.environ["NMT_TORCH_THREADS"] == "2"


def test_serve_warns_when_workers_exceed_cpus(scrambled_dir: Path, monkeypatch,
                                              caplog) -> None:
    monkeypatch.setattr("uvicorn.run", lambda app, **options: None)
    monkeypatch.setattr("nmt.gemm.available_cpus", lambda: 2)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # run_serve exports its settings

    assert run_serve(_serve_args("--model", str(scrambled_dir), "--threads", "2",
                                 "--workers", "2")) == 0
    assert "2 workers x 2 inference threads exceed the 2 CPUs available" in caplog.text


def test_serve_zero_threads_exit_2(scrambled_dir: Path, caplog) -> None:
    assert run_serve(_serve_args("--model", str(scrambled_dir), "--threads", "0")) == EXIT_USAGE
    assert ("--threads or NMT_TORCH_THREADS: Input should be greater than or equal to 1, got 0"
            in caplog.text)


def test_serve_names_invalid_variable(scrambled_dir: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("NMT_MAX_BEAM_SIZE", "100")
    assert run_serve(_serve_args("--model", str(scrambled_dir))) == EXIT_USAGE
    assert "NMT_MAX_BEAM_SIZE: Input should be less than or equal to 64, got '100'" in caplog.text


def test_serve_default_beam_over_max_exit_2(scrambled_dir: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("NMT_DEFAULT_BEAM_SIZE", "9")
    assert run_serve(_serve_args("--model", str(scrambled_dir))) == EXIT_USAGE
    assert "NMT_DEFAULT_BEAM_SIZE (9) must not exceed NMT_MAX_BEAM_SIZE (8)" in caplog.text


def test_serve_empty_threads_variable_is_unset(scrambled_dir: Path, monkeypatch) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))
    monkeypatch.setenv("NMT_TORCH_THREADS", "")

    assert run_serve(_serve_args("--model", str(scrambled_dir))) == 0
    assert started[0].state.settings.torch_threads is None


def test_serve_invalid_compute_type_exit_2(scrambled_dir: Path, caplog) -> None:
    args = _serve_args("--model", str(scrambled_dir), "--compute-type", "int8_float16")
    assert run_serve(args) == EXIT_USAGE
    assert "compute_type 'int8_float16' is not valid for engine 'native'" in caplog.text
    assert "use one of: float32, int8" in caplog.text


def test_serve_unknown_engine_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _serve_args("--engine", "onnx")
    assert exit_info.value.code == EXIT_USAGE
    assert "invalid choice: 'onnx'" in capsys.readouterr().err


def test_serve_native_dir_with_ctranslate2(scrambled_dir: Path, caplog) -> None:
    pytest.importorskip("ctranslate2")
    args = _serve_args("--model", str(scrambled_dir), "--engine", "ctranslate2")
    assert run_serve(args) == EXIT_USAGE
    assert "contains a PyTorch model, which engine ctranslate2 cannot load" in caplog.text
    assert f"nmt export-ct2 --model {scrambled_dir} --out DIR" in caplog.text


def test_serve_ct2_dir_with_native(ct2_dir: Path, caplog) -> None:
    assert run_serve(_serve_args("--model", str(ct2_dir))) == EXIT_USAGE
    assert "contains a CTranslate2 export, which engine native cannot load" in caplog.text
    assert "--engine ctranslate2" in caplog.text


def test_serve_incomplete_ct2_dir_exit_2(ct2_dir: Path, tmp_path: Path, caplog) -> None:
    folder = tmp_path / "ct2"
    folder.mkdir()
    (folder / "model.bin").write_bytes((ct2_dir / "model.bin").read_bytes())
    args = _serve_args("--model", str(folder), "--engine", "ctranslate2")

    assert run_serve(args) == EXIT_USAGE
    assert f"{folder} is missing config.json, tokenizer.model, metadata.json" in caplog.text


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--device", "cuda"], {}, "CUDA is not available to torch"),
        ([], {"NMT_DEVICE": "cuda"}, "CUDA is not available to torch"),
        (["--device", "xpu"], {}, "XPU is not available to torch"),
        (["--device", "bogus"], {}, "is not a valid torch device"),
        ([], {"NMT_DEVICE": "cuda:abc"}, "is not a valid torch device"),
    ],
)
def test_serve_unusable_device_exit_2(
    tiny_model_dir: Path, monkeypatch, caplog, argv: list[str], env: dict, words: str
) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert run_serve(_serve_args("--model", str(tiny_model_dir), *argv)) == EXIT_USAGE
    assert words in caplog.text
    assert "(--device or NMT_DEVICE)" in caplog.text
    assert started == []


def test_serve_missing_cuda_index_exit_2(tiny_model_dir: Path, monkeypatch, caplog) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    args = _serve_args("--model", str(tiny_model_dir), "--device", "cuda:3")
    assert run_serve(args) == EXIT_USAGE
    assert "torch finds 1 CUDA device(s), so index 3 does not exist" in caplog.text
    assert started == []


def test_serve_port_in_use_exit_2(scrambled_dir: Path, monkeypatch, caplog) -> None:
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(app))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = _serve_args("--model", str(scrambled_dir), "--host", "127.0.0.1",
                           "--port", str(port))
        assert run_serve(args) == EXIT_USAGE
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in caplog.text
    assert not started


def test_serve_resolves_auto_gemm(scrambled_dir: Path, monkeypatch) -> None:
    from nmt import gemm

    monkeypatch.setattr("uvicorn.run", lambda app, **options: None)
    monkeypatch.setenv("NMT_GEMM", "auto")
    assert run_serve(_serve_args("--model", str(scrambled_dir))) == 0
    assert os.environ["NMT_GEMM"] == gemm.automatic_backend(main_thread=False)


def test_serve_keeps_chosen_gemm(scrambled_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr("uvicorn.run", lambda app, **options: None)
    monkeypatch.setenv("NMT_GEMM", "torch")
    assert run_serve(_serve_args("--model", str(scrambled_dir))) == 0
    assert os.environ["NMT_GEMM"] == "torch"


def test_serve_ignores_gemm_for_ctranslate2(ct2_dir: Path, monkeypatch) -> None:
    from nmt import gemm

    monkeypatch.setattr("uvicorn.run", lambda app, **options: None)
    monkeypatch.setenv("NMT_GEMM", "foo")  # only the native engine reads it
    gemm.backend.cache_clear()
    try:
        assert run_serve(_serve_args("--model", str(ct2_dir), "--engine", "ctranslate2")) == 0
    finally:
        monkeypatch.undo()
        gemm.backend.cache_clear()
