"""Corpus BLEU, chrF2 and chrF++ with sacrebleu, and the `nmt evaluate` command.

Scores are computed on detokenized text, exactly as the ``sacrebleu`` command line computes them
with its defaults (BLEU with the 13a tokenizer, chrF with character order 6 and beta 2), so they
are comparable with published sacreBLEU numbers. Each score comes with its sacrebleu signature.
sacrebleu also provides the optional bootstrap confidence intervals (`--confidence`) and the
paired bootstrap test against a baseline's translations (`--baseline`).

Hypotheses come from a file, from a model directory (`nmt.translator.Translator`) or from a running
translation service (``POST URL/translate`` with ``{"texts": [...]}``).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from nmt.cli import add_penalty_arguments, search_penalties
from nmt.config import MAX_BEAM_SIZE

__all__ = [
    "Comparison",
    "Interval",
    "MetricComparison",
    "Scores",
    "TranslationError",
    "add_evaluate_arguments",
    "bootstrap_seed",
    "compare_to_baseline",
    "read_lines",
    "run_evaluate",
    "score_corpus",
    "translate_with_model",
    "translate_with_service",
]

logger = logging.getLogger(__name__)

DEFAULT_BEAM_SIZE = 4
DEFAULT_BATCH_SIZE = 32
# Batches of lines per `translate` call with --model. Larger calls sort more lines by length, so
# that fewer searches run their last steps on a few long sentences, and they give --streams
# several batches to run at once.
CALL_BATCHES = 32
DEFAULT_SERVICE_TIMEOUT_S = 120.0
# Bootstrap resamples for --confidence and --baseline: sacrebleu's own default, and a limit on
# resamples × segments, because sacrebleu keeps every resample's statistics in memory at once.
# 10000 resamples of iitb-test's 2507 segments with --baseline took 28 s and peaked at 2.9 GB.
DEFAULT_BOOTSTRAP = 1000
MAX_RESAMPLED_SEGMENTS = 25_000_000
# The API key that `--service` sends, read from the environment so that it stays out of `ps`.
API_KEY_VARIABLE = "NMT_API_KEY"

EXIT_OK = 0
EXIT_TRANSLATION_FAILED = 1
EXIT_INVALID_INPUT = 2

# Characters of an HTTP error body quoted in the raised message.
_ERROR_BODY_CHARS = 500


class TranslationError(RuntimeError):
    """Raised when a translation service fails or returns an unusable response."""


# Each metric's field name and the name sacrebleu gives its scores, which is also its label.
METRIC_NAMES = {"bleu": "BLEU", "chrf2": "chrF2", "chrfpp": "chrF2++"}


def _new_metrics() -> dict[str, Any]:
    """Return fresh sacrebleu metrics by field name: BLEU, chrF2 and chrF++ (word order 2)."""
    return {"bleu": BLEU(), "chrf2": CHRF(), "chrfpp": CHRF(word_order=2)}


@dataclass(frozen=True)
class Interval:
    """A bootstrap estimate of one corpus score: the mean of the resampled scores and the half
    width of their central 95% range, as sacrebleu computes them."""

    mean: float
    half_width: float


@dataclass(frozen=True)
class Scores:
    """Corpus-level scores (0-100) with the sacrebleu signature of each metric, and bootstrap
    intervals when `score_corpus` resampled."""

    bleu: float
    chrf2: float
    chrfpp: float
    bleu_signature: str
    chrf2_signature: str
    chrfpp_signature: str
    segments: int
    bleu_interval: Interval | None = None
    chrf2_interval: Interval | None = None
    chrfpp_interval: Interval | None = None

    def format(self) -> str:
        """Format one line per metric: name, score, the bootstrap interval if any, and signature.

        An interval follows the score as in sacrebleu's output:
        "BLEU    =  5.14 (μ =  5.13 ± 0.30)".
        """
        lines = []
        for name, label in METRIC_NAMES.items():
            text = f"{label:7s} = {getattr(self, name):5.2f}"
            interval = getattr(self, f"{name}_interval")
            if interval is not None:
                text += f" (μ = {interval.mean:5.2f} ± {interval.half_width:.2f})"
            lines.append(f"{text}  {getattr(self, f'{name}_signature')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields for JSON, scores rounded to 4 decimals to drop floating-point noise
        such as 100.00000000000004. Intervals are left out when there are none."""
        values = asdict(self)
        for name in METRIC_NAMES:
            values[name] = round(values[name], 4)
            interval = values.pop(f"{name}_interval")
            if interval is not None:
                values[f"{name}_interval"] = {key: round(value, 4)
                                             for key, value in interval.items()}
        return values


def score_corpus(hypotheses: list[str], references: list[str], *,
                 bootstrap: int = 1) -> Scores:
    """Score detokenized `hypotheses` against one detokenized reference per segment.

    With `bootstrap` above 1, each metric also gets an `Interval` from that many resamples of
    the segments (sacrebleu's bootstrap, seeded with SACREBLEU_SEED, default 12345), and its
    signature records the count and seed. Raises ValueError when the lists differ in length,
    because sacrebleu's Python API would silently score only the shorter prefix, or when they
    are empty.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"line count mismatch: {len(hypotheses)} hypotheses but {len(references)} references"
        )
    if not hypotheses:
        raise ValueError("nothing to score: no hypotheses and no references")

    fields: dict[str, Any] = {"segments": len(hypotheses)}
    for name, metric in _new_metrics().items():
        score = metric.corpus_score(hypotheses, [references], n_bootstrap=bootstrap)
        fields[name] = score.score
        fields[f"{name}_signature"] = str(metric.get_signature())
        if bootstrap > 1:
            fields[f"{name}_interval"] = Interval(float(score._mean), float(score._ci))
    return Scores(**fields)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of a system against a baseline on the same segments."""

    baseline: float
    system: float
    p_value: float  # two-sided: a difference at least this large arising by chance

    @property
    def difference(self) -> float:
        return self.system - self.baseline


@dataclass(frozen=True)
class Comparison:
    """A paired bootstrap test of a system against a baseline, per metric.

    `resamples` is 0 where the translations were identical and nothing was resampled.
    """

    baseline_file: str
    resamples: int
    seed: str  # SACREBLEU_SEED as the test used it, "none" for an unseeded generator
    bleu: MetricComparison
    chrf2: MetricComparison
    chrfpp: MetricComparison

    def format(self) -> str:
        """Format a heading and one line per metric: system − baseline and the p-value.

        A p-value at the smallest value the test can give, 1 / (resamples + 1), is printed as
        an upper bound ("p <= 0.0010"), because the true p-value may be lower.
        """
        if self.resamples:
            method = f"{self.resamples} resamples, seed {self.seed}"
        else:
            method = "identical translations, nothing resampled"
        lines = [f"paired bootstrap against {self.baseline_file} ({method}); p: chance of a "
                 "difference at least this large if both came from the same system"]
        floor = 1 / (self.resamples + 1)
        for name, label in METRIC_NAMES.items():
            metric = getattr(self, name)
            relation = "<=" if self.resamples and metric.p_value <= floor else "="
            lines.append(f"{label:7s} {metric.system:6.2f} - {metric.baseline:6.2f} = "
                         f"{metric.difference:+6.2f}  p {relation} {metric.p_value:.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields for JSON, scores rounded to 4 decimals."""
        values: dict[str, Any] = {"file": self.baseline_file, "resamples": self.resamples,
                                  "seed": self.seed}
        for name in METRIC_NAMES:
            metric = getattr(self, name)
            values[name] = {"baseline": round(metric.baseline, 4),
                            "system": round(metric.system, 4),
                            "difference": round(metric.difference, 4),
                            "p_value": round(metric.p_value, 4)}
        return values


def bootstrap_seed() -> str:
    """Return SACREBLEU_SEED, the seed of sacrebleu's resampling: a positive integer, or "none"
    for an unseeded generator (default "12345"). Raise ValueError for any other value.

    sacrebleu 2.6's paired test treats 0 as no seed, so 0 is rejected rather than giving results
    that differ from run to run under a signature that records "seed:0".
    """
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    if seed.lower() == "none" or (seed.isascii() and seed.isdigit() and int(seed) > 0):
        return seed.lower()
    raise ValueError(f"SACREBLEU_SEED must be a positive integer or 'none', got {seed!r}")


def compare_to_baseline(hypotheses: list[str], baseline: list[str], references: list[str], *,
                        resamples: int = 1000, baseline_file: str = "baseline") -> Comparison:
    """Test `hypotheses` against `baseline` translations of the same segments with sacrebleu's
    paired bootstrap resampling (Koehn, 2004, "Statistical significance tests for machine
    translation evaluation"), seeded with SACREBLEU_SEED (see `bootstrap_seed`).

    A metric whose two scores are equal gets p = 1: a difference of at least 0 always occurs.
    sacrebleu's test would report its smallest p-value there whenever the segments' statistics
    are equal too, because it counts only resampled differences above the real one.
    """
    for name, lines in (("hypotheses", hypotheses), ("baseline", baseline)):
        if len(lines) != len(references):
            raise ValueError(f"line count mismatch: {len(lines)} {name} but {len(references)} "
                             "references")
    seed = bootstrap_seed()
    if hypotheses == baseline:
        scores = score_corpus(hypotheses, references)
        same = {name: MetricComparison(getattr(scores, name), getattr(scores, name), 1.0)
                for name in METRIC_NAMES}
        return Comparison(baseline_file, 0, seed, **same)

    sacrebleu_logger = logging.getLogger("sacrebleu")
    level = sacrebleu_logger.level
    sacrebleu_logger.setLevel(logging.WARNING)  # it logs every step of the test at INFO
    try:
        test = PairedTest([("baseline", baseline), ("system", hypotheses)], _new_metrics(),
                          [references], test_type="bs", n_samples=resamples)
        _, results = test()
    finally:
        sacrebleu_logger.setLevel(level)
    fields = {}
    for name, score_name in METRIC_NAMES.items():  # PairedTest keys results by score name
        baseline_result, system_result = results[score_name]
        baseline_score, system_score = float(baseline_result.score), float(system_result.score)
        p_value = 1.0 if system_score == baseline_score else float(system_result.p_value)
        fields[name] = MetricComparison(baseline_score, system_score, p_value)
    return Comparison(baseline_file, resamples, seed, **fields)


def read_lines(path: str | Path) -> list[str]:
    """Read a UTF-8 file into one string per line, keeping empty lines.

    Only "\\n" (or "\\r\\n") ends a line. `str.splitlines` also breaks on U+0085 and U+2028,
    which occur inside real segments and would misalign parallel files.
    """
    if Path(path).is_dir():
        raise ValueError(f"{path} is a directory; pass a text file with one segment per line")
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        line = error.object[:error.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 text ({error.reason} at line {line}, byte "
                         f"{error.start}); save it as UTF-8") from error
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new line
    return [line.removesuffix("\r") for line in lines]


# --- producing hypotheses ----------------------------------------------------------------------


def _translate_in_batches(
    sources: Sequence[str],
    translate_batch: Callable[[list[str]], list[str]],
    batch_size: int,
) -> list[str]:
    """Translate the non-empty `sources` in batches; empty or blank sources give "" untranslated."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")

    hypotheses = [""] * len(sources)
    pending = [i for i, text in enumerate(sources) if text.strip()]
    started = time.perf_counter()
    for start in range(0, len(pending), batch_size):
        rows = pending[start : start + batch_size]
        try:
            hypotheses_batch = translate_batch([sources[i] for i in rows])
        except TranslationError as error:
            # A service names a text of its request by index (texts[i]), so name its line.
            message = _TEXT_INDEX.sub(functools.partial(_source_line, rows=rows), str(error))
            if message == str(error):
                raise
            raise TranslationError(message) from error
        for row, hypothesis in zip(rows, hypotheses_batch, strict=True):
            hypotheses[row] = hypothesis
        logger.info("translated %d/%d segments", start + len(rows), len(pending))

    elapsed = time.perf_counter() - started
    logger.info("translated %d segments in %.1f s", len(pending), elapsed)
    return hypotheses


_TEXT_INDEX = re.compile(r"\btexts\[(\d+)\]")


def _source_line(match: re.Match[str], rows: list[int]) -> str:
    index = int(match.group(1))
    return f"source line {rows[index] + 1}" if index < len(rows) else match.group(0)


def translate_with_model(
    model_dir: str | Path,
    sources: Sequence[str],
    *,
    beam_size: int = DEFAULT_BEAM_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    threads: int | None = None,
    streams: int = 1,
    int8: bool = False,
    alpha: float | None = None,
    beta: float | None = None,
) -> list[str]:
    """Translate `sources` with the model in `model_dir` using beam search, keeping input order.

    Each line goes through the same pipeline as ``nmt translate`` and the service (sentence
    splitting, protected spans, pass-through of text that is not Hindi), so the scores are those
    of what users get. Each call takes `CALL_BATCHES` batches of lines, which the translator
    sorts by length into searches of at most `batch_size` sentences, `streams` of them at once
    (`Translator.streams`). With `int8`, the linear layers are quantized first, as by
    ``nmt translate --int8``. `alpha` and `beta` replace the model's length and coverage
    penalties where given.
    """
    # Imported here: scoring a file needs no torch.
    from nmt import gemm
    from nmt.pipeline import translate_lines
    from nmt.translator import Translator

    gemm.check_streams(streams, threads)
    if streams > 1:
        gemm.use_worker_thread_backend()  # the searches run on a thread pool
    translator = Translator.load(model_dir, device=device)
    if int8:
        from nmt.quantize import quantize_translator

        quantize_translator(translator)
    gemm.set_threads(threads, quantized=int8)
    translator.streams = streams
    translator.options = replace(search_penalties(translator.options, alpha, beta),
                                 max_batch_size=batch_size)

    def translate_batch(batch: list[str]) -> list[str]:
        return translate_lines(translator, batch, beam_size=beam_size)

    return _translate_in_batches(sources, translate_batch, batch_size * CALL_BATCHES)


def translate_with_service(
    url: str,
    sources: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timeout: float = DEFAULT_SERVICE_TIMEOUT_S,
    api_key: str | None = None,
) -> list[str]:
    """Translate `sources` through a running service by POSTing batches to ``URL/translate``.

    The request body is ``{"texts": [...]}`` and the response must be ``{"translations": [...]}``
    with one string, or one object with a string ``"text"``, per input. `timeout` is in seconds
    per request, and `api_key` goes in an X-API-Key header. Raises TranslationError on an HTTP
    error, a connection failure or a malformed response.
    """
    endpoint = _service_endpoint(url)
    headers = {"X-API-Key": api_key} if api_key else {}

    def translate_batch(batch: list[str]) -> list[str]:
        payload = _post_json(endpoint, {"texts": batch}, timeout, headers)
        return _parse_translations(endpoint, payload, expected=len(batch))

    return _translate_in_batches(sources, translate_batch, batch_size)


def _service_endpoint(url: str) -> str:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"service URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/") + "/translate"


def _post_json(endpoint: str, body: dict, timeout: float,
               headers: dict[str, str] | None = None) -> object:
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", errors="replace")[:_ERROR_BODY_CHARS]
        hint = ""
        if error.code in (401, 403):  # missing or wrong API key
            hint = f"; set {API_KEY_VARIABLE} to a key the service accepts"
        raise TranslationError(f"{endpoint} returned HTTP {error.code}: {detail}{hint}") from error
    except urllib.error.URLError as error:
        raise TranslationError(f"request to {endpoint} failed: {error.reason}") from error
    except TimeoutError as error:
        raise TranslationError(f"request to {endpoint} timed out after {timeout} s") from error
    except (OSError, http.client.HTTPException) as error:  # e.g. the connection was reset
        raise TranslationError(f"request to {endpoint} failed: {error!r}") from error
    except json.JSONDecodeError as error:
        raise TranslationError(f"{endpoint} returned invalid JSON: {error}") from error


def _parse_translations(endpoint: str, payload: object, *, expected: int) -> list[str]:
    translations = payload.get("translations") if isinstance(payload, dict) else None
    if not isinstance(translations, list) or len(translations) != expected:
        raise TranslationError(
            f'{endpoint} must return {{"translations": [...]}} with {expected} items, '
            f"got {str(payload)[:_ERROR_BODY_CHARS]}"
        )

    texts = []
    for item in translations:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise TranslationError(f"{endpoint} returned a translation that is not text: {item!r}")
        texts.append(text)
    return texts


# --- command line ------------------------------------------------------------------------------

# Options that only some ways of producing hypotheses use: attribute -> (flag, modes using it).
_TRANSLATING = ("--model", "--service")
_OPTION_SCOPE = {
    "src": ("--src", _TRANSLATING),
    "out": ("--out", _TRANSLATING),
    "batch_size": ("--batch-size", _TRANSLATING),
    "beam_size": ("--beam-size", ("--model",)),
    "device": ("--device", ("--model",)),
    "threads": ("--threads", ("--model",)),
    "streams": ("--streams", ("--model",)),
    "int8": ("--int8", ("--model",)),
    "alpha": ("--alpha", ("--model",)),
    "beta": ("--beta", ("--model",)),
    "timeout": ("--timeout", ("--service",)),
}


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nmt evaluate`` to `parser`."""
    system = parser.add_mutually_exclusive_group(required=True)
    system.add_argument("--hyp", type=Path, metavar="FILE", help="score the translations in FILE")
    system.add_argument(
        "--model", type=Path, metavar="DIR", help="translate --src with the model in DIR"
    )
    system.add_argument(
        "--service",
        metavar="URL",
        help="translate --src through the service at URL (POST URL/translate)",
    )

    parser.add_argument(
        "--ref", type=Path, metavar="FILE", required=True, help="English references"
    )
    parser.add_argument(
        "--src",
        type=Path,
        metavar="FILE",
        help="Hindi sources, line-aligned with --ref (--model, --service)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the translations to FILE"
    )
    parser.add_argument(
        "--beam-size",
        type=int,
        metavar="N",
        help=f"beam size for --model (default {DEFAULT_BEAM_SIZE})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="sentences per search batch with --model, segments per request with --service "
        f"(default {DEFAULT_BATCH_SIZE})",
    )
    add_penalty_arguments(parser, " for --model")
    parser.add_argument("--device", help='torch device for --model, e.g. "cuda" (default "cpu")')
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="inference threads for --model, at most the CPUs available (default: one per "
        "core)",
    )
    parser.add_argument(
        "--streams", type=int, metavar="N",
        help="batches --model searches at once, sharing the threads (default 1)",
    )
    parser.add_argument(
        "--int8", action="store_true", default=None,
        help="quantize the linear layers of --model to int8, as nmt translate --int8 does",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"time limit per service request (default {DEFAULT_SERVICE_TIMEOUT_S:g})",
    )

    parser.add_argument(
        "--confidence",
        type=int,
        nargs="?",
        const=DEFAULT_BOOTSTRAP,
        metavar="N",
        help="add 95%% confidence intervals from N bootstrap resamples of the segments, and "
        "use N resamples for --baseline (default N: "
        f"{DEFAULT_BOOTSTRAP}; at least 2, and N × segments at most {MAX_RESAMPLED_SEGMENTS:,})",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="also compare with the translations in FILE by paired bootstrap resampling "
        f"(--confidence N resamples, default {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    parser.epilog = (
        "Exit status: 0 on success, 1 when translation fails, 2 on invalid input "
        "(missing file, mismatched line counts, options that do not fit together). "
        f"With --service, the environment variable {API_KEY_VARIABLE} holds the API key, if the "
        "service needs one. SACREBLEU_SEED seeds the resampling of --confidence and --baseline: "
        "a positive integer (default 12345), or none for a different sample on every run."
    )


def _check_option_scope(args: argparse.Namespace) -> None:
    if args.hyp is not None:
        mode = "--hyp"
    elif args.model is not None:
        mode = "--model"
    else:
        mode = "--service"

    for name, (flag, modes) in _OPTION_SCOPE.items():
        if getattr(args, name) is not None and mode not in modes:
            raise ValueError(f"{flag} applies only with {' or '.join(modes)}, not with {mode}")
    if mode != "--hyp" and args.src is None:
        raise ValueError(f"{mode} needs --src FILE with the Hindi segments to translate")
    if mode == "--service":
        _service_endpoint(args.service)

    for name, flag in (
        ("beam_size", "--beam-size"),
        ("batch_size", "--batch-size"),
        ("threads", "--threads"),
        ("streams", "--streams"),
        ("timeout", "--timeout"),
    ):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    if args.int8 and args.device is not None and not args.device.startswith("cpu"):
        raise ValueError(f"--int8 runs on the CPU only, so it cannot be used with --device "
                         f"{args.device}")
    if args.confidence is not None and args.confidence < 2:
        raise ValueError(f"--confidence must be at least 2 resamples, got {args.confidence}")
    if args.confidence is not None or args.baseline is not None:
        bootstrap_seed()  # an invalid SACREBLEU_SEED stops the run before any translation
    if args.beam_size is not None and args.beam_size > MAX_BEAM_SIZE:
        raise ValueError(f"--beam-size must be at most {MAX_BEAM_SIZE}, got {args.beam_size}")
    if args.threads is not None or args.streams is not None:
        from nmt import gemm  # these options need --model, which imports torch anyway

        gemm.check_threads(args.threads, "--threads")
        if args.streams is not None:
            gemm.check_streams(args.streams, args.threads)


def _value_or(value, default):
    return default if value is None else value


def _read_aligned(path: Path, reference_path: Path, reference_count: int) -> list[str]:
    """Read the lines of `path`; raise ValueError unless there is one per reference line."""
    lines = read_lines(path)
    if len(lines) != reference_count:
        raise ValueError(f"line count mismatch: {path} has {len(lines)} lines but "
                         f"{reference_path} has {reference_count}")
    return lines


def _produce_hypotheses(args: argparse.Namespace, reference_count: int) -> list[str]:
    if args.hyp is not None:
        return _read_aligned(args.hyp, args.ref, reference_count)

    sources = _read_aligned(args.src, args.ref, reference_count)

    if args.out is not None:  # checked now, not after a long translation run
        _check_output_file(args.out)
        inputs = (("--ref", args.ref), ("--src", args.src), ("--baseline", args.baseline))
        for flag, path in inputs:
            if path is not None and path.exists() and args.out.resolve() == path.resolve():
                raise ValueError(f"--out {args.out} is the {flag} file; writing the "
                                 "translations there would overwrite it")
    batch_size = _value_or(args.batch_size, DEFAULT_BATCH_SIZE)
    if args.model is not None:
        hypotheses = translate_with_model(
            args.model,
            sources,
            beam_size=_value_or(args.beam_size, DEFAULT_BEAM_SIZE),
            batch_size=batch_size,
            device=_value_or(args.device, "cpu"),
            threads=args.threads,
            streams=_value_or(args.streams, 1),
            int8=bool(args.int8),
            alpha=args.alpha,
            beta=args.beta,
        )
    else:
        hypotheses = translate_with_service(
            args.service,
            sources,
            batch_size=batch_size,
            timeout=_value_or(args.timeout, DEFAULT_SERVICE_TIMEOUT_S),
            api_key=os.environ.get(API_KEY_VARIABLE),
        )

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(f"{line}\n" for line in hypotheses), encoding="utf-8")
        logger.info("wrote %d translations to %s", len(hypotheses), args.out)
    return hypotheses


def _check_resamples(args: argparse.Namespace, segments: int) -> None:
    """Raise ValueError where the bootstrap would hold more than MAX_RESAMPLED_SEGMENTS."""
    if args.confidence is None and args.baseline is None:
        return
    resamples = args.confidence or DEFAULT_BOOTSTRAP
    if resamples * segments > MAX_RESAMPLED_SEGMENTS:
        raise ValueError(
            f"{resamples} resamples × {segments} segments is over the limit of "
            f"{MAX_RESAMPLED_SEGMENTS:,}, because the bootstrap holds every resample in memory; "
            f"use --confidence {max(2, MAX_RESAMPLED_SEGMENTS // segments)} or fewer")


def _check_output_file(path: Path) -> None:
    """Raise ValueError unless `path` can be written as a file: not a directory, and not below
    an existing file."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {path}: {parent} is a file, not a directory")
            break


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``nmt evaluate``: produce or read hypotheses, score them and print the scores.

    Returns the exit status: 0 on success, 1 when translation fails, 2 on invalid input. Errors
    are printed to stderr as one line.
    """
    try:
        _check_option_scope(args)
        references = read_lines(args.ref)
        _check_resamples(args, len(references))
        baseline = None
        if args.baseline is not None:  # read first, so that a bad file stops no translation
            baseline = _read_aligned(args.baseline, args.ref, len(references))
        hypotheses = _produce_hypotheses(args, len(references))
        scores = score_corpus(hypotheses, references, bootstrap=args.confidence or 1)
        comparison = None
        if baseline is not None:
            comparison = compare_to_baseline(hypotheses, baseline, references,
                                             resamples=args.confidence or DEFAULT_BOOTSTRAP,
                                             baseline_file=str(args.baseline))
    except TranslationError as error:
        print(f"nmt evaluate: translation failed: {error}", file=sys.stderr)
        return EXIT_TRANSLATION_FAILED
    except FileNotFoundError as error:
        missing = error.filename if error.filename is not None else error
        print(f"nmt evaluate: file not found: {missing}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        print(f"nmt evaluate: error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT

    if args.json:
        values = scores.to_dict()
        if comparison is not None:
            values["baseline"] = comparison.to_dict()
        print(json.dumps(values, indent=2))
    else:
        print(scores.format())
        if comparison is not None:
            print(comparison.format())
    return EXIT_OK
