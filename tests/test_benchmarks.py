"""Smoke tests of the benchmark scripts on a tiny model: they run, print ratios and reject bad
input. Their figures mean nothing here, and `benchmarks/README.md` has real ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HINDI = ["भारत एक देश है।", "आज मौसम अच्छा है।", "वह घर जा रहा है।", "यह किताब मेरी है।"]
ENGLISH = ["India is a country.", "The weather is good today.", "He is going home.",
           "This book is mine."]


# The scripts run in their own processes, which check --threads against the real CPUs.
NEEDS_TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                    reason="--threads 2 needs 2 CPUs available")


def _write_test_set(data_dir: Path) -> None:
    """Write the toy sentences as the iitb-test files of a data folder."""
    eval_dir = data_dir / "eval"
    eval_dir.mkdir()
    (eval_dir / "iitb-test.hi").write_text("\n".join(HINDI) + "\n", encoding="utf-8")
    (eval_dir / "iitb-test.en").write_text("\n".join(ENGLISH) + "\n", encoding="utf-8")


def _run(script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *argv],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("calls", [
    ("--threads", "1"),
    pytest.param(("--threads", "2", "--whole-set", "--streams", "2"), marks=NEEDS_TWO_CPUS),
])
def test_translation_speed_runs_each_engine(tiny_model_dir: Path, tmp_path: Path,
                                            calls: tuple[str, ...]) -> None:
    _write_test_set(tmp_path)
    engines = ["native", "ctranslate2"] if _has_ctranslate2() else ["native"]

    done = _run("translation_speed.py", "--model", str(tiny_model_dir), "--data-dir",
                str(tmp_path), "--sentences", "4", *calls, "--beam-sizes", "2",
                "--batch-sizes", "2", "--compute-types", "float32", "--engines", *engines)

    assert done.returncode == 0, done.stderr
    for engine in engines:
        assert f"done: {engine} float32 beam 2 batch 2" in done.stdout
    if len(engines) == 2:
        assert "float32  beam 2 batch  2:" in done.stdout
    assert re.search(r"float32  beam 2 batch  2: \d+ steps, [\d.]+ rows per step \(a full batch "
                     r"has 4\)", done.stdout)


def test_translation_speed_reports_round_medians(tiny_model_dir: Path,
                                                 tmp_path: Path) -> None:
    _write_test_set(tmp_path)
    engines = ["native", "ctranslate2"] if _has_ctranslate2() else ["native"]

    done = _run("translation_speed.py", "--model", str(tiny_model_dir), "--data-dir",
                str(tmp_path), "--sentences", "4", "--threads", "1", "--beam-sizes", "2",
                "--batch-sizes", "2", "--compute-types", "float32", "int8", "--engines",
                *engines, "--rounds", "2")

    assert done.returncode == 0, done.stderr
    assert re.search(r"native +beam 2: [+-]\d+\.\d+  \(p = [\d.]+\)", done.stdout)
    assert "round 2 of 2" in done.stdout
    assert "median of 2 rounds" in done.stdout
    assert done.stdout.count("done: native float32 beam 2 batch 2") == 2
    assert "the rounds' outputs differ" not in done.stdout
    if len(engines) == 2:
        # The ratio is the median of the rounds' ratios, then their lowest and highest.
        assert re.search(r"float32  beam 2 batch  2:  *[\d.]+ \([\d.]+-[\d.]+\)", done.stdout)


def test_translation_speed_ignores_repeated_values(tiny_model_dir: Path,
                                                   tmp_path: Path) -> None:
    _write_test_set(tmp_path)

    done = _run("translation_speed.py", "--model", str(tiny_model_dir), "--data-dir",
                str(tmp_path), "--sentences", "2", "--threads", "1", "--beam-sizes", "2", "2",
                "--batch-sizes", "2", "--compute-types", "float32", "float32", "--engines",
                "native", "native")

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("done: native float32 beam 2 batch 2") == 1
    # One engine and one compute type: nothing to compare, so no empty sections.
    assert "native / ctranslate2" not in done.stdout
    assert "int8 BLEU change" not in done.stdout


def test_translation_speed_rejects_zero_rounds(tiny_model_dir: Path) -> None:
    done = _run("translation_speed.py", "--model", str(tiny_model_dir), "--threads", "1",
                "--rounds", "0")
    assert done.returncode == 2
    assert "--rounds must be at least 1, got 0" in done.stderr


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--threads", "2", "--streams", "3", "--whole-set"],
                 "--streams must be between 1 and --threads (2), got 3", marks=NEEDS_TWO_CPUS),
    pytest.param(["--threads", "2", "--streams", "2"], "--streams above 1 needs --whole-set",
                 marks=NEEDS_TWO_CPUS),
])
def test_translation_speed_rejects_bad_streams(tiny_model_dir: Path, argv: list[str],
                                               message: str) -> None:
    done = _run("translation_speed.py", "--model", str(tiny_model_dir), *argv)
    assert done.returncode == 2
    assert message in done.stderr


def test_training_speed_names_missing_pairs(tmp_path: Path) -> None:
    done = _run("training_speed.py", "--pairs", str(tmp_path / "corpus"))

    assert done.returncode == 2
    assert f"no file {tmp_path / 'corpus'}.hi or {tmp_path / 'corpus'}.en" in done.stderr
    assert "PREFIX names the files PREFIX.hi and PREFIX.en" in done.stderr


def test_training_speed_runs_without_datasets(tmp_path: Path) -> None:
    # The serve-only venv lacks the train extra, which the benchmark does not need.
    script = REPO / "benchmarks" / "training_speed.py"
    code = ("import runpy, sys; sys.modules['datasets'] = sys.modules['pyarrow'] = None; "
            f"sys.argv = ['training_speed.py', '--pairs', {str(tmp_path / 'corpus')!r}]; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)

    assert done.returncode == 2, done.stderr
    assert "PREFIX names the files PREFIX.hi and PREFIX.en" in done.stderr


@pytest.mark.parametrize("argv", [["--batches", "0"], ["--rounds", "-1"], ["--threads", "0"]])
def test_training_speed_rejects_bad_counts(argv: list[str]) -> None:
    done = _run("training_speed.py", *argv)

    assert done.returncode == 2
    assert "must be at least 1" in done.stderr


@pytest.mark.parametrize("script, argv", [
    ("translation_speed.py", ["--model", "models/x"]),
    ("service_load.py", ["--model", "models/x"]),
    ("training_speed.py", []),
])
def test_benchmarks_reject_too_many_threads(script: str, argv: list[str]) -> None:
    done = _run(script, *argv, "--threads", "100000")

    assert done.returncode == 2
    assert "--threads must be a whole number between 1 and" in done.stderr
    assert "Traceback" not in done.stderr


def _has_ctranslate2() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True

