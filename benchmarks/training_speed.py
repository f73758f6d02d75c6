"""Training step speed: this project's Transformer against a plain torch.nn.Transformer.

Both models get the model shape and batch size of an experiment config (default
configs/cpu-small.yaml), the same joint embedding (scaled by √D, plus sinusoidal positions), the
same tied output projection, gradient clipping and AdamW. Three steps are timed:

- this project's step: `nmt.model.Transformer` and the trainer's loss
  (`training.loss.translation_loss`, which projects the real target positions only);
- the plain step, the reference: `torch.nn.Transformer`, the output projection at every target
  position and `F.cross_entropy` with the same label smoothing and `ignore_index` for padding;
- `torch.nn.Transformer` with the trainer's loss, which separates what the model gains from
  what the loss gains.

The trainer's own `make_batches` and `collate` build the batches from real sentence pairs
encoded with --tokenizer (tests/fixtures/iitb-300, or the larger parallel files that --pairs
names, whose length-bucketed batches have the padding of real training) or, without a tokenizer,
from random ids as long as the words × 1.4. The steps alternate in rounds, so that drift in
machine load affects all alike. The figure is target tokens (not padding) per second of wall
time, and per second of process CPU time, which is steadier when other processes share the CPU.

    python benchmarks/training_speed.py --tokenizer models/hi-en/tokenizer.model \
        --pairs DATA_DIR/train/iitb-sample --batches 8
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nmt import gemm  # noqa: E402
from nmt.cli import positive_int  # noqa: E402
from nmt.config import ModelConfig  # noqa: E402
from nmt.model import Transformer, sinusoidal_positions  # noqa: E402
from training.batching import Batch, collate, make_batches  # noqa: E402
from training.config import TrainConfig, load_config  # noqa: E402
from training.loss import translation_loss  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "iitb-300"
PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the ids `training.tokenizer_training` assigns
MAX_TOKENS = 128  # data.max_tokens of the configs
SYNTHETIC_TOKENS_PER_WORD = 1.4  # rough SentencePiece pieces per word of the 8k joint vocabulary


class PlainTransformer(nn.Module):
    """torch.nn.Transformer with this project's embeddings, positions and tied output projection."""

    def __init__(self, config: ModelConfig, pad_id: int) -> None:
        super().__init__()
        self.config = config
        self.pad_id = pad_id
        self.embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=pad_id)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=config.d_model ** -0.5)
        self.register_buffer("positions", sinusoidal_positions(config.max_positions,
                                                               config.d_model), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        with warnings.catch_warnings():
            # torch warns that its nested-tensor fast path does not apply to pre-norm layers; it
            # is an inference path, unused by a training step either way.
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.transformer = nn.Transformer(
                d_model=config.d_model, nhead=config.n_heads,
                num_encoder_layers=config.encoder_layers,
                num_decoder_layers=config.decoder_layers, dim_feedforward=config.d_ff,
                dropout=config.dropout, activation=config.activation, batch_first=True,
                norm_first=config.pre_norm)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.embedding.weight

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) * math.sqrt(self.config.d_model)
        return self.dropout(x + self.positions[: ids.size(1)])

    def forward(self, source: torch.Tensor, target_input: torch.Tensor) -> torch.Tensor:
        length = target_input.size(1)
        # Boolean like the padding masks (True = may not attend), as nn.Transformer expects.
        causal = torch.ones(length, length, dtype=torch.bool).triu(diagonal=1)
        source_padding = source == self.pad_id
        return self.transformer(
            self.embed(source), self.embed(target_input), tgt_mask=causal,
            src_key_padding_mask=source_padding, memory_key_padding_mask=source_padding,
            tgt_key_padding_mask=target_input == self.pad_id, tgt_is_causal=True)


def pair_files(prefix: Path) -> tuple[Path, Path]:
    """Return the files PREFIX.hi and PREFIX.en (a dot in PREFIX stays, unlike with_suffix)."""
    return prefix.with_name(prefix.name + ".hi"), prefix.with_name(prefix.name + ".en")


def load_pairs(tokenizer_path: Path | None, seed: int,
               prefix: Path = FIXTURE) -> tuple[list[list[int]], list[list[int]]]:
    """Return encoded source and target sentences of PREFIX.hi/.en (real or synthetic ids),
    leaving out pairs longer than the trainer's 128-token limit."""
    # split("\n"), not splitlines(): some corpora contain U+2028 inside a line.
    hindi_path, english_path = pair_files(prefix)
    hindi = hindi_path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    english = english_path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    if tokenizer_path is not None:
        from nmt.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_file(tokenizer_path)
        pairs = [(s, t) for s, t in zip(tokenizer.encode_batch(hindi),
                                        tokenizer.encode_batch(english), strict=True)
                 if len(s) < MAX_TOKENS and len(t) < MAX_TOKENS]
        return [s for s, _ in pairs], [t for _, t in pairs]

    rng = random.Random(seed)

    def fake(line: str) -> list[int]:
        length = max(1, round(len(line.split()) * SYNTHETIC_TOKENS_PER_WORD))
        return [rng.randrange(EOS + 1, 8000) for _ in range(length)]

    return [fake(line) for line in hindi], [fake(line) for line in english]


def make_fixed_batches(config: TrainConfig, sources, targets, count: int) -> list[Batch]:
    """Return `count` of the batches the trainer would build, drawn with the config's seed."""
    indices = make_batches([len(s) + 1 for s in sources], [len(t) + 1 for t in targets],
                           batch_tokens=config.optim.batch_tokens, seed=config.seed)
    chosen = random.Random(config.seed).sample(indices, min(count, len(indices)))
    return [collate([sources[i] for i in batch], [targets[i] for i in batch], pad_id=PAD,
                    bos_id=BOS, eos_id=EOS) for batch in chosen]


def plain_loss(states: torch.Tensor, output_weight: torch.Tensor, target: torch.Tensor, *,
               label_smoothing: float) -> tuple[torch.Tensor, int]:
    """Return the summed label-smoothed cross-entropy as a plain training script computes it:
    logits (B, T, V) at every position, padding left out by `ignore_index`."""
    logits = F.linear(states, output_weight)  # (B, T, V)
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                            ignore_index=PAD, label_smoothing=label_smoothing, reduction="sum")
    return total, int((target != PAD).sum())


def project_loss(states: torch.Tensor, output_weight: torch.Tensor, target: torch.Tensor, *,
                 label_smoothing: float) -> tuple[torch.Tensor, int]:
    """Return the trainer's summed loss, without the margin term."""
    total, _, tokens = translation_loss(states, output_weight, target, pad_id=PAD,
                                        label_smoothing=label_smoothing)
    return total, tokens


class Stepper:
    """One model with its optimizer, running a training step: loss, backward, clip, AdamW."""

    def __init__(self, model: nn.Module, config: TrainConfig, loss, *, bf16: bool = False) -> None:
        self.model = model.train()
        self.config = config
        self.loss = loss
        self.bf16 = bf16
        optim = config.optim
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=optim.betas,
                                           eps=optim.eps, weight_decay=optim.weight_decay)

    def step(self, batch: Batch) -> int:
        precision = (torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16
                     else contextlib.nullcontext())
        with precision:
            states = self.model(batch.source, batch.target_input)  # (B, T, D)
            total, tokens = self.loss(states, self.model.output_weight, batch.target_output,
                                      label_smoothing=self.config.optim.label_smoothing)
            (total / max(tokens, 1)).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return tokens


def time_steps(stepper: Stepper, batches: list[Batch]) -> tuple[float, float]:
    """Return target tokens per wall second and per process CPU second over `batches`."""
    started, cpu_started = time.perf_counter(), time.process_time()
    tokens = sum(stepper.step(batch) for batch in batches)
    return (tokens / (time.perf_counter() - started),
            tokens / (time.process_time() - cpu_started))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cpu-small.yaml",
                        help="experiment YAML whose model shape and batch_tokens are used")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="SentencePiece model that encodes the fixture "
                             "(default: synthetic ids)")
    parser.add_argument("--pairs", type=Path, default=FIXTURE, metavar="PREFIX",
                        help="batch the parallel files PREFIX.hi and PREFIX.en (default: the "
                             "300-pair test fixture)")
    parser.add_argument("--batches", type=positive_int, default=4,
                        help="batches per round (default: 4)")
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="timed rounds per model, after one warm-up round (default: 5)")
    parser.add_argument("--bf16", action="store_true",
                        help="also time this project's model under CPU bf16 autocast (mixed "
                             "precision, so not the same arithmetic as the fp32 figures)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads (default: the config's, else torch's default)")
    args = parser.parse_args(argv)
    try:
        gemm.check_threads(args.threads, "--threads")
    except ValueError as error:
        parser.error(str(error))
    missing = [str(path) for path in pair_files(args.pairs) if not path.is_file()]
    if missing:
        parser.error(f"--pairs {args.pairs}: no file {' or '.join(missing)} (PREFIX names the "
                     "files PREFIX.hi and PREFIX.en)")
    if not args.config.is_file():
        parser.error(f"--config {args.config}: file not found")
    if args.tokenizer is not None and not args.tokenizer.is_file():
        parser.error(f"--tokenizer {args.tokenizer}: file not found")

    config = load_config(args.config)
    threads = args.threads or config.threads
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    shape = config.model
    model_config = ModelConfig(vocab_size=8000, d_model=shape.d_model, n_heads=shape.n_heads,
                               d_ff=shape.d_ff, encoder_layers=shape.encoder_layers,
                               decoder_layers=shape.decoder_layers, dropout=shape.dropout,
                               attention_dropout=shape.attention_dropout,
                               activation=shape.activation, max_positions=shape.max_positions,
                               pre_norm=shape.pre_norm, tie_embeddings=True)
    sources, targets = load_pairs(args.tokenizer, config.seed, args.pairs)
    batches = make_fixed_batches(config, sources, targets, args.batches)

    ours, plain, plain_ours = ("nmt.model.Transformer", "torch.nn.Transformer",
                               "torch.nn.Transformer, project loss")
    steppers = {
        ours: Stepper(Transformer(model_config, pad_id=PAD), config, project_loss),
        plain: Stepper(PlainTransformer(model_config, pad_id=PAD), config, plain_loss),
        plain_ours: Stepper(PlainTransformer(model_config, pad_id=PAD), config, project_loss),
    }
    if args.bf16:
        steppers[f"{ours} bf16"] = Stepper(Transformer(model_config, pad_id=PAD), config,
                                          project_loss, bf16=True)
    for name, stepper in steppers.items():
        parameters = sum(p.numel() for p in stepper.model.parameters())
        print(f"{name}: {parameters / 1e6:.2f}M parameters")
    sizes = [tuple(batch.source.shape) + (batch.target_input.size(1),) for batch in batches]
    print(f"config {args.config.name}, threads {torch.get_num_threads()}, "
          f"{'real' if args.tokenizer else 'synthetic'} batches of {args.pairs.name} "
          f"(B, S, T): {sizes}")
    source_padding = statistics.mean(float((b.source == PAD).float().mean()) for b in batches)
    target_padding = statistics.mean(float((b.target_output == PAD).float().mean())
                                     for b in batches)
    print(f"padding: {source_padding:.0%} of source positions, {target_padding:.0%} of target "
          f"positions")

    wall: dict[str, list[float]] = {name: [] for name in steppers}
    cpu: dict[str, list[float]] = {name: [] for name in steppers}
    for round_index in range(args.rounds + 1):
        for name, stepper in steppers.items():
            wall_rate, cpu_rate = time_steps(stepper, batches)
            if round_index > 0:  # the first round warms up allocators and caches
                wall[name].append(wall_rate)
                cpu[name].append(cpu_rate)

    for name in steppers:
        print(f"{name:36s} median {statistics.median(wall[name]):8.0f} target tokens/s, "
              f"{statistics.median(cpu[name]):8.0f} per CPU second "
              f"(rounds: {', '.join(f'{v:.0f}' for v in wall[name])})")
    for name, reference, target in ((ours, plain, " (target >= 1.3)"), (ours, plain_ours, ""),
                                    (f"{ours} bf16", plain, "")):
        if name not in steppers:
            continue
        for clock, rates in (("wall time", wall), ("CPU time", cpu)):
            ratio = statistics.median(rates[name]) / statistics.median(rates[reference])
            print(f"ratio {name} / {reference} by {clock}: {ratio:.2f}{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
