"""Tests of the training pipeline: config files, schedule, batching, checkpoints and real runs.

The runs train tiny models on the 300 real IITB pairs in tests/fixtures for a few hundred steps
at most, each in seconds on one CPU thread.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from training.batching import collate, make_batches
from training.checkpoints import (
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from training.config import (
    OptimConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    save_config,
)
from training.data import SourceSpec
from training.trainer import cooldown_factor, inverse_sqrt_lr, train

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent


def tiny_config(out_dir: Path, name: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config mapping for a tiny model on the iitb-300 fixture; `sections` update its parts."""
    values: dict[str, Any] = {
        "name": name,
        "out_dir": str(out_dir),
        "seed": 1,
        "threads": 1,
        "model": {"d_model": 32, "n_heads": 4, "d_ff": 64, "encoder_layers": 1,
                  "decoder_layers": 1, "dropout": 0.0, "attention_dropout": 0.0,
                  "max_positions": 128},
        "tokenizer": {"vocab_size": 500},
        "data": {"sources": ["iitb-300"], "dev": "iitb-300", "exclude": [], "max_tokens": 100},
        "optim": {"lr": 0.003, "warmup_steps": 10, "batch_tokens": 1500, "max_steps": 20},
        "eval": {"every_steps": 10, "bleu_sentences": 2, "log_every_steps": 10,
                 "keep_checkpoints": 2, "average_last": 2, "samples": 1},
    }
    for section, updates in sections.items():
        values[section] = {**values[section], **updates}
    return values


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """Return the training records and the validation records of a run's metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return ([r for r in records if "loss" in r], [r for r in records if "dev_loss" in r])


@pytest.fixture
def in_process_training():
    """Undo what `train` changes in this process: signal handlers, torch threads, RNG state."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


# --- real runs ----------------------------------------------------------------------------------


def test_tiny_model_overfits(tmp_path: Path, in_process_training) -> None:
    values = tiny_config(
        tmp_path, "overfit",
        model={"d_model": 64, "d_ff": 128},
        optim={"lr": 0.005, "warmup_steps": 20, "batch_tokens": 2000, "max_steps": 200,
               "label_smoothing": 0.0},
        eval={"every_steps": 100, "bleu_sentences": 5, "keep_checkpoints": 3},
    )
    (tmp_path / "overfit.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
    config = load_config(tmp_path / "overfit.yaml")

    model_dir = train(config, FIXTURES)

    run_dir = config.run_dir
    losses, validations = read_metrics(run_dir)
    assert [r["step"] for r in losses] == list(range(10, 201, 10))
    assert losses[-1]["loss"] < 0.6 * losses[0]["loss"]
    assert [r["step"] for r in validations] == [100, 200]
    assert validations[1]["dev_loss"] < validations[0]["dev_loss"]
    assert model_dir == run_dir / "model"
    assert load_config(run_dir / "config.yaml") == config
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == [
        "step_100.pt", "step_200.pt"]


def test_exported_model_is_checkpoint_average(tmp_path: Path, in_process_training) -> None:
    config = config_from_dict(tiny_config(tmp_path, "export"))
    model_dir = train(config, FIXTURES)

    checkpoints = list_checkpoints(config.run_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["step_10.pt", "step_20.pt"]
    expected = average_checkpoints(checkpoints)
    exported = load_file(str(model_dir / "model.safetensors"))
    assert set(exported) == set(expected)
    for name, tensor in exported.items():
        torch.testing.assert_close(tensor, expected[name])

    from nmt.translator import Translator

    translator = Translator.load(model_dir)
    assert translator.metadata["step"] == 20
    assert len(translator.translate(["नमस्ते"], beam_size=1)) == 1


def test_resume_continues_run(tmp_path: Path, in_process_training,
                              caplog: pytest.LogCaptureFixture) -> None:
    first = config_from_dict(tiny_config(tmp_path, "resumed", optim={"max_steps": 20}))
    second = config_from_dict(tiny_config(tmp_path, "resumed", optim={"max_steps": 40}))
    straight = config_from_dict(tiny_config(tmp_path, "straight", optim={"max_steps": 40}))

    train(first, FIXTURES)
    with caplog.at_level("INFO", logger="training.trainer"):
        train(second, FIXTURES)
    train(straight, FIXTURES)

    assert "resumed from" in caplog.text
    assert "step_20.pt at step 20" in caplog.text
    resumed_losses, resumed_validations = read_metrics(second.run_dir)
    straight_losses, straight_validations = read_metrics(straight.run_dir)
    assert [r["step"] for r in resumed_losses] == [10, 20, 30, 40]
    # The resumed run continues where it stopped: the same losses as a run never stopped.
    assert [r["loss"] for r in resumed_losses] == pytest.approx(
        [r["loss"] for r in straight_losses], rel=1e-6)
    assert [r["dev_loss"] for r in resumed_validations] == pytest.approx(
        [r["dev_loss"] for r in straight_validations], rel=1e-6)
    assert resumed_losses[2]["loss"] < resumed_losses[0]["loss"]
    state = load_checkpoint(latest_checkpoint(second.run_dir / "checkpoints"))["state"]
    assert state["step"] == 40


def test_init_from_continues_a_model_dir(tmp_path: Path, in_process_training,
                                         caplog: pytest.LogCaptureFixture) -> None:
    first = config_from_dict(tiny_config(tmp_path, "first", optim={"max_steps": 20}))
    model_dir = train(first, FIXTURES)
    values = tiny_config(tmp_path, "continued",
                         optim={"max_steps": 30, "init_warmup_steps": 5},
                         eval={"every_steps": 5})
    values["init_from"] = str(model_dir)
    del values["tokenizer"]
    continued = config_from_dict(values)

    with caplog.at_level("INFO", logger="training.trainer"):
        train(continued, FIXTURES)

    assert f"initialized from {model_dir} at step 20" in caplog.text
    assert (continued.run_dir / "tokenizer.model").read_bytes() == (
        model_dir / "tokenizer.model").read_bytes()
    losses, validations = read_metrics(continued.run_dir)
    assert [r["step"] for r in validations] == [25, 30]
    # Fresh Adam moments: the learning rate ramps up from zero over init_warmup_steps.
    warm = inverse_sqrt_lr(30, 0.003, 10)
    assert losses[-1]["lr"] == pytest.approx(warm)
    # Starting from trained weights, the first dev loss is already near the first run's last.
    _, first_validations = read_metrics(first.run_dir)
    assert validations[0]["dev_loss"] < first_validations[0]["dev_loss"]
    state = load_checkpoint(latest_checkpoint(continued.run_dir / "checkpoints"))["state"]
    assert state["step"] == 30
    assert state["init_step"] == 20


def test_init_from_rejects_another_shape(tmp_path: Path, in_process_training) -> None:
    model_dir = train(config_from_dict(tiny_config(tmp_path, "small", optim={"max_steps": 10})),
                      FIXTURES)
    values = tiny_config(tmp_path, "wider", model={"d_model": 64})
    values["init_from"] = str(model_dir)
    del values["tokenizer"]

    with pytest.raises(ValueError, match="init_from .* has shape"):
        train(config_from_dict(values), FIXTURES)


def test_bf16_autocast_on_cpu_trains(tmp_path: Path, in_process_training) -> None:
    config = config_from_dict(tiny_config(
        tmp_path, "bf16", optim={"max_steps": 40, "precision": "bf16"}))
    train(config, FIXTURES)
    losses, validations = read_metrics(config.run_dir)
    assert all(math.isfinite(r["loss"]) for r in losses)
    assert losses[-1]["loss"] < losses[0]["loss"]
    state = load_checkpoint(latest_checkpoint(config.run_dir / "checkpoints"))
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())


def test_config_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="optim.precision must be one of auto, fp32, bf16"):
        config_from_dict(tiny_config(Path("runs"), "x", optim={"precision": "fp16"}))


def test_finished_run_trains_no_more(tmp_path: Path, in_process_training) -> None:
    config = config_from_dict(tiny_config(tmp_path, "done", optim={"max_steps": 10}))
    train(config, FIXTURES)
    before = (config.run_dir / "metrics.jsonl").read_text(encoding="utf-8")

    train(config, FIXTURES)

    assert (config.run_dir / "metrics.jsonl").read_text(encoding="utf-8") == before
    assert (config.run_dir / "model" / "model.safetensors").is_file()


def free_loopback_port() -> int | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    except OSError:
        return None


def test_two_process_training(tmp_path: Path) -> None:
    port = free_loopback_port()
    if port is None:
        pytest.skip("cannot bind a port on 127.0.0.1")
    values = tiny_config(tmp_path, "ddp", optim={"max_steps": 6, "warmup_steps": 5},
                         eval={"every_steps": 3, "log_every_steps": 2})
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={port}",
        "-m", "nmt.cli", "--log-level", "WARNING",
        "train", "--config", str(tmp_path / "ddp.yaml"), "--data-dir", str(FIXTURES),
    ]

    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "ddp"
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == ["step_3.pt", "step_6.pt"]
    losses, _ = read_metrics(run_dir)
    assert [r["step"] for r in losses] == [2, 4, 6]
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_gpu_train_script_writes_a_model(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "eval").mkdir(parents=True)
    for side in ("hi", "en"):
        (data_dir / f"iitb-300.{side}").write_bytes((FIXTURES / f"iitb-300.{side}").read_bytes())
        dev = (FIXTURES / f"iitb-dev-50.{side}").read_text(encoding="utf-8").splitlines()[:8]
        (data_dir / "eval" / f"iitb-dev.{side}").write_text("\n".join(dev) + "\n",
                                                            encoding="utf-8")
    values = tiny_config(tmp_path / "unused", "script", optim={"max_steps": 6, "warmup_steps": 3},
                         eval={"every_steps": 3, "checkpoint_every_steps": 3})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
    out_dir = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "SPLIT_MB": "1"}

    result = subprocess.run(["bash", "scripts/gpu-train.sh", str(data_dir), str(out_dir),
                             str(tmp_path / "tiny.yaml")],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((out_dir / "dev.json").read_text(encoding="utf-8"))
    assert scores["segments"] == 8
    assert "step 6 loss" in (out_dir / "train.log").read_text(encoding="utf-8")
    model_dir = out_dir / "model"
    assert json.loads((model_dir / "metadata.json").read_text())["search"]["alpha"] == 1.4
    parts = sorted(model_dir.glob("model.safetensors.part-*"))
    assert [part.name for part in parts] == ["model.safetensors.part-aa"]
    assert not (model_dir / "model.safetensors").exists()
    weights = tmp_path / "joined.safetensors"
    weights.write_bytes(b"".join(part.read_bytes() for part in parts))
    assert all(tensor.dtype == torch.float16 for tensor in load_file(str(weights)).values())


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where", "key"),
    [
        ({"naem": "x"}, "config", "naem"),
        ({"model": {"d_modle": 32}}, "config.model", "d_modle"),
        ({"data": {"source": ["a"]}}, "config.data", "source"),
        ({"data": {"cleaning": {"max_char": 3}}}, "config.data.cleaning", "max_char"),
        ({"data": {"sources": [{"name": "a", "wieght": 2}]}}, "config.data.sources[0]", "wieght"),
        ({"tokenizer": {"vocab": 100}}, "config.tokenizer", "vocab"),
        ({"optim": {"learning_rate": 0.1}}, "config.optim", "learning_rate"),
        ({"margin": {"lambda": 0.1}}, "config.margin", "lambda"),
        ({"eval": {"every": 10}}, "config.eval", "every"),
    ],
)
def test_config_rejects_unknown_keys(tmp_path: Path, values: dict, where: str, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"name": "x", **values}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys") as error:
        load_config(path)
    assert f"{where}:" in str(error.value)
    assert key in str(error.value)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"optim": {"max_steps": "ten"}}, "config.optim.max_steps"),
        ({"optim": {"max_steps": True}}, "config.optim.max_steps"),
        ({"optim": {"max_steps": 1.5}}, "config.optim.max_steps"),
        ({"model": {"pre_norm": 1}}, "config.model.pre_norm"),
        ({"optim": {"betas": [0.9]}}, "config.optim.betas"),
        ({"data": {"exclude": "eval/iitb-dev"}}, "config.data.exclude"),
        ({"model": 3}, "config.model"),
        ({"threads": "two"}, "config.threads"),
        ({"optim": {"max_minutes": "soon"}}, "config.optim.max_minutes"),
    ],
)
def test_config_rejects_wrong_types(values: dict, where: str) -> None:
    with pytest.raises(ValueError, match=re.escape(where)):
        config_from_dict({"name": "x", **values})


def test_config_rejects_bad_source_weight() -> None:
    with pytest.raises(ValueError, match="weight"):
        config_from_dict({"name": "x", "data": {"sources": [{"name": "a", "weight": -1}]}})


def test_config_accepts_short_forms() -> None:
    config = config_from_dict({
        "name": "x",
        "threads": None,
        "data": {"sources": ["train/a", {"name": "train/b", "weight": 2}]},
        "optim": {"lr": 1, "max_minutes": 5, "betas": [0.9, 0.99]},
    })
    assert config.data.sources == [SourceSpec("train/a"), SourceSpec("train/b", 2.0)]
    assert config.threads is None
    assert config.optim.lr == 1.0
    assert isinstance(config.optim.lr, float)
    assert config.optim.max_minutes == 5.0
    assert config.optim.betas == (0.9, 0.99)


def test_config_overrides_top_level(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "out_dir": "runs"}), encoding="utf-8")
    config = load_config(path, {"out_dir": str(tmp_path / "elsewhere")})
    assert config.run_dir == tmp_path / "elsewhere" / "x"


def test_save_config_round_trip(tmp_path: Path) -> None:
    config = config_from_dict({
        "name": "round-trip",
        "out_dir": "somewhere",
        "seed": 7,
        "threads": 2,
        "model": {"d_model": 64, "n_heads": 2, "pre_norm": False, "tie_embeddings": False,
                  "activation": "gelu"},
        "data": {"sources": [{"name": "train/a", "weight": 0.5}, "train/b"], "dev": "eval/d",
                 "exclude": ["eval/d"], "cleaning": {"max_chars": 300, "dedupe": False},
                 "placeholders": False, "max_tokens": 50},
        "tokenizer": {"path": "tok.model", "vocab_size": 1000, "model_type": "bpe"},
        "optim": {"lr": 0.001, "betas": [0.8, 0.9], "max_minutes": 1.5, "accumulation": 2},
        "margin": {"weight": 0.1, "margin": 0.3, "scale": 30.0},
        "eval": {"every_steps": 5, "beam_size": 2},
    })
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_save_config_round_trip_defaults(tmp_path: Path) -> None:
    config = TrainConfig(name="defaults")
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "configs").glob("*.yaml")),
                         ids=lambda path: path.name)
def test_shipped_configs_load(path: Path) -> None:
    assert isinstance(load_config(path), TrainConfig)


# --- learning-rate schedule ---------------------------------------------------------------------


@pytest.mark.parametrize("warmup", [1, 10, 4000])
def test_lr_warmup_is_linear(warmup: int) -> None:
    for step in range(1, warmup + 1, max(1, warmup // 50)):
        assert inverse_sqrt_lr(step, 0.5, warmup) == pytest.approx(0.5 * step / warmup)


@pytest.mark.parametrize("warmup", [1, 10, 4000])
def test_lr_peaks_at_warmup(warmup: int) -> None:
    assert inverse_sqrt_lr(warmup, 0.5, warmup) == pytest.approx(0.5)
    steps = range(1, 5 * warmup + 2, max(1, warmup // 20))
    assert max(inverse_sqrt_lr(step, 0.5, warmup) for step in steps) <= 0.5


@pytest.mark.parametrize("warmup", [1, 10, 4000])
def test_lr_decays_as_inverse_sqrt(warmup: int) -> None:
    for step in (warmup + 1, 2 * warmup, 9 * warmup, 100 * warmup):
        lr = inverse_sqrt_lr(step, 0.5, warmup)
        assert lr * math.sqrt(step) == pytest.approx(0.5 * math.sqrt(warmup))


def test_lr_step_zero_is_step_one() -> None:
    assert inverse_sqrt_lr(0, 0.5, 10) == inverse_sqrt_lr(1, 0.5, 10)


def test_cooldown_falls_linearly_to_zero() -> None:
    factors = [cooldown_factor(step, 100, 10) for step in range(85, 101)]
    assert factors[:6] == [1.0] * 6  # steps 85-90
    assert factors[6:] == pytest.approx([k / 10 for k in range(10, 0, -1)])  # steps 91-100
    assert cooldown_factor(101, 100, 10) == 0.0


def test_cooldown_off_by_default() -> None:
    assert cooldown_factor(100, 100, 0) == 1.0


def test_cooldown_longer_than_run_rejected() -> None:
    with pytest.raises(ValueError, match="cooldown_steps must be between 0 and max_steps"):
        OptimConfig(max_steps=10, cooldown_steps=11)


# --- batching -----------------------------------------------------------------------------------


def random_lengths(count: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    sources = [rng.randint(1, 40) for _ in range(count)]
    targets = [rng.randint(1, 40) for _ in range(count)]
    return sources, targets


BATCH_TOKENS = 256
# Pairs 0-2 do not fit into BATCH_TOKENS on their own.
OVERLONG_SOURCES, OVERLONG_TARGETS = [300, 10, 200], [5, 250, 100]


@pytest.fixture
def lengths() -> tuple[list[int], list[int]]:
    sources, targets = random_lengths(300, seed=3)
    return OVERLONG_SOURCES + sources, OVERLONG_TARGETS + targets


def test_batches_cover_each_index_once(lengths) -> None:
    sources, targets = lengths
    batches = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=0)
    indices = [index for batch in batches for index in batch]
    assert sorted(indices) == list(range(len(sources)))


def test_batches_fit_batch_tokens(lengths) -> None:
    sources, targets = lengths
    batches = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=0)
    for batch in batches:
        padded = (max(sources[i] for i in batch) + max(targets[i] for i in batch)) * len(batch)
        assert padded <= BATCH_TOKENS or len(batch) == 1, batch


def test_overlong_pairs_batched_alone(lengths) -> None:
    sources, targets = lengths
    batches = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=0)
    for index in range(len(OVERLONG_SOURCES)):
        (batch,) = [batch for batch in batches if index in batch]
        assert batch == [index]


def test_batches_are_full(lengths) -> None:
    # Length sorting packs pairs densely: most batches use over half the budget.
    sources, targets = lengths
    batches = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=0)
    padded = [(max(sources[i] for i in b) + max(targets[i] for i in b)) * len(b) for b in batches]
    assert sum(size > BATCH_TOKENS / 2 for size in padded) > 0.8 * len(batches)


def test_batches_depend_only_on_seed(lengths) -> None:
    sources, targets = lengths
    first = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=5)
    second = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=5)
    other = make_batches(sources, targets, batch_tokens=BATCH_TOKENS, seed=6)
    assert first == second
    assert first != other


def test_batches_of_nothing() -> None:
    assert make_batches([], [], batch_tokens=100, seed=0) == []


def test_collate_adds_special_tokens() -> None:
    pad, bos, eos = 0, 2, 3
    batch = collate([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=pad, bos_id=bos, eos_id=eos)
    assert batch.source.tolist() == [[5, 6, 3], [7, 3, 0]]
    assert batch.target_input.tolist() == [[2, 8, 0, 0], [2, 9, 10, 11]]
    assert batch.target_output.tolist() == [[8, 3, 0, 0], [9, 10, 11, 3]]


# --- checkpoints --------------------------------------------------------------------------------


def checkpoint_state(value: float) -> dict:
    return {"model": {"weight": torch.full((2, 2), value)}, "state": {"step": int(value)}}


def test_save_checkpoint_keeps_newest(tmp_path: Path) -> None:
    for step in (1, 2, 9, 10):
        save_checkpoint(tmp_path, step, checkpoint_state(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_9.pt", "step_10.pt"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step_10.pt"
    assert list(tmp_path.glob("*.partial")) == []


def test_latest_checkpoint_of_empty_dir(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None


def test_load_checkpoint_round_trip(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 3, checkpoint_state(3.0), keep=1)
    loaded = load_checkpoint(path)
    assert loaded["state"] == {"step": 3}
    assert torch.equal(loaded["model"]["weight"], torch.full((2, 2), 3.0))


class Untrusted:
    """An arbitrary object that a checkpoint must not be able to smuggle in."""


def test_load_checkpoint_rejects_objects(tmp_path: Path) -> None:
    path = tmp_path / "step_1.pt"
    torch.save({"model": {}, "payload": Untrusted()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_average_checkpoints(tmp_path: Path) -> None:
    paths = [save_checkpoint(tmp_path, step, checkpoint_state(step), keep=5) for step in (1, 2, 6)]
    averaged = average_checkpoints(paths)
    torch.testing.assert_close(averaged["weight"], torch.full((2, 2), 3.0))
    assert averaged["weight"].dtype == torch.float32


def test_average_of_no_checkpoints_raises() -> None:
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([])
