"""The training loop: token-bucketed batches, AdamW with warmup, validation, checkpoints, resume.

Runs as one process, or under ``torchrun --nproc_per_node=N`` with DistributedDataParallel
(gloo on CPU, nccl on GPU); rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from nmt.config import ModelConfig
from nmt.model import Transformer
from nmt.model_dir import load_model_dir, save_model_dir
from nmt.tokenizer import Tokenizer
from nmt.translator import Translator
from training.batching import Batch, collate, make_batches
from training.checkpoints import (
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from training.config import TrainConfig, save_config
from training.evaluate import score_corpus
from training.loss import translation_loss
from training.prepare import PreparedData, prepare_data

__all__ = ["inverse_sqrt_lr", "train"]

logger = logging.getLogger(__name__)


def inverse_sqrt_lr(step: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak` over `warmup` steps, then decay ∝ 1/√step (Vaswani et al. 2017)."""
    step = max(step, 1)
    return peak * min(step / warmup, math.sqrt(warmup / step))


def cooldown_factor(step: int, max_steps: int, cooldown_steps: int) -> float:
    """Return the factor that takes the rate linearly to zero over the last `cooldown_steps`."""
    if cooldown_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, (max_steps - step + 1) / cooldown_steps))


class LossModule(nn.Module):
    """The model with its loss in `forward`, so DistributedDataParallel wraps the whole step."""

    def __init__(self, model: Transformer, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        states = self.model(batch.source, batch.target_input)  # (B, T, D)
        margin = self.config.margin
        return translation_loss(
            states,
            self.model.output_weight,
            batch.target_output,
            pad_id=self.model.pad_id,
            label_smoothing=self.config.optim.label_smoothing,
            margin_weight=margin.weight,
            margin=margin.margin,
            margin_scale=margin.scale,
        )


class _Distributed:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cpu")
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


class _StopRequest:
    """Turns SIGTERM and SIGINT into a flag so that the loop can save a checkpoint and exit."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        logger.warning("received signal %d: stopping after this step", signum)
        self.requested = True


def train(config: TrainConfig, data_dir: Path) -> Path:
    """Train (or resume) the run `config.run_dir`; return the model directory it exports."""
    env = _Distributed()
    run_dir = config.run_dir
    checkpoint_dir = run_dir / "checkpoints"
    if env.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)

    # Rank 0 trains the tokenizer, if one is needed, before the other ranks read it.
    data = prepare_data(config, data_dir, run_dir) if env.main else None
    env.barrier()
    if data is None:
        data = prepare_data(config, data_dir, run_dir)
    tokenizer = Tokenizer.from_file(data.tokenizer_path)

    model_config = ModelConfig(vocab_size=tokenizer.vocab_size, **dataclasses.asdict(config.model))
    model = Transformer(model_config, pad_id=tokenizer.pad_id).to(env.device)
    loss_module: nn.Module = LossModule(model, config)
    if env.world > 1:
        device_ids = [env.local_rank] if env.device.type == "cuda" else None
        loss_module = nn.parallel.DistributedDataParallel(loss_module, device_ids=device_ids)
    optim = config.optim
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_bleu": -1.0, "train_seconds": 0.0}
    resume_from = latest_checkpoint(checkpoint_dir)
    if resume_from is not None:
        checkpoint = load_checkpoint(resume_from)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state.update(checkpoint["state"])
        torch.set_rng_state(checkpoint["rng"])
        logger.info("resumed from %s at step %d", resume_from, state["step"])
    elif config.init_from:
        state.update(_init_weights(model, Path(config.init_from)))
        logger.info("initialized from %s at step %d", config.init_from, state["step"])
    if env.main:
        parameters = sum(p.numel() for p in model.parameters())
        logger.info(
            "model: %s, %.1fM parameters, %d training pairs",
            model_config,
            parameters / 1e6,
            len(data.sources),
        )

    _loop(config, env, data, tokenizer, model, loss_module, optimizer, state, checkpoint_dir)

    export_dir = run_dir / "model"
    if env.main:
        export_dir = _export(config, run_dir, model, data, tokenizer, state)
    env.barrier()
    if env.world > 1:
        dist.destroy_process_group()
    return export_dir


def _autocast(precision: str, device: torch.device):
    """Return the mixed-precision context of the forward pass (see `OptimConfig.precision`)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _init_weights(model: Transformer, model_dir: Path) -> dict:
    """Copy a model directory's weights into `model`; return the training state they carry."""
    source, _, metadata = load_model_dir(model_dir)
    if source.config != model.config:
        raise ValueError(f"init_from {model_dir} has shape {source.config}, but the run has "
                         f"{model.config}; make the config's model section match it")
    model.load_state_dict(source.state_dict())
    step = int(metadata.get("step", 0))
    return {
        "step": step,
        "init_step": step,
        "train_seconds": 60.0 * float(metadata.get("train_minutes", 0.0)),
    }


def _loop(
    config,
    env,
    data: PreparedData,
    tokenizer,
    model,
    loss_module,
    optimizer,
    state,
    checkpoint_dir: Path,
) -> None:
    optim, evaluation = config.optim, config.eval
    source_lengths = [len(s) + 1 for s in data.sources]
    target_lengths = [len(t) + 1 for t in data.targets]
    autocast = _autocast(optim.precision, env.device)
    stop = _StopRequest()
    metrics_path = config.run_dir / "metrics.jsonl"
    progress = tqdm(
        total=optim.max_steps,
        initial=state["step"],
        disable=not env.main,
        dynamic_ncols=True,
        mininterval=1 if sys.stderr.isatty() else 30,
    )

    def epoch_batches(epoch: int) -> list[list[int]]:
        batches = make_batches(
            source_lengths,
            target_lengths,
            batch_tokens=optim.batch_tokens,
            seed=config.seed * 1000 + epoch,
        )
        per_rank = len(batches) // env.world  # equal counts keep DDP's collectives in step
        return batches[env.rank * per_rank : (env.rank + 1) * per_rank]

    batches = epoch_batches(state["epoch"])
    window = {"loss": 0.0, "tokens": 0, "seconds": 0.0}
    model.train()
    while state["step"] < optim.max_steps:
        started = time.perf_counter()
        for micro in range(optim.accumulation):
            if state["batch_in_epoch"] >= len(batches):
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
                batches = epoch_batches(state["epoch"])
            indices = batches[state["batch_in_epoch"]]
            state["batch_in_epoch"] += 1
            batch = collate(
                [data.sources[i] for i in indices],
                [data.targets[i] for i in indices],
                pad_id=tokenizer.pad_id,
                bos_id=tokenizer.bos_id,
                eos_id=tokenizer.eos_id,
            ).to(env.device)
            sync = (
                loss_module.no_sync()
                if env.world > 1 and micro < optim.accumulation - 1
                else nullcontext()
            )
            with sync, autocast:
                total, plain, tokens = loss_module(batch)
                (total / max(tokens, 1)).backward()
            window["loss"] += float(plain)
            window["tokens"] += tokens

        lr = inverse_sqrt_lr(state["step"] + 1, optim.lr, optim.warmup_steps)
        if "init_step" in state:  # Adam's moments start empty after a warm start
            lr *= min(1.0, (state["step"] + 1 - state["init_step"]) / optim.init_warmup_steps)
        lr *= cooldown_factor(state["step"] + 1, optim.max_steps, optim.cooldown_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        elapsed = time.perf_counter() - started
        window["seconds"] += elapsed
        state["train_seconds"] += elapsed
        progress.update(1)

        step = state["step"]
        out_of_time = (
            optim.max_minutes is not None and state["train_seconds"] >= optim.max_minutes * 60
        )
        finishing = step >= optim.max_steps or out_of_time or stop.requested
        if env.main and (step % evaluation.log_every_steps == 0 or finishing):
            record = {
                "step": step,
                "epoch": state["epoch"],
                "loss": window["loss"] / max(window["tokens"], 1),
                "lr": optimizer.param_groups[0]["lr"],
                "target_tokens_per_second": window["tokens"]
                * env.world
                / max(window["seconds"], 1e-9),
                "train_minutes": state["train_seconds"] / 60,
            }
            progress.set_postfix(
                loss=f"{record['loss']:.3f}", tok_s=f"{record['target_tokens_per_second']:.0f}"
            )
            logger.info(
                "step %d loss %.4f lr %.2e %.0f tgt tok/s",
                step,
                record["loss"],
                record["lr"],
                record["target_tokens_per_second"],
            )
            _append_jsonl(metrics_path, record)
            window = {"loss": 0.0, "tokens": 0, "seconds": 0.0}

        validating = step % evaluation.every_steps == 0 or finishing
        if validating or step % evaluation.checkpoint_every_steps == 0:
            if env.main:
                if validating:
                    _validate(config, data, tokenizer, model, state, metrics_path)
                _save(checkpoint_dir, model, optimizer, state, evaluation.keep_checkpoints)
            env.barrier()
        if finishing:
            break
    progress.close()


def _validate(config, data: PreparedData, tokenizer, model, state, metrics_path: Path) -> None:
    """Log dev loss, BLEU and chrF and sample translations; export the model when BLEU improves."""
    evaluation = config.eval
    model.eval()
    translator = Translator(model, tokenizer, {}, config.run_dir)
    sources = data.dev_sources[: evaluation.bleu_sentences]
    references = data.dev_references[: evaluation.bleu_sentences]
    hypotheses = [t.text for t in translator.translate(sources, beam_size=evaluation.beam_size)]
    scores = score_corpus(hypotheses, references)
    dev_loss = _dev_loss(data, tokenizer, model)
    model.train()

    record = {
        "step": state["step"],
        "dev_loss": dev_loss,
        "dev_bleu": scores.bleu,
        "dev_chrf2": scores.chrf2,
        "dev_chrfpp": scores.chrfpp,
        "bleu_signature": scores.bleu_signature,
    }
    _append_jsonl(metrics_path, record)
    logger.info(
        "validation at step %d: dev loss %.4f, BLEU %.2f, chrF2 %.2f (%s, %d sentences)",
        state["step"],
        dev_loss,
        scores.bleu,
        scores.chrf2,
        scores.bleu_signature,
        len(sources),
    )
    for source, reference, hypothesis in list(zip(sources, references, hypotheses, strict=True))[
        : evaluation.samples
    ]:
        logger.info(
            "sample\n  source:     %s\n  reference:  %s\n  hypothesis: %s",
            source,
            reference,
            hypothesis,
        )
    if scores.bleu > state["best_bleu"]:
        state["best_bleu"] = scores.bleu
        save_model_dir(
            config.run_dir / "best",
            model,
            data.tokenizer_path,
            _metadata(config, state, "best dev BLEU"),
        )


@torch.no_grad()
def _dev_loss(data: PreparedData, tokenizer, model, limit: int = 500) -> float:
    sources = tokenizer.encode_batch(data.dev_sources[:limit])
    targets = tokenizer.encode_batch(data.dev_references[:limit])
    max_len = model.config.max_positions - 1
    pairs = [(s[: max_len - 1], t[: max_len - 1]) for s, t in zip(sources, targets, strict=True)]
    total, tokens = 0.0, 0
    device = model.embedding.weight.device
    for start in range(0, len(pairs), 32):
        chunk = pairs[start : start + 32]
        batch = collate(
            [s for s, _ in chunk],
            [t for _, t in chunk],
            pad_id=tokenizer.pad_id,
            bos_id=tokenizer.bos_id,
            eos_id=tokenizer.eos_id,
        ).to(device)
        states = model(batch.source, batch.target_input)
        _, plain, count = translation_loss(
            states,
            model.output_weight,
            batch.target_output,
            pad_id=tokenizer.pad_id,
            label_smoothing=0.0,
        )
        total += float(plain)
        tokens += count
    return total / max(tokens, 1)


def _save(checkpoint_dir: Path, model, optimizer, state, keep: int) -> None:
    path = save_checkpoint(
        checkpoint_dir,
        state["step"],
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": dict(state),
            "rng": torch.get_rng_state(),
        },
        keep=keep,
    )
    logger.info("saved %s", path)


def _metadata(config: TrainConfig, state, weights: str) -> dict:
    return {
        "name": config.name,
        "weights": weights,
        "step": state["step"],
        "train_minutes": round(state["train_seconds"] / 60, 1),
        "search": {
            "beam_size": 4,
            "alpha": 1.0,
            "max_length_ratio": 1.5,
            "max_length_extra": 10,
            "no_repeat_ngram_size": 3,
        },
        "margin": dataclasses.asdict(config.margin),
        **({"init_from": config.init_from} if config.init_from else {}),
    }


def _export(config, run_dir: Path, model, data, tokenizer, state) -> Path:
    """Write the average of the last checkpoints as ``run_dir/model``, the run's result."""
    paths = list_checkpoints(run_dir / "checkpoints")[-config.eval.average_last :]
    averaged = Transformer(model.config, pad_id=model.pad_id)
    averaged.load_state_dict(average_checkpoints(paths))
    export_dir = save_model_dir(
        run_dir / "model",
        averaged,
        data.tokenizer_path,
        _metadata(config, state, f"average of {len(paths)} checkpoints"),
    )
    logger.info("exported %s", export_dir)
    return export_dir


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
