"""The ``nmt`` command: train a tokenizer and a model, translate, evaluate and serve."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
from pathlib import Path

from nmt.config import MAX_BEAM_SIZE, MAX_PENALTIES

__all__ = ["main"]

logger = logging.getLogger("nmt")

# The released model, used when --model is not given.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "hi-en"


def default_model_dir() -> Path:
    """Return the model directory from NMT_MODEL_DIR, else the released model."""
    return Path(os.environ.get("NMT_MODEL_DIR", DEFAULT_MODEL))


def beam_size(text: str) -> int:
    """Parse a beam size between 1 and MAX_BEAM_SIZE (an argparse type)."""
    value = positive_int(text)
    if value > MAX_BEAM_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BEAM_SIZE}, got {value}")
    return value


# Packages of the `train` extra (and what they bring) that only training commands import.
TRAIN_EXTRA_MODULES = frozenset({"datasets", "pyarrow"})


LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def non_negative_float(text: str) -> float:
    """Parse a finite number of at least 0 (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {value}")
    return value


def penalty_value(name: str):
    """Return an argparse type for the search penalty `name` ("alpha" or "beta"): a number
    from 0 to its maximum in `MAX_PENALTIES`."""
    maximum = MAX_PENALTIES[name]

    def parse(text: str) -> float:
        value = non_negative_float(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {value:g}")
        return value

    return parse


def search_penalties(options, alpha: float | None, beta: float | None):
    """Return the `SearchOptions` `options` with the length penalty `alpha` and the coverage
    penalty `beta` where given."""
    from dataclasses import replace

    changes = {name: value for name, value in (("alpha", alpha), ("beta", beta))
               if value is not None}
    return replace(options, **changes) if changes else options


def add_penalty_arguments(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """Add --alpha and --beta, which override the model's search penalties."""
    parser.add_argument("--alpha", type=penalty_value("alpha"), default=None,
                        help=f"GNMT length penalty α{scope} (default: the model's, 1.4 for "
                             "the released model)")
    parser.add_argument("--beta", type=penalty_value("beta"), default=None,
                        help=f"GNMT coverage penalty β{scope}, which favours translations that "
                             "attend to every source token; 0 turns it off (default: the "
                             "model's, 0 for the released model)")


def positive_int(text: str) -> int:
    """Parse an integer of at least 1 (an argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train_tokenizer(args: argparse.Namespace) -> int:
    from training.cleaning import CleaningConfig, load_eval_texts
    from training.data import SourceSpec, prepare_training_data
    from training.tokenizer_training import train_tokenizer

    data_dir = Path(args.data_dir)
    exclude_files = [data_dir / f"{name}.{side}" for name in args.exclude for side in ("hi", "en")]
    exclude = load_eval_texts([p for p in exclude_files if p.is_file()])
    dataset, report = prepare_training_data(data_dir, [SourceSpec(s) for s in args.sources],
                                            CleaningConfig(), exclude=exclude)
    logger.info("cleaning: %s", report)
    out = Path(args.out) / "tokenizer.model"
    train_tokenizer(list(dataset["hi"]) + list(dataset["en"]), out, vocab_size=args.vocab_size,
                    model_type=args.model_type)
    print(out)
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.trainer import train

    overrides = {"out_dir": args.out_dir} if args.out_dir else {}
    config = load_config(Path(args.config), overrides)
    model_dir = train(config, Path(args.data_dir))
    print(model_dir)
    return 0


def read_input_lines(stream) -> list[str]:
    """Read UTF-8 lines from a binary stream, without their "\n"; raise ValueError naming the
    first line that is not valid UTF-8."""
    lines = []
    for number, raw in enumerate(stream, start=1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\n"))
        except UnicodeDecodeError as error:
            raise ValueError(f"input line {number} is not valid UTF-8: byte "
                             f"0x{raw[error.start]:02x} at offset {error.start}") from error
    return lines


def _translate(args: argparse.Namespace) -> int:
    from nmt import gemm
    from nmt.model_dir import check_model_dir, engine_mismatch
    from nmt.pipeline import translate_texts
    from nmt.translator import Translator

    # Options, settings and the model are checked before the input is read, so that a mistake
    # neither waits for typing nor consumes piped input.
    gemm.check_threads(args.threads, "--threads")
    gemm.check_streams(args.streams, args.threads)
    if args.engine == "ctranslate2":
        translator = _load_ct2_translator(args)
    else:
        if args.streams > 1:
            gemm.use_worker_thread_backend()  # the searches run on a thread pool
        gemm.backend()  # an invalid NMT_GEMM raises here
        mismatch = engine_mismatch(args.model, "native")
        if mismatch:
            raise ValueError(mismatch)
        check_model_dir(args.model)
        translator = Translator.load(args.model)
    translator.options = search_penalties(translator.options, args.alpha, args.beta)
    beam = args.beam_size
    if beam is None:
        # As in the service, the model's beam widens to hold the n-best list.
        beam = max(translator.options.beam_size, args.n_best)
    elif args.n_best > beam:
        raise ValueError(f"--n-best must be at most --beam-size ({beam}), got {args.n_best}. "
                         "Raise --beam-size or lower --n-best.")
    lines = read_input_lines(sys.stdin.buffer)
    if args.engine == "native":
        if args.int8:
            from nmt.quantize import quantize_translator

            quantize_translator(translator)
        gemm.set_threads(args.threads or None, quantized=args.int8)
        translator.streams = args.streams
    for start in range(0, len(lines), args.batch_lines):
        chunk = lines[start:start + args.batch_lines]
        results = translate_texts(translator, chunk, beam_size=beam, n_best=args.n_best,
                                  max_length=args.max_length)
        for number, result in enumerate(results, start=start):
            if args.n_best == 1:
                print(result.translation, flush=False)
                continue
            # Moses-style n-best lines without the feature field, best first. The spaces and
            # line-end characters around a line's text stay out of the field.
            texts = [result.translation, *result.alternatives]
            scores = [result.score, *result.alternative_scores]
            for text, score in zip(texts, scores, strict=True):
                print(f"{number} ||| {text.strip()} ||| {score:.4f}", flush=False)
    sys.stdout.flush()
    return 0


def _load_ct2_translator(args: argparse.Namespace):
    """Load the CTranslate2 export in `args.model`, int8 with `--int8`, else in the compute type
    it was exported with. Raise ValueError, naming the folder, where that is not possible."""
    from nmt import gemm
    from nmt.ct2 import CT2Translator
    from nmt.model_dir import CT2_FILES, engine_mismatch

    try:
        import ctranslate2  # noqa: F401  (checked first: without it no folder can be used)
    except ImportError as error:
        raise ValueError("--engine ctranslate2 needs the ct2 extra: pip install "
                         f"'hindi-nmt[ct2]' ({error})") from error
    model = args.model
    if model.exists() and not model.is_dir():
        raise ValueError(f"model directory {model} is a file, not a directory")
    if not model.is_dir():
        raise ValueError(f"model directory {model} does not exist")
    mismatch = engine_mismatch(model, "ctranslate2")
    if mismatch:
        raise ValueError(mismatch)
    missing = [name for name in CT2_FILES if not (model / name).is_file()]
    if missing:
        raise ValueError(f"{model} is not a complete `nmt export-ct2` folder: it is missing "
                         f"{', '.join(missing)}")
    # CTranslate2 picks its own thread count for one stream. Streams share the CPUs, as in the
    # native engine, instead of each taking them all.
    threads = args.threads or (gemm.available_cpus() if args.streams > 1 else 0)
    try:
        return CT2Translator.load(model, compute_type="int8" if args.int8 else "default",
                                  threads=threads, streams=args.streams)
    except (RuntimeError, KeyError) as error:  # metadata.json errors name the file already
        raise ValueError(f"{model} is not a usable `nmt export-ct2` folder ({error!r}); "
                         "export it again") from error


def _average(args: argparse.Namespace) -> int:
    import torch

    from nmt.model import Transformer
    from nmt.model_dir import load_model_dir, save_model_dir
    from nmt.translator import SearchOptions
    from training.checkpoints import average_checkpoints, list_checkpoints

    run_dir = Path(args.run_dir)
    model, tokenizer, metadata = load_model_dir(run_dir / "model")
    # A bad search setting stops the command here, before it averages or writes anything.
    source = str(run_dir / "model" / "metadata.json")
    changes = {name: getattr(args, name) for name in ("alpha", "beta")
               if getattr(args, name) is not None}
    if changes:
        search = metadata.get("search", {})
        if not isinstance(search, dict):
            raise ValueError(f'{source}: "search" must be an object, got {search!r}')
        metadata["search"] = {**search, **changes}
        source += " with " + " and ".join(f"--{name} {value:g}" for name, value in changes.items())
    SearchOptions.from_metadata(metadata, source)

    paths = list_checkpoints(run_dir / "checkpoints")[-args.last:]
    averaged = Transformer(model.config, pad_id=tokenizer.pad_id)
    averaged.load_state_dict(average_checkpoints(paths))
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    metadata = {**metadata, "weights": f"average of {len(paths)} checkpoints"}
    save_model_dir(Path(args.out), averaged, run_dir / "model" / "tokenizer.model", metadata,
                   dtype=dtype)
    print(args.out)
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from nmt.model_dir import load_model_dir, save_model_dir

    model, tokenizer, metadata = load_model_dir(Path(args.model))
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    save_model_dir(Path(args.out), model, Path(args.model) / "tokenizer.model", metadata,
                   dtype=dtype)
    print(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nmt", description=__doc__)
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="logging level (default: INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    tok = commands.add_parser("train-tokenizer", help="train the joint SentencePiece model")
    tok.add_argument("--data-dir", required=True, help="folder the source names are relative to")
    tok.add_argument("--sources", nargs="+", required=True,
                     help="training sources, e.g. train/iitb-sample (NAME.hi + NAME.en), a .tsv, "
                          "a .jsonl or the hub id cfilt/iitb-english-hindi")
    tok.add_argument("--exclude", nargs="*", default=["eval/iitb-dev", "eval/iitb-test",
                                                     "eval/flores-devtest"],
                     help="evaluation sets whose sentences are left out")
    tok.add_argument("--vocab-size", type=int, default=8000, help="pieces (default: 8000)")
    tok.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
    tok.add_argument("--out", required=True, help="output folder for tokenizer.model")
    tok.set_defaults(run=_train_tokenizer)

    trn = commands.add_parser("train", help="train a model; resumes when the run has checkpoints")
    trn.add_argument("--config", required=True, help="experiment YAML file")
    trn.add_argument("--data-dir", required=True,
                     help="folder the config's sources are relative to")
    trn.add_argument("--out-dir", help="parent folder of the run folder (default: the config's)")
    trn.set_defaults(run=_train)

    tra = commands.add_parser("translate",
                              help="translate Hindi lines on stdin to English on stdout")
    tra.add_argument("--model", type=Path, default=default_model_dir(),
                     help="model directory, or with --engine ctranslate2 a folder written by "
                          "nmt export-ct2 (default: NMT_MODEL_DIR, else the released model)")
    tra.add_argument("--beam-size", type=beam_size, default=None,
                     help=f"beam size, at most {MAX_BEAM_SIZE} (default: the model's, 4 for the "
                          "released model)")
    tra.add_argument("--threads", type=positive_int, default=None,
                     help="inference threads, at most the CPUs available (default: one per core)")
    tra.add_argument("--batch-lines", type=positive_int, default=256,
                     help="lines read per translate call, which the engine batches by length "
                          "(default: 256)")
    tra.add_argument("--streams", type=positive_int, default=1,
                     help="batches of one call searched at once, sharing the threads; at most "
                          "--threads (default: 1; see the README)")
    tra.add_argument("--engine", choices=("native", "ctranslate2"), default="native",
                     help="search engine: native (PyTorch) or ctranslate2, for which --model is "
                          "a folder written by nmt export-ct2 (needs the ct2 extra; default: "
                          "native)")
    tra.add_argument("--int8", action="store_true",
                     help="quantize the linear layers to int8 (faster on CPU, see benchmarks/); "
                          "with --engine ctranslate2, CTranslate2's int8 compute type")
    tra.add_argument("--n-best", type=beam_size, default=1, metavar="N",
                     help=f"distinct translations per line, up to N (at most {MAX_BEAM_SIZE} and "
                          "--beam-size; without --beam-size the beam widens to N); above 1, "
                          "each is printed as 'LINE ||| TRANSLATION ||| SCORE', best first, "
                          "LINE counted from 0 (default: 1, the translation alone)")
    add_penalty_arguments(tra)
    tra.add_argument("--max-length", type=positive_int, default=None, metavar="N",
                     help="maximum target tokens per sentence, eos not counted; the model's "
                          "positions cap it at 254 for the released model (default: 1.5 × "
                          "source tokens + 10, eos included, from the model's metadata.json)")
    tra.set_defaults(run=_translate)

    from training.evaluate import add_evaluate_arguments, run_evaluate

    ev = commands.add_parser("evaluate", help="BLEU, chrF2 and chrF++ with sacrebleu signatures")
    add_evaluate_arguments(ev)
    ev.set_defaults(run=run_evaluate)

    avg = commands.add_parser("average", help="average a run's last checkpoints into a model dir")
    avg.add_argument("--run-dir", required=True, help="run folder with checkpoints/ and model/")
    avg.add_argument("--last", type=positive_int, default=5,
                     help="checkpoints to average (default: 5)")
    avg.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    avg.add_argument("--alpha", type=penalty_value("alpha"), default=None,
                     help="length penalty α to store as the model's search default "
                          "(default: the run's)")
    avg.add_argument("--beta", type=penalty_value("beta"), default=None,
                     help="coverage penalty β to store as the model's search default, 0 for "
                          "none (default: the run's)")
    avg.add_argument("--out", required=True, help="output model directory")
    avg.set_defaults(run=_average)

    exp = commands.add_parser("export", help="copy a model directory with weights in another dtype")
    exp.add_argument("--model", required=True, help="model directory")
    exp.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp16")
    exp.add_argument("--out", required=True, help="output model directory")
    exp.set_defaults(run=_export)

    from nmt.ct2 import add_export_ct2_arguments, run_export_ct2

    ct2 = commands.add_parser("export-ct2", help="convert a model directory to CTranslate2")
    add_export_ct2_arguments(ct2)
    ct2.set_defaults(run=run_export_ct2)

    try:
        from service.cli import add_serve_arguments, run_serve
    except ImportError as error:  # a broken install: serve reports it instead of "invalid choice"
        # No option prefix, so that every argument lands in `ignored` and serve runs to report.
        srv = commands.add_parser("serve", help="run the HTTP service", prefix_chars="\0")
        srv.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
        srv.set_defaults(run=functools.partial(_service_missing, error))
    else:
        srv = commands.add_parser("serve", help="run the HTTP service")
        add_serve_arguments(srv)
        srv.set_defaults(run=run_serve)
    return parser


def _service_missing(error: ImportError, args: argparse.Namespace) -> int:
    print(f"nmt serve: error: the service cannot be imported ({error}); reinstall the package "
          "with its dependencies: pip install -e .", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader closed the pipe (as `| head` does). Python would report the same error
        # again when it flushes stdout at exit, so stdout goes to /dev/null first.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (FileNotFoundError, ValueError) as error:
        print(f"nmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if error.name not in TRAIN_EXTRA_MODULES:
            raise
        print(f"nmt {args.command}: error: the training pipeline needs the package {error.name!r}, "
              "which the train extra installs: pip install -e '.[train]'", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
