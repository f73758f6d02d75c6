"""Tests for training.evaluate: scores against the sacrebleu CLI, translation sources, CLI glue."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training.evaluate import (
    TranslationError,
    add_evaluate_arguments,
    compare_to_baseline,
    read_lines,
    run_evaluate,
    score_corpus,
    translate_with_model,
    translate_with_service,
)


@pytest.fixture
def hyp_ref(fixtures_dir: Path) -> tuple[Path, Path]:
    return fixtures_dir / "iitb-dev-20.hyp.en", fixtures_dir / "iitb-dev-20.ref.en"


def sacrebleu_cli(ref: Path, hyp: Path, *options: str) -> list[dict]:
    """Run the sacrebleu command line in JSON mode; return one record per metric."""
    command = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-f", "json", "-w", "6"]
    completed = subprocess.run([*command, *options], capture_output=True, text=True, check=True)
    records = json.loads(completed.stdout)
    return records if isinstance(records, list) else [records]


def parse_evaluate_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nmt evaluate")
    add_evaluate_arguments(parser)
    return parser.parse_args(argv)


# --- scoring -----------------------------------------------------------------------------------


def test_scores_match_sacrebleu_cli(hyp_ref):
    hyp, ref = hyp_ref
    bleu, chrf2 = sacrebleu_cli(ref, hyp, "-m", "bleu", "chrf")
    (chrfpp,) = sacrebleu_cli(ref, hyp, "-m", "chrf", "--chrf-word-order", "2")

    scores = score_corpus(read_lines(hyp), read_lines(ref))

    assert scores.segments == 20
    assert scores.bleu == pytest.approx(bleu["score"], abs=1e-6)
    assert scores.chrf2 == pytest.approx(chrf2["score"], abs=1e-6)
    assert scores.chrfpp == pytest.approx(chrfpp["score"], abs=1e-6)
    assert scores.bleu_signature == bleu["signature"]
    assert scores.chrf2_signature == chrf2["signature"]
    assert scores.chrfpp_signature == chrfpp["signature"]
    assert "nw:2" in scores.chrfpp_signature


def test_bootstrap_matches_sacrebleu_cli(hyp_ref):
    hyp, ref = hyp_ref
    records = sacrebleu_cli(ref, hyp, "-m", "bleu", "chrf", "--confidence", "--confidence-n",
                            "100")

    scores = score_corpus(read_lines(hyp), read_lines(ref), bootstrap=100)

    for record, name in zip(records, ("bleu", "chrf2"), strict=True):
        interval = getattr(scores, f"{name}_interval")
        assert getattr(scores, name) == pytest.approx(record["score"], abs=1e-6)
        assert interval.mean == pytest.approx(record["confidence_mean"], abs=1e-5)
        assert interval.half_width == pytest.approx(record["confidence_var"], abs=1e-5)
        assert getattr(scores, f"{name}_signature") == record["signature"]
    assert "bs:100|seed:12345" in scores.chrfpp_signature
    assert scores.chrfpp_interval is not None


def test_bootstrap_keeps_point_scores(hyp_ref):
    hypotheses, references = read_lines(hyp_ref[0]), read_lines(hyp_ref[1])

    plain = score_corpus(hypotheses, references)
    resampled = score_corpus(hypotheses, references, bootstrap=50)

    assert plain.bleu_interval is None
    assert "bleu_interval" not in plain.to_dict()
    assert resampled.bleu == plain.bleu
    assert resampled.chrfpp == plain.chrfpp
    assert resampled == score_corpus(hypotheses, references, bootstrap=50)  # seeded
    assert set(resampled.to_dict()["bleu_interval"]) == {"mean", "half_width"}
    line = resampled.format().splitlines()[0]
    assert line.startswith(f"BLEU    = {resampled.bleu:5.2f} (μ = ")
    assert line.endswith(resampled.bleu_signature)


def test_evaluate_confidence_option(hyp_ref, capsys):
    hyp, ref = hyp_ref
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--confidence", "--json"])

    assert args.confidence == 1000
    assert run_evaluate(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == score_corpus(read_lines(hyp), read_lines(ref), bootstrap=1000).to_dict()


@pytest.mark.parametrize("count", ["1", "0", "-5"])
def test_evaluate_confidence_below_two(hyp_ref, capsys, count: str):
    hyp, ref = hyp_ref
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--confidence", count])

    assert run_evaluate(args) == 2
    assert f"--confidence must be at least 2 resamples, got {count}" in capsys.readouterr().err


def test_evaluate_confidence_memory_limit(hyp_ref, capsys):
    hyp, ref = hyp_ref  # 20 segments
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--confidence",
                                "1250001"])

    assert run_evaluate(args) == 2
    message = capsys.readouterr().err
    assert "1250001 resamples × 20 segments is over the limit of 25,000,000" in message
    assert "use --confidence 1250000 or fewer" in message


@pytest.mark.parametrize("seed", ["0", "abc", "", "-3"])
def test_evaluate_rejects_bad_seed(hyp_ref, capsys, monkeypatch, seed: str):
    hyp, ref = hyp_ref
    monkeypatch.setenv("SACREBLEU_SEED", seed)
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--confidence"])

    assert run_evaluate(args) == 2
    message = capsys.readouterr().err
    assert f"SACREBLEU_SEED must be a positive integer or 'none', got {seed!r}" in message


def test_paired_bootstrap_matches_sacrebleu(hyp_ref, tmp_path):
    hyp, ref = hyp_ref
    baseline = tmp_path / "baseline.en"
    baseline.write_text("".join(line.lower() + "\n" for line in read_lines(hyp)),
                        encoding="utf-8")
    # sacrebleu 2.6 fails to write paired results as JSON, so its text table is read instead.
    command = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(baseline), str(hyp),
               "-m", "bleu", "chrf", "--paired-bs", "--paired-bs-n", "100", "-w", "6", "-f",
               "text"]
    table = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    system_row = next(line for line in table.splitlines() if f" {hyp} " in line)
    system_scores = [float(value) for value in re.findall(r"([\d.]+) \(", system_row)]
    p_values = [float(value) for value in re.findall(r"p = ([\d.]+)", table)]

    comparison = compare_to_baseline(read_lines(hyp), read_lines(baseline), read_lines(ref),
                                     resamples=100)

    assert comparison.bleu.system == pytest.approx(system_scores[0], abs=1e-5)
    assert comparison.chrf2.system == pytest.approx(system_scores[1], abs=1e-5)
    assert comparison.bleu.p_value == pytest.approx(p_values[0], abs=1e-4)
    assert comparison.chrf2.p_value == pytest.approx(p_values[1], abs=1e-4)
    assert comparison.bleu.difference == comparison.bleu.system - comparison.bleu.baseline
    assert comparison.bleu.difference > 0  # lowercasing loses matches with the references


def test_paired_bootstrap_identical_outputs(hyp_ref):
    hypotheses, references = read_lines(hyp_ref[0]), read_lines(hyp_ref[1])

    comparison = compare_to_baseline(hypotheses, list(hypotheses), references, resamples=100)

    assert comparison.resamples == 0  # nothing to resample
    assert "nothing resampled" in comparison.format()
    for name in ("bleu", "chrf2", "chrfpp"):
        assert getattr(comparison, name).difference == 0
        assert getattr(comparison, name).p_value == 1.0


def test_paired_bootstrap_equal_scores_p_one(hyp_ref):
    hypotheses, references = read_lines(hyp_ref[0]), read_lines(hyp_ref[1])
    spaced = [line + " " for line in hypotheses]  # BLEU's tokenizer and chrF ignore it

    comparison = compare_to_baseline(spaced, hypotheses, references, resamples=100)

    assert comparison.resamples == 100
    for name in ("bleu", "chrf2", "chrfpp"):
        assert getattr(comparison, name).difference == 0
        assert getattr(comparison, name).p_value == 1.0


def test_paired_bootstrap_marks_smallest_p(hyp_ref):
    hypotheses, references = read_lines(hyp_ref[0]), read_lines(hyp_ref[1])
    emptied = ["" if index % 2 else line for index, line in enumerate(hypotheses)]

    comparison = compare_to_baseline(emptied, hypotheses, references, resamples=100)

    assert comparison.bleu.p_value == pytest.approx(1 / 101)
    assert "p <= 0.0099" in comparison.format().splitlines()[1]


def test_evaluate_baseline_option(hyp_ref, tmp_path, capsys):
    hyp, ref = hyp_ref
    baseline = tmp_path / "baseline.en"
    baseline.write_text("".join(line.lower() + "\n" for line in read_lines(hyp)),
                        encoding="utf-8")
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--baseline",
                                str(baseline), "--confidence", "100", "--json"])

    assert run_evaluate(args) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = compare_to_baseline(read_lines(hyp), read_lines(baseline), read_lines(ref),
                                   resamples=100, baseline_file=str(baseline))
    assert printed["baseline"] == expected.to_dict()
    assert printed["baseline"]["seed"] == "12345"
    assert printed["bleu"] == round(expected.bleu.system, 4)


@pytest.mark.parametrize("flag", ["--baseline", "--ref"])
def test_evaluate_out_never_overwrites_input(hyp_ref, tmp_path, capsys, flag: str):
    hyp, ref = hyp_ref
    baseline = tmp_path / "baseline.en"
    baseline.write_bytes(hyp.read_bytes())
    target = baseline if flag == "--baseline" else ref
    args = parse_evaluate_args(["--model", "no-such-model", "--src", str(hyp), "--ref",
                                str(ref), "--baseline", str(baseline), "--out", str(target)])

    assert run_evaluate(args) == 2
    assert f"is the {flag} file" in capsys.readouterr().err
    assert baseline.read_bytes() == hyp.read_bytes()


def test_evaluate_baseline_line_count_checked_first(hyp_ref, tmp_path, capsys):
    hyp, ref = hyp_ref
    baseline = tmp_path / "short.en"
    baseline.write_text("one line\n", encoding="utf-8")
    args = parse_evaluate_args(["--model", "no-such-model", "--src", str(hyp), "--ref",
                                str(ref), "--baseline", str(baseline)])

    # A baseline of the wrong length stops the run before any translation starts.
    assert run_evaluate(args) == 2
    assert f"{baseline} has 1 lines but {ref} has 20" in capsys.readouterr().err


def test_format_lists_scores_with_signatures(hyp_ref):
    scores = score_corpus(read_lines(hyp_ref[0]), read_lines(hyp_ref[1]))

    lines = scores.format().splitlines()

    assert len(lines) == 3
    assert lines[0] == f"BLEU    = {scores.bleu:5.2f}  {scores.bleu_signature}"
    assert lines[1].startswith("chrF2   = ")
    assert lines[2].startswith("chrF2++ = ")
    assert lines[2].endswith(scores.chrfpp_signature)


def test_identical_text_scores_100():
    scores = score_corpus(["The fort was built of clay."], ["The fort was built of clay."])

    assert scores.bleu == pytest.approx(100.0)
    assert scores.chrf2 == pytest.approx(100.0)
    assert scores.chrfpp == pytest.approx(100.0)


def test_mismatched_counts_rejected():
    with pytest.raises(ValueError, match="3 hypotheses but 2 references"):
        score_corpus(["a", "b", "c"], ["a", "b"])


def test_empty_corpus_rejected():
    with pytest.raises(ValueError, match="nothing to score"):
        score_corpus([], [])


def test_read_lines_keeps_empty_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes("one\n\nthree\x85still three\r\nfour\n".encode())

    assert read_lines(path) == ["one", "", "three\x85still three", "four"]


@pytest.mark.parametrize(
    "content, lines",
    [
        ("", []),
        ("\n", [""]),
        ("last", ["last"]),
        ("a\nb", ["a", "b"]),
        ("  padded  \n", ["  padded  "]),
    ],
)
def test_read_lines_edges(tmp_path, content, lines):
    path = tmp_path / "lines.txt"
    path.write_text(content, encoding="utf-8")

    assert read_lines(path) == lines


# --- command line ------------------------------------------------------------------------------


def test_evaluate_hyp_prints_scores(hyp_ref, capsys):
    hyp, ref = hyp_ref
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref)])

    status = run_evaluate(args)

    output = capsys.readouterr().out
    assert status == 0
    assert output.startswith("BLEU    = ")
    assert "tok:13a" in output
    assert "nw:2" in output


def test_evaluate_json_output(hyp_ref, capsys):
    hyp, ref = hyp_ref
    expected = score_corpus(read_lines(hyp), read_lines(ref))

    status = run_evaluate(parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--json"]))

    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert printed == expected.to_dict()


def test_evaluate_mismatch_exits_2(tmp_path, hyp_ref, capsys):
    short = tmp_path / "short.en"
    short.write_text("".join(f"{line}\n" for line in read_lines(hyp_ref[0])[:19]), encoding="utf-8")

    status = run_evaluate(parse_evaluate_args(["--hyp", str(short), "--ref", str(hyp_ref[1])]))

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert f"{short} has 19 lines but {hyp_ref[1]} has 20" in captured.err


def test_evaluate_missing_file_exits_2(tmp_path, hyp_ref, capsys):
    missing = tmp_path / "missing.en"

    status = run_evaluate(parse_evaluate_args(["--hyp", str(missing), "--ref", str(hyp_ref[1])]))

    assert status == 2
    assert f"file not found: {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hyp", "h.en", "--src", "s.hi"], "--src applies only with --model or --service"),
        (["--hyp", "h.en", "--beam-size", "5"], "--beam-size applies only with --model"),
        (["--service", "http://127.0.0.1:9", "--src", "s.hi", "--beam-size", "5"], "--beam-size"),
        (["--model", "models/x"], "--model needs --src"),
        (
            ["--model", "models/x", "--src", "s.hi", "--beam-size", "0"],
            "--beam-size must be positive",
        ),
        (["--service", "ftp://127.0.0.1/", "--src", "SRC"], "http:// or https://"),
        (["--hyp", "h.en", "--threads", "2"], "--threads applies only with --model"),
        (["--model", "models/x", "--src", "s.hi", "--threads", "0"], "--threads must be positive"),
        (["--model", "models/x", "--src", "s.hi", "--threads", "100000"],
         "--threads must be a whole number between 1 and"),
        (["--model", "models/x", "--src", "s.hi", "--streams", "0"], "--streams must be positive"),
        (["--hyp", "h.en", "--streams", "2"], "--streams applies only with --model"),
        (
            ["--model", "models/x", "--src", "SRC", "--threads", "1", "--streams", "2"],
            "--streams must be between 1 and 1 (--threads), got 2",
        ),
        (
            ["--model", "models/x", "--src", "s.hi", "--beam-size", "65"],
            "--beam-size must be at most 64, got 65",
        ),
    ],
)
def test_evaluate_invalid_options_exit_2(extra, message, hyp_ref, fixtures_dir, capsys):
    extra = [str(fixtures_dir / "iitb-dev-50.hi") if item == "SRC" else item for item in extra]
    args = parse_evaluate_args([*extra, "--ref", str(hyp_ref[1])])

    status = run_evaluate(args)

    assert status == 2
    assert message in capsys.readouterr().err


def test_evaluate_missing_model_names_it(tmp_path, hyp_ref, fixtures_dir, capsys):
    missing = tmp_path / "no-model"
    args = parse_evaluate_args(["--model", str(missing), "--src",
                                str(fixtures_dir / "iitb-dev-50.hi"), "--ref",
                                str(fixtures_dir / "iitb-dev-50.en")])

    status = run_evaluate(args)

    assert status == 2
    error = capsys.readouterr().err
    assert f"model directory {missing} does not exist" in error
    assert "None" not in error


def test_evaluate_directory_as_file_exits_2(tmp_path, hyp_ref, capsys):
    status = run_evaluate(parse_evaluate_args(["--hyp", str(tmp_path), "--ref", str(hyp_ref[1])]))

    assert status == 2
    assert f"{tmp_path} is a directory; pass a text file" in capsys.readouterr().err


def test_evaluate_non_utf8_file_names_it(tmp_path, hyp_ref, capsys):
    latin1 = tmp_path / "latin1.en"
    latin1.write_bytes("tea\ncaf\u00e9\n".encode("latin-1"))

    status = run_evaluate(parse_evaluate_args(["--hyp", str(latin1), "--ref", str(hyp_ref[1])]))

    error = capsys.readouterr().err
    assert status == 2
    assert f"{latin1} is not UTF-8 text" in error
    assert "at line 2, byte 7" in error


def test_evaluate_requires_one_system(hyp_ref):
    with pytest.raises(SystemExit):
        parse_evaluate_args(["--ref", str(hyp_ref[1])])
    with pytest.raises(SystemExit):
        parse_evaluate_args(["--hyp", "a", "--model", "b", "--ref", str(hyp_ref[1])])


# --- translation service on loopback -----------------------------------------------------------


class FakeService:
    """A loopback HTTP server that translates by table lookup and records each request."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.requests: list[list[str]] = []
        self.api_keys: list[str | None] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.requests.append(body["texts"])
                service.api_keys.append(self.headers.get("X-API-Key"))
                if "LOCKED" in body["texts"]:
                    self._send(401, {"error": "missing API key"})
                    return
                if "TOO LONG" in body["texts"]:  # the service's 422 names the text by index
                    index = body["texts"].index("TOO LONG")
                    self._send(422, {"error": f"texts[{index}]: 6000 characters are over the "
                                              f"limit of 5000"})
                    return
                if self.path != "/translate" or "FAIL" in body["texts"]:
                    self._send(500, {"detail": "model exploded"})
                    return
                translations = [service.table.get(text, text.upper()) for text in body["texts"]]
                self._send(200, {"translations": translations})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args) -> None:  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval makes shutdown() return quickly at the end of each test.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FakeService:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dev_service(fixtures_dir, hyp_ref):
    sources = read_lines(fixtures_dir / "iitb-dev-50.hi")[:20]
    with FakeService(dict(zip(sources, read_lines(hyp_ref[0]), strict=True))) as service:
        yield service


def test_service_batches_and_skips_empty(dev_service):
    sources = ["a", "", "b", "c", "   ", "d", "e"]

    translations = translate_with_service(dev_service.url + "/", sources, batch_size=2)

    assert translations == ["A", "", "B", "C", "", "D", "E"]
    assert dev_service.requests == [["a", "b"], ["c", "d"], ["e"]]


def test_service_sends_api_key(dev_service):
    translate_with_service(dev_service.url, ["a", "b"], batch_size=1, api_key="s3cret")

    assert dev_service.api_keys == ["s3cret", "s3cret"]


def test_evaluate_service_reads_api_key(monkeypatch, tmp_path, dev_service, fixtures_dir,
                                        hyp_ref):
    monkeypatch.setenv("NMT_API_KEY", "s3cret")
    src = tmp_path / "dev-20.hi"
    lines = read_lines(fixtures_dir / "iitb-dev-50.hi")[:20]
    src.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    args = parse_evaluate_args(["--service", dev_service.url, "--src", str(src), "--ref",
                                str(hyp_ref[1])])

    assert run_evaluate(args) == 0
    assert set(dev_service.api_keys) == {"s3cret"}


def test_service_401_names_key_variable(dev_service):
    with pytest.raises(TranslationError, match="HTTP 401: .*set NMT_API_KEY to a key"):
        translate_with_service(dev_service.url, ["LOCKED"])


def test_service_error_raises(dev_service):
    with pytest.raises(TranslationError, match="HTTP 500: .*model exploded"):
        translate_with_service(dev_service.url, ["ok", "FAIL"])


def test_service_error_names_source_line(dev_service):
    sources = ["a", "b", "", "c", "TOO LONG"]  # the blank line is not sent
    with pytest.raises(TranslationError, match=r"HTTP 422: .*source line 5: 6000 characters"):
        translate_with_service(dev_service.url, sources, batch_size=2)


def test_service_error_without_index_unchanged(dev_service):
    with pytest.raises(TranslationError, match="HTTP 500: .*model exploded") as raised:
        translate_with_service(dev_service.url, ["ok", "FAIL"], batch_size=2)
    assert "source line" not in str(raised.value)


def test_service_unreachable_raises():
    with FakeService({}) as stopped:
        url = stopped.url
    with pytest.raises(TranslationError, match="failed"):
        translate_with_service(url, ["text"], timeout=5)


def test_evaluate_service_end_to_end(tmp_path, dev_service, fixtures_dir, hyp_ref, capsys):
    hyp, ref = hyp_ref
    src = tmp_path / "dev-20.hi"
    src.write_text(
        "".join(f"{line}\n" for line in read_lines(fixtures_dir / "iitb-dev-50.hi")[:20]),
        encoding="utf-8",
    )
    out = tmp_path / "out" / "hyp.en"
    args = parse_evaluate_args(
        [
            "--service",
            dev_service.url,
            "--src",
            str(src),
            "--ref",
            str(ref),
            "--out",
            str(out),
            "--json",
        ]
    )

    status = run_evaluate(args)

    assert status == 0
    assert read_lines(out) == read_lines(hyp)
    assert (
        json.loads(capsys.readouterr().out)
        == score_corpus(read_lines(hyp), read_lines(ref)).to_dict()
    )


def test_evaluate_service_failure_exits_1(tmp_path, dev_service, hyp_ref, capsys):
    src = tmp_path / "fail.hi"
    src.write_text("FAIL\n" * 20, encoding="utf-8")
    args = parse_evaluate_args(
        ["--service", dev_service.url, "--src", str(src), "--ref", str(hyp_ref[1])]
    )

    status = run_evaluate(args)

    assert status == 1
    assert "translation failed" in capsys.readouterr().err


def test_evaluate_source_mismatch_exits_2(dev_service, fixtures_dir, hyp_ref, capsys):
    args = parse_evaluate_args(
        [
            "--service",
            dev_service.url,
            "--src",
            str(fixtures_dir / "iitb-dev-50.hi"),
            "--ref",
            str(hyp_ref[1]),
        ]
    )

    status = run_evaluate(args)

    assert status == 2
    assert "has 50 lines" in capsys.readouterr().err
    assert dev_service.requests == []


# --- model directory ---------------------------------------------------------------------------


@pytest.mark.parametrize("streams", [1, 2])
def test_model_translations_match_translator(tmp_path, streams):
    testing = pytest.importorskip("nmt.testing")
    from nmt.translator import Translator

    model_dir = testing.make_tiny_model_dir(tmp_path / "tiny")
    sources = ["नमस्ते, आप कैसे हैं?", "", "मैं घर जा रहा हूँ।"]

    translations = translate_with_model(model_dir, sources, beam_size=2, batch_size=1,
                                        threads=2, streams=streams)

    # The same pipeline as `nmt translate` and the service.
    from nmt.pipeline import translate_lines

    translator = Translator.load(model_dir)
    expected = translate_lines(translator, [sources[0], sources[2]], beam_size=2)
    assert translations == [expected[0], "", expected[1]]


def test_model_int8_matches_translate_int8(tmp_path):
    testing = pytest.importorskip("nmt.testing")
    from nmt import gemm
    from nmt.pipeline import translate_lines
    from nmt.quantize import quantize_translator
    from nmt.translator import Translator

    model_dir = testing.make_tiny_model_dir(tmp_path / "tiny")
    sources = ["नमस्ते, आप कैसे हैं?", "मैं घर जा रहा हूँ।"]

    translations = translate_with_model(model_dir, sources, beam_size=2, threads=1, int8=True)

    translator = quantize_translator(Translator.load(model_dir))
    gemm.set_threads(1, quantized=True)
    assert translations == translate_lines(translator, sources, beam_size=2)


def test_evaluate_int8_needs_model(hyp_ref, capsys):
    hyp, ref = hyp_ref
    args = parse_evaluate_args(["--hyp", str(hyp), "--ref", str(ref), "--int8"])

    assert run_evaluate(args) == 2
    assert "--int8 applies only with --model, not with --hyp" in capsys.readouterr().err


def test_evaluate_int8_rejects_gpu(hyp_ref, capsys):
    hyp, ref = hyp_ref
    args = parse_evaluate_args(["--model", "models/hi-en", "--src", str(hyp), "--ref", str(ref),
                                "--int8", "--device", "cuda"])

    assert run_evaluate(args) == 2
    assert "--int8 runs on the CPU only" in capsys.readouterr().err


@pytest.mark.parametrize("target, words", [
    ("outdir", "is a directory; give a file name"),
    ("src.hi/out.en", "src.hi is a file, not a directory"),
])
def test_evaluate_bad_out_fails_early(tmp_path, hyp_ref, monkeypatch, capsys, target: str,
                                      words: str):
    (tmp_path / "outdir").mkdir()
    src = tmp_path / "src.hi"
    src.write_text("".join(f"{line}\n" for line in read_lines(hyp_ref[1])), encoding="utf-8")

    def never(*args, **kwargs):
        raise AssertionError("translated before checking --out")

    monkeypatch.setattr("training.evaluate.translate_with_service", never)
    args = parse_evaluate_args(["--service", "http://127.0.0.1:9", "--src", str(src),
                                "--ref", str(hyp_ref[1]), "--out", str(tmp_path / target)])

    assert run_evaluate(args) == 2
    assert words in capsys.readouterr().err
