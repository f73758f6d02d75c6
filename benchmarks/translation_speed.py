"""Translation speed of the PyTorch engine against CTranslate2 on the same weights.

Both engines translate the first N sentences of the IITB test set (newstest2014 hi-en) through the
same `Translator` front end: normalization, placeholders and length-sorted batches. Only the search
differs, `nmt.search` on PyTorch or CTranslate2's `translate_batch` on a model exported by
`nmt.ct2.export_ct2`. Every combination of search (greedy, beam 4), batch size (1, 32) and
compute type runs with the same thread count, each engine in a process of its own. The int8
compute type is torch dynamic quantization of the linear layers (`nmt.quantize`) for PyTorch and
CTranslate2's int8 compute type. Target tokens are the SentencePiece pieces of the output text,
counted the same way for both engines.

By default each `translate` call gets one batch: the next `batch size` sentences in test-set
order, as a service's batch of requests would be. With `--whole-set`, one call gets every
sentence, and the engine sorts them by length into batches of at most `batch size`, as
`nmt translate` does with a file. `--streams N` then lets each engine search N of those batches
at once, on `threads / N` threads each (CTranslate2's `inter_threads` and `intra_threads`).

On a shared or virtual machine one run of a configuration can be up to a fifth faster or slower
than the next. `--rounds N` measures every configuration N times, each time in fresh processes,
with the engines taking turns to go first. The table's speeds then come from the median wall
and CPU times of the rounds, and its last column gives the slowest and fastest round's target
tokens/s. Each ratio is the median of the rounds' own ratios (native ÷ CTranslate2 of the same
round), with their lowest and highest. BLEU and the count of identical outputs come from the
first round, and the report prints a note if an engine's outputs differed between rounds.

    python benchmarks/translation_speed.py --model models/hi-en --data-dir DATA_DIR --rounds 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nmt import gemm  # noqa: E402
from nmt.quantize import quantize_translator  # noqa: E402
from nmt.translator import Translator  # noqa: E402
from training.evaluate import compare_to_baseline, read_lines, score_corpus  # noqa: E402

TEST_SET = Path("eval") / "iitb-test"
WARMUP_SENTENCES = 8
ENGINES = ("native", "ctranslate2")
COMPUTE_TYPES = ("float32", "int8")


@dataclass(frozen=True)
class Result:
    """One timed run: an engine on one configuration."""

    engine: str
    compute_type: str
    beam_size: int
    batch_size: int
    seconds: float
    cpu_seconds: float
    sentences: int
    target_tokens: int
    bleu: float
    outputs: tuple[str, ...]
    # Native engine only: decoder calls and the target rows (hypotheses) they ran on.
    decode_steps: int = 0
    decode_rows: int = 0

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.target_tokens / self.seconds


def load_engine(engine: str, model_dir: Path, ct2_dir: Path | None, compute_type: str,
                threads: int, streams: int = 1) -> Translator:
    """Load one engine for one compute type, on `threads` inference threads shared by `streams`
    searches at once."""
    if engine == "native":
        translator = Translator.load(model_dir)
        if compute_type == "int8":
            quantize_translator(translator)
        gemm.set_threads(threads, quantized=compute_type == "int8")
        translator.streams = streams
        return translator
    from nmt.ct2 import CT2Translator

    return CT2Translator.load(ct2_dir, compute_type=compute_type, threads=threads,
                              streams=streams)


def measure_engine(engine: str, args: argparse.Namespace, ct2_dir: Path | None,
                   sources: list[str], references: list[str]) -> list[Result]:
    """Time every configuration of one engine. main runs this in a fresh process per engine."""
    results = []
    for compute_type in args.compute_types:
        translator = load_engine(engine, args.model, ct2_dir, compute_type, args.threads,
                                 args.streams)
        for beam_size in args.beam_sizes:
            for batch_size in args.batch_sizes:
                results.append(run(translator, sources, references, engine=engine,
                                   compute_type=compute_type, beam_size=beam_size,
                                   batch_size=batch_size, whole_set=args.whole_set))
                print_progress(results[-1])
    return results


def run(translator: Translator, sources: list[str], references: list[str], *, engine: str,
        compute_type: str, beam_size: int, batch_size: int, whole_set: bool = False) -> Result:
    """Translate `sources` in batches of `batch_size` and time it: one `translate` call per
    batch, or with `whole_set` one call that makes the batches itself."""
    translator.options = replace(translator.options, max_batch_size=batch_size)
    call_size = len(sources) if whole_set else batch_size
    # Untimed warm-up at this configuration: both engines' allocators grow their caches for the
    # largest batch they see, and CTranslate2's first batch of a new shape ran far slower.
    warmup = sources[:max(batch_size, WARMUP_SENTENCES)]
    for start in range(0, len(warmup), batch_size):
        translator.translate(warmup[start:start + batch_size], beam_size=beam_size)
    outputs: list[str] = []
    counter = _DecodeCounter(translator) if engine == "native" else None
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(sources), call_size):
        chunk = sources[start:start + call_size]
        outputs += [t.text for t in translator.translate(chunk, beam_size=beam_size)]
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    if counter is not None:
        counter.detach()

    tokens = sum(len(ids) for ids in translator.tokenizer.encode_batch(outputs, normalize=False))
    bleu = score_corpus(outputs, references).bleu
    return Result(engine, compute_type, beam_size, batch_size, seconds, cpu_seconds,
                  len(sources), tokens, bleu, tuple(outputs),
                  counter.steps if counter else 0, counter.rows if counter else 0)


class _DecodeCounter:
    """Count the decoder calls of a native translator and the target rows of each.

    A batch keeps decoding until its last sentence ends, with fewer rows as sentences finish,
    so the mean rows per step shows how full the batches stayed.
    """

    def __init__(self, translator: Translator) -> None:
        self.model = translator.model
        self.steps = self.rows = 0
        decode_step = self.model.decode_step

        def counted(target, cache):
            self.steps += 1
            self.rows += target.size(0)
            return decode_step(target, cache)

        self.model.decode_step = counted  # an instance attribute hides the method until detach

    def detach(self) -> None:
        del self.model.decode_step


def median_result(rounds: list[Result]) -> Result:
    """Return the first round with its wall and CPU seconds replaced by the rounds' medians.

    Its other fields (tokens, BLEU, outputs) are the same in every round of a deterministic
    engine, and `print_report` notes where they are not.
    """
    return replace(rounds[0], seconds=statistics.median(r.seconds for r in rounds),
                   cpu_seconds=statistics.median(r.cpu_seconds for r in rounds))


def spread(values: list[float]) -> str:
    """Format the median of `values`, and with several values their lowest and highest."""
    text = f"{statistics.median(values):5.2f}"
    if len(values) > 1:
        text += f" ({min(values):.2f}-{max(values):.2f})"
    return text


def print_report(results: list[Result], references: list[str]) -> None:
    """Print the figures of every configuration, the medians where it ran several rounds."""
    rounds: dict[tuple, list[Result]] = defaultdict(list)
    for r in results:
        rounds[(r.engine, r.compute_type, r.beam_size, r.batch_size)].append(r)
    count = max(len(runs) for runs in rounds.values())
    by_key = {key: median_result(runs) for key, runs in rounds.items()}

    if count > 1:
        print(f"median of {count} rounds; tok/s range: the slowest and fastest round")
    print(f"{'engine':12s} {'compute':8s} {'beam':>4s} {'batch':>5s} {'sent/s':>8s} "
          f"{'tok/s':>8s} {'cpu s':>7s} {'BLEU':>6s}" + ("   tok/s range" if count > 1 else ""))
    for key, r in by_key.items():
        line = (f"{r.engine:12s} {r.compute_type:8s} {r.beam_size:4d} {r.batch_size:5d} "
                f"{r.sentences_per_second:8.2f} {r.tokens_per_second:8.1f} "
                f"{r.cpu_seconds:7.1f} {r.bleu:6.2f}")
        if count > 1:
            speeds = [run.tokens_per_second for run in rounds[key]]
            line += f"   {min(speeds):.1f}-{max(speeds):.1f}"
        print(line)
    for key, runs in rounds.items():
        if any(run.outputs != runs[0].outputs for run in runs):
            print(f"NOTE: {' '.join(map(str, key))}: the rounds' outputs differ")

    compared = [(key, runs, rounds[("ctranslate2", *key[1:])]) for key, runs in rounds.items()
                if key[0] == "native" and ("ctranslate2", *key[1:]) in rounds]
    if compared:
        print("\nnative / ctranslate2 (target tokens per wall second; 1.0 = as fast):")
    for (_, compute_type, beam, batch), native_runs, other_runs in compared:
        pairs = list(zip(native_runs, other_runs, strict=True))  # one pair per round
        wall = [native.tokens_per_second / other.tokens_per_second for native, other in pairs]
        # Tokens per CPU second: steadier than wall time when other processes share the CPU.
        cpu = [(native.target_tokens / native.cpu_seconds)
               / (other.target_tokens / other.cpu_seconds) for native, other in pairs]
        native, other = pairs[0]
        same = sum(a == b for a, b in zip(native.outputs, other.outputs, strict=True))
        print(f"  {compute_type:8s} beam {beam} batch {batch:2d}: {spread(wall)}   "
              f"(by CPU time {spread(cpu).strip()}; identical outputs: "
              f"{same}/{native.sentences})")

    print("\nnative decoding steps (decoder calls; rows = hypotheses decoded per call):")
    for r in by_key.values():
        if r.engine == "native" and r.decode_steps:
            print(f"  {r.compute_type:8s} beam {r.beam_size} batch {r.batch_size:2d}: "
                  f"{r.decode_steps} steps, {r.decode_rows / r.decode_steps:.1f} rows per step "
                  f"(a full batch has {r.beam_size * r.batch_size})")

    largest_batch = max(r.batch_size for r in results)
    pairs = [(engine, beam, quantized, by_key[(engine, "float32", beam, batch)])
             for (engine, compute_type, beam, batch), quantized in by_key.items()
             if compute_type == "int8" and batch == largest_batch
             and (engine, "float32", beam, batch) in by_key]
    if pairs:
        print("\nint8 BLEU change (int8 - float32; p: paired bootstrap, 1000 resamples):")
    for engine, beam, quantized, full in pairs:
        comparison = compare_to_baseline(list(quantized.outputs), list(full.outputs),
                                         list(references))
        print(f"  {engine:12s} beam {beam}: {quantized.bleu - full.bleu:+.2f}  "
              f"(p = {comparison.bleu.p_value:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--ct2-model", type=Path, default=None,
                        help="its fp32 CTranslate2 export (default: export to a temporary folder)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                        help="data folder with eval/iitb-test.hi and .en "
                             "(default: shared/data beside the repository)")
    parser.add_argument("--sentences", type=int, default=200,
                        help="first N test sentences to translate (default: 200)")
    parser.add_argument("--threads", type=int, default=2,
                        help="inference threads of both engines (default: 2)")
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--compute-types", nargs="+", choices=COMPUTE_TYPES,
                        default=list(COMPUTE_TYPES))
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--whole-set", action="store_true",
                        help="give each engine all sentences in one call, to batch by length")
    parser.add_argument("--streams", type=int, default=1,
                        help="batches each engine searches at once, sharing --threads "
                             "(default: 1; above 1 needs --whole-set)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times to measure every configuration, the engines taking turns "
                             "to go first; the report gives medians (default: 1)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    # A value given twice would be measured twice and counted as two rounds.
    for option in ("beam_sizes", "batch_sizes", "compute_types", "engines"):
        setattr(args, option, list(dict.fromkeys(getattr(args, option))))
    try:
        gemm.check_threads(args.threads, "--threads")
    except ValueError as error:
        parser.error(str(error))
    if args.streams < 1 or args.threads < args.streams:
        parser.error(f"--streams must be between 1 and --threads ({args.threads}), "
                     f"got {args.streams}")
    if args.streams > 1 and not args.whole_set:
        parser.error("--streams above 1 needs --whole-set: a call of one batch has nothing to "
                     "search at the same time")

    sources = read_lines(args.data_dir / TEST_SET.with_suffix(".hi"))[: args.sentences]
    references = read_lines(args.data_dir / TEST_SET.with_suffix(".en"))[: args.sentences]
    if args.streams > 1:
        # The searches run on a thread pool. The engines' processes inherit the backend chosen
        # for that through NMT_GEMM.
        gemm.use_worker_thread_backend()
    print(f"{len(sources)} sentences of {TEST_SET}, {args.threads} threads, torch "
          f"{torch.__version__}, native float32 matrix products on {gemm.backend()} (nmt.gemm)")
    print(f"calls: {'all sentences at once' if args.whole_set else 'one per batch'}, "
          f"{args.streams} search stream(s) per engine")
    if "ctranslate2" in args.engines:
        # CTranslate2 multiplies with Intel MKL on Intel CPUs unless CT2_USE_MKL=0 selects its
        # oneDNN backend. On one AVX-512 Intel Xeon, its MKL beam search was 2.5-6 times slower.
        print(f"CTranslate2: CT2_USE_MKL={os.environ.get('CT2_USE_MKL', '(unset)')}")

    # One process per engine: torch and CTranslate2 each bring an OpenMP runtime, and in one
    # process the engine measured second ran up to 2 times slower than on its own.
    spawn = multiprocessing.get_context("spawn")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        ct2_dir = args.ct2_model
        if "ctranslate2" in args.engines and ct2_dir is None:
            from nmt.ct2 import export_ct2

            ct2_dir = export_ct2(args.model, Path(scratch) / "ct2")
        for round_index in range(args.rounds):
            if args.rounds > 1:
                print(f"round {round_index + 1} of {args.rounds}", flush=True)
            # The engines take turns to go first, so that a slow stretch of the machine does
            # not always fall on the same one.
            shift = round_index % len(args.engines)
            for engine in args.engines[shift:] + args.engines[:shift]:
                with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                    results += pool.submit(measure_engine, engine, args, ct2_dir, sources,
                                           references).result()
    print()
    print_report(results, references)
    return 0


def print_progress(result: Result) -> None:
    print(f"  done: {result.engine} {result.compute_type} beam {result.beam_size} batch "
          f"{result.batch_size}: {result.tokens_per_second:.1f} tok/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
