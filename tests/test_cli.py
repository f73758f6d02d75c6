"""Tests of the ``nmt`` command line: translate through stdin and stdout, errors, help."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from nmt.cli import main
from nmt.translator import Translator
from training.checkpoints import save_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent

# Non-empty lines carry a number each, so that the output order is visible.
LINES = [
    "नमस्ते, आप कैसे हैं? मैं 101 बार आया।",
    "",
    "मैं 202 घर जा रहा हूँ।",
    "",
    "",
    "303",
    "भारत की राजधानी नई दिल्ली है। वहाँ 404 लोग हैं। बाकी 505 कहाँ हैं?",
    "   ",
]


def run_translate(monkeypatch, capsys, model_dir: Path, lines: list[str], *options: str,
                  data: bytes | None = None):
    """Run `nmt translate` on `lines`, or on the raw bytes `data`, as stdin."""
    if data is None:
        data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    status = main(["translate", "--model", str(model_dir), *options])
    return status, capsys.readouterr()


@pytest.mark.parametrize("options", [(), ("--batch-lines", "2"), ("--beam-size", "1"),
                                     ("--threads", "2", "--streams", "2")])
def test_translate_one_line_per_line(monkeypatch, capsys, tiny_model_dir: Path,
                                     options: tuple[str, ...]) -> None:
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, LINES, *options)
    outputs = captured.out.split("\n")

    assert status == 0
    assert outputs[-1] == ""  # the output ends with a newline
    assert len(outputs[:-1]) == len(LINES)
    for line, output in zip(LINES, outputs[:-1], strict=True):
        assert (output.strip() == "") == (line.strip() == ""), (line, output)
        for number in re.findall(r"\d+", line):
            assert number in output, (line, output)


@pytest.mark.parametrize(("metadata", "message"), [
    ('{"search": {"alpha": "high"}}',
     'invalid "search" setting: alpha must be a finite number of at least 0, got \'high\''),
    ('{"search": {"beam_size": 0}}',
     'invalid "search" setting: beam_size must be a whole number of at least 1, got 0'),
    ("not json", "is not valid UTF-8 JSON"),
    ('{"search": {"alpha": ' + "9" * 5000 + "}}", "is not valid UTF-8 JSON"),
    ("[" * 100_000, "is not valid UTF-8 JSON"),
])
def test_translate_invalid_metadata_exits_2(monkeypatch, capsys, tiny_model_dir: Path,
                                            tmp_path: Path, metadata: str, message: str) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "metadata.json").write_text(metadata)
    status, captured = run_translate(monkeypatch, capsys, model_dir, ["नमस्ते।"])
    assert status == 2
    assert f"{model_dir / 'metadata.json'}" in captured.err
    assert message in captured.err
    assert captured.out == ""


def test_translate_matches_translator(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    lines = ["मैं 202 घर जा रहा हूँ।", "यह किताब बहुत अच्छी है।"]
    _, captured = run_translate(monkeypatch, capsys, tiny_model_dir, lines, "--beam-size", "2")
    expected = [t.text for t in Translator.load(tiny_model_dir).translate(lines, beam_size=2)]
    assert captured.out.splitlines() == expected


def test_translate_streams_above_threads_exits_2(monkeypatch, capsys,
                                                tiny_model_dir: Path) -> None:
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, LINES, "--threads", "1",
                                     "--streams", "2")
    assert status == 2
    assert "--streams must be between 1 and 1 (--threads), got 2" in captured.err
    assert captured.out == ""


def test_translate_too_many_threads_exits_2(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, LINES, "--threads",
                                     "100000")
    assert status == 2
    assert "--threads must be a whole number between 1 and" in captured.err
    assert "got 100000" in captured.err
    assert captured.out == ""


class _UnreadableStdin:
    """A stdin that fails the test if anything reads it."""

    @property
    def buffer(self):
        raise AssertionError("stdin was read before the options were checked")


def test_translate_missing_model_fails_before_reading(monkeypatch, capsys,
                                                      tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())
    assert main(["translate", "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_translate_rejects_model_file(monkeypatch, capsys, tmp_path: Path) -> None:
    model_file = tmp_path / "model.txt"
    model_file.write_text("not a model\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())
    assert main(["translate", "--model", str(model_file)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_translate_bad_gemm_fails_before_reading(monkeypatch, capsys,
                                                 tiny_model_dir: Path) -> None:
    from nmt import gemm

    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())
    monkeypatch.setenv("NMT_GEMM", "foo")
    gemm.backend.cache_clear()
    try:
        assert main(["translate", "--model", str(tiny_model_dir)]) == 2
    finally:
        monkeypatch.undo()
        gemm.backend.cache_clear()
    assert "NMT_GEMM must be one of" in capsys.readouterr().err


def test_translate_n_best_moses_format(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    lines = ["भारत एक देश है।", "", "वह घर जा रहा है।"]
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, lines,
                                     "--beam-size", "4", "--n-best", "3")
    assert status == 0, captured.err
    rows = [row.split(" ||| ") for row in captured.out.splitlines()]
    assert all(len(row) == 3 for row in rows)
    numbers = [int(row[0]) for row in rows]
    assert numbers == sorted(numbers)
    assert set(numbers) == {0, 1, 2}  # every line has at least its best translation

    status, plain = run_translate(monkeypatch, capsys, tiny_model_dir, lines, "--beam-size", "4")
    for number, best in enumerate(plain.out.split("\n")[:-1]):
        texts = [row[1] for row in rows if int(row[0]) == number]
        scores = [float(row[2]) for row in rows if int(row[0]) == number]
        assert texts[0] == best  # the first is what plain `nmt translate` prints
        assert 1 <= len(texts) <= 3
        assert len(set(texts)) == len(texts)  # alternatives are distinct
        assert scores == sorted(scores, reverse=True)


def test_translate_n_best_strips_line_ends(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    data = "भारत एक देश है।\r\n  \t\r\n".encode()
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, [], "--n-best", "2",
                                     data=data)
    assert status == 0, captured.err
    rows = [row.split(" ||| ") for row in captured.out.splitlines()]
    assert all(len(row) == 3 for row in rows)
    assert all(row[1] == row[1].strip() for row in rows)
    assert ["1", "", "0.0000"] in rows  # a blank line gives one empty translation


def test_translate_closed_pipe_exits_quietly(tiny_model_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nmt.cli", "--log-level", "WARNING", "translate", "--model",
         str(tiny_model_dir)], cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader goes away before any output, as `| head -0` would
    _, errors = process.communicate("".join(f"{line}\n" for line in LINES).encode(), timeout=120)
    assert process.returncode == 1
    assert b"Traceback" not in errors


def test_translate_n_best_over_beam(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())
    assert main(["translate", "--model", str(tiny_model_dir), "--beam-size", "2",
                 "--n-best", "3"]) == 2
    assert "--n-best must be at most --beam-size (2), got 3" in capsys.readouterr().err


def test_translate_n_best_widens_default_beam(monkeypatch, capsys,
                                              tiny_model_dir: Path) -> None:
    beam = Translator.load(tiny_model_dir).options.beam_size
    lines = ["भारत एक देश है।"]
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, lines, "--n-best",
                                     str(beam + 1))
    assert status == 0, captured.err
    status, wide = run_translate(monkeypatch, capsys, tiny_model_dir, lines, "--n-best",
                                 str(beam + 1), "--beam-size", str(beam + 1))
    assert captured.out == wide.out  # the same search as an explicit beam of n-best
    assert 1 <= len(captured.out.splitlines()) <= beam + 1


def test_translate_max_length_caps_output(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    translator = Translator.load(tiny_model_dir)
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, ["भारत एक देश है।"],
                                     "--max-length", "2")
    assert status == 0, captured.err
    output = captured.out.removesuffix("\n")
    assert output == translator.translate(["भारत एक देश है।"], max_length=2)[0].text
    assert len(translator.tokenizer.encode(output)) <= 2


@pytest.fixture
def ct2_model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    pytest.importorskip("ctranslate2")
    from nmt.ct2 import export_ct2

    return export_ct2(tiny_model_dir, tmp_path / "ct2")


def test_translate_ctranslate2_engine(monkeypatch, capsys, ct2_model_dir: Path) -> None:
    from nmt.ct2 import CT2Translator

    lines = ["भारत एक देश है।", "", "वह घर जा रहा है।"]
    status, captured = run_translate(monkeypatch, capsys, ct2_model_dir, lines, "--engine",
                                     "ctranslate2", "--threads", "1")

    assert status == 0, captured.err
    translator = CT2Translator.load(ct2_model_dir, threads=1)
    expected = [t.text for t in translator.translate([lines[0], lines[2]])]
    assert captured.out.split("\n")[:-1] == [expected[0], "", expected[1]]


def test_translate_ctranslate2_rejects_native_model(monkeypatch, capsys,
                                                    tiny_model_dir: Path) -> None:
    pytest.importorskip("ctranslate2")
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())

    assert main(["translate", "--model", str(tiny_model_dir), "--engine", "ctranslate2"]) == 2
    message = capsys.readouterr().err
    assert "contains a PyTorch model, which engine ctranslate2 cannot load" in message
    assert f"convert it first with `nmt export-ct2 --model {tiny_model_dir}" in message


def test_translate_ctranslate2_incomplete_export(monkeypatch, capsys, ct2_model_dir: Path,
                                                 tmp_path: Path) -> None:
    broken = Path(shutil.copytree(ct2_model_dir, tmp_path / "broken"))
    (broken / "model.bin").write_bytes(b"not a model")
    missing = Path(shutil.copytree(ct2_model_dir, tmp_path / "missing"))
    (missing / "model.bin").unlink()
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())

    assert main(["translate", "--model", str(broken), "--engine", "ctranslate2"]) == 2
    assert "is not a usable `nmt export-ct2` folder" in capsys.readouterr().err
    assert main(["translate", "--model", str(missing), "--engine", "ctranslate2"]) == 2
    assert "is missing model.bin" in capsys.readouterr().err


def test_translate_native_engine_names_ct2_export(monkeypatch, capsys,
                                                  ct2_model_dir: Path) -> None:
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())

    assert main(["translate", "--model", str(ct2_model_dir)]) == 2
    assert "contains a CTranslate2 export" in capsys.readouterr().err


def test_translate_ctranslate2_without_extra(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 now fails
    monkeypatch.setattr(sys, "stdin", _UnreadableStdin())

    assert main(["translate", "--model", str(tmp_path), "--engine", "ctranslate2"]) == 2
    assert "--engine ctranslate2 needs the ct2 extra" in capsys.readouterr().err


def test_translate_empty_stdin(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, [])
    assert status == 0
    assert captured.out == ""


def test_translate_invalid_utf8_exits_2(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    data = "नमस्ते\n".encode() + b"abc \xff\xfe\n"
    status, captured = run_translate(monkeypatch, capsys, tiny_model_dir, [], data=data)
    assert status == 2
    assert "input line 2 is not valid UTF-8: byte 0xff at offset 4" in captured.err
    assert captured.out == ""


def test_translate_missing_model(monkeypatch, capsys, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    status, captured = run_translate(monkeypatch, capsys, missing, ["नमस्ते"])
    assert status == 2
    assert str(missing) in captured.err
    assert captured.out == ""


def test_translate_incomplete_model(monkeypatch, capsys, tiny_model_dir: Path,
                                    tmp_path: Path) -> None:
    import shutil

    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    (model_dir / "tokenizer.model").unlink()
    status, captured = run_translate(monkeypatch, capsys, model_dir, ["नमस्ते"])
    assert status == 2
    assert "tokenizer.model" in captured.err


def run_module(*arguments: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "nmt.cli", *arguments], cwd=REPO_ROOT, env=env,
                          input=stdin.encode("utf-8"), capture_output=True, timeout=120)


def test_translate_process_stdin_to_stdout(tiny_model_dir: Path) -> None:
    result = run_module("--log-level", "WARNING", "translate", "--model", str(tiny_model_dir),
                        stdin="".join(f"{line}\n" for line in LINES))
    outputs = result.stdout.decode("utf-8").split("\n")
    assert result.returncode == 0, result.stderr.decode("utf-8")
    assert len(outputs) == len(LINES) + 1
    assert [output.strip() == "" for output in outputs[:-1]] == [
        line.strip() == "" for line in LINES]


def test_help_lists_subcommands() -> None:
    result = run_module("--help")
    help_text = result.stdout.decode("utf-8")
    assert result.returncode == 0
    for command in ("train-tokenizer", "train", "translate", "evaluate", "average", "export",
                    "serve"):
        assert re.search(rf"^\s+{command}\s", help_text, re.MULTILINE), command


def test_export_fp16(capsys, tiny_model_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "fp16"
    status = main(["export", "--model", str(tiny_model_dir), "--dtype", "fp16",
                   "--out", str(out_dir)])
    assert status == 0
    assert capsys.readouterr().out.strip() == str(out_dir)
    assert Translator.load(out_dir).metadata == Translator.load(tiny_model_dir).metadata


@pytest.mark.parametrize("option, value", [("--beam-size", "0"), ("--threads", "-1"),
                                           ("--batch-lines", "0"), ("--beam-size", "two")])
def test_translate_rejects_bad_numbers(capsys, option: str, value: str) -> None:
    with pytest.raises(SystemExit) as error:
        main(["translate", option, value])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert option in message
    assert value in message


def test_unknown_subcommand_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as error:
        main(["no-such-command"])
    assert error.value.code == 2


def test_train_without_datasets_names_the_extra(monkeypatch, capsys, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("name: run\ndata:\n  sources: [{name: pairs}]\n  exclude: []\n  dev: pairs\n",
                      encoding="utf-8")
    (tmp_path / "pairs.hi").write_text("भारत\n", encoding="utf-8")
    (tmp_path / "pairs.en").write_text("India\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now fails
    for name in [name for name in sys.modules if name.startswith("training.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, then restored

    assert main(["train", "--config", str(config), "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "needs the package 'datasets'" in error
    assert "pip install -e '.[train]'" in error


def test_translate_beam_over_max_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", "--beam-size", "65"])
    assert exit_info.value.code == 2
    assert "--beam-size: must be at most 64, got 65" in capsys.readouterr().err


def test_translator_rejects_wide_beam(tiny_model_dir: Path) -> None:
    translator = Translator.load(tiny_model_dir)
    with pytest.raises(ValueError, match="beam_size must be between 1 and 64, got 65"):
        translator.translate(["भारत"], beam_size=65)


@pytest.mark.parametrize(("device", "words"), [
    ("bogus", "device 'bogus' is not a valid torch device"),
    ("meta", "device 'meta' has type 'meta', which translation cannot run on"),
])
def test_translator_rejects_unusable_device(tiny_model_dir: Path, device: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Translator.load(tiny_model_dir, device=device)


def test_translator_names_missing_cuda(tiny_model_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device 'cuda' cannot be used: CUDA is not available"):
        Translator.load(tiny_model_dir, device="cuda")


def test_average_stores_alpha(capsys, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "model")
    weights = Translator.load(tiny_model_dir).model.state_dict()
    for step in (1, 2):
        save_checkpoint(run_dir / "checkpoints", step, {"model": weights}, keep=5)
    out_dir = tmp_path / "averaged"
    status = main(["average", "--run-dir", str(run_dir), "--last", "2", "--alpha", "1.4",
                   "--out", str(out_dir)])
    assert status == 0
    assert capsys.readouterr().out.strip() == str(out_dir)
    assert Translator.load(out_dir).options.alpha == 1.4


@pytest.mark.parametrize("flag", ["--alpha", "--beta"])
@pytest.mark.parametrize("value", ["-0.5", "nan", "inf", "high"])
def test_average_rejects_bad_penalties(capsys, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as error:
        main(["average", "--run-dir", "run", flag, value, "--out", "out"])
    assert error.value.code == 2
    assert flag in capsys.readouterr().err


def test_average_stores_beta(capsys, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "model")
    weights = Translator.load(tiny_model_dir).model.state_dict()
    save_checkpoint(run_dir / "checkpoints", 1, {"model": weights}, keep=5)
    out_dir = tmp_path / "averaged"
    assert main(["average", "--run-dir", str(run_dir), "--last", "1", "--beta", "0.4",
                 "--out", str(out_dir)]) == 0
    options = Translator.load(out_dir).options
    assert (options.beta, options.alpha) == (0.4, Translator.load(tiny_model_dir).options.alpha)


def test_translate_penalties_match_translator(monkeypatch, capsys, tiny_model_dir: Path) -> None:
    lines = ["मैं 202 घर जा रहा हूँ।", "यह किताब बहुत अच्छी है।"]
    _, captured = run_translate(monkeypatch, capsys, tiny_model_dir, lines, "--beam-size", "2",
                                "--n-best", "2", "--alpha", "0.5", "--beta", "0.8")
    translator = Translator.load(tiny_model_dir)
    translator.options = replace(translator.options, alpha=0.5, beta=0.8)
    expected = [f"{number} ||| {h.text} ||| {h.score:.4f}"
                for number, t in enumerate(translator.translate(lines, beam_size=2, n_best=2))
                for h in t.alternatives]
    assert captured.out.splitlines() == expected


def test_average_rejects_invalid_run_metadata(capsys, tiny_model_dir: Path,
                                              tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "model")
    (run_dir / "model" / "metadata.json").write_text('{"search": {"beta": -1}}')
    out_dir = tmp_path / "averaged"
    status = main(["average", "--run-dir", str(run_dir), "--out", str(out_dir)])
    assert status == 2
    assert 'invalid "search" setting: beta must be a finite number' in capsys.readouterr().err
    assert not out_dir.exists()


@pytest.mark.parametrize("search", ["null", "[1]"])
def test_average_rejects_non_object_search(capsys, tiny_model_dir: Path, tmp_path: Path,
                                           search: str) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "model")
    (run_dir / "model" / "metadata.json").write_text(f'{{"search": {search}}}')
    status = main(["average", "--run-dir", str(run_dir), "--alpha", "1.4",
                   "--out", str(tmp_path / "averaged")])
    assert status == 2
    assert '"search" must be an object, got' in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--alpha", "10.5", "must be at most 10, got 10.5"),
    ("--beta", "1e300", "must be at most 100, got 1e+300"),
])
def test_translate_rejects_huge_penalties(capsys, flag: str, value: str, message: str) -> None:
    with pytest.raises(SystemExit) as error:
        main(["translate", flag, value])
    assert error.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--alpha", "--beta"])
def test_translate_rejects_negative_penalties(capsys, flag: str) -> None:
    with pytest.raises(SystemExit) as error:
        main(["translate", flag, "-1"])
    assert error.value.code == 2
    assert f"argument {flag}: must be a finite number of at least 0" in capsys.readouterr().err


def test_serve_reports_broken_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "service.cli", None)  # importing it raises ImportError
    assert main(["serve", "--port", "8000"]) == 2
    message = capsys.readouterr().err
    assert "nmt serve: error: the service cannot be imported" in message


def test_rejects_unknown_log_level(capsys) -> None:
    with pytest.raises(SystemExit) as error:
        main(["--log-level", "loud", "translate"])
    assert error.value.code == 2
    assert "--log-level: invalid choice: 'LOUD'" in capsys.readouterr().err
