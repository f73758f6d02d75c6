"""Tests for training.data (loading, source weights) and training.cleaning."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from training.data import (
    CleaningConfig,
    CleaningReport,
    SourceSpec,
    clean_pairs,
    load_eval_texts,
    load_parallel,
    load_sources,
    prepare_training_data,
)

NUKTA = "\u093c"
ZWJ = "\u200d"
ZWNJ = "\u200c"


def write_pair(prefix: Path, hi: list[str], en: list[str]) -> Path:
    """Write an aligned pair `prefix.hi` / `prefix.en`, one segment per line."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.hi").write_text("".join(f"{line}\n" for line in hi), encoding="utf-8")
    Path(f"{prefix}.en").write_text("".join(f"{line}\n" for line in en), encoding="utf-8")
    return prefix


def pairs_dataset(pairs: list[tuple[str, str]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"hi": [p[0] for p in pairs], "en": [p[1] for p in pairs]})


@pytest.fixture
def iitb_pairs(fixtures_dir: Path) -> tuple[list[str], list[str]]:
    hi = (fixtures_dir / "iitb-300.hi").read_text(encoding="utf-8").splitlines()
    en = (fixtures_dir / "iitb-300.en").read_text(encoding="utf-8").splitlines()
    return hi, en


# --- loading -----------------------------------------------------------------------------------


def test_aligned_pair_loads_columns(fixtures_dir, iitb_pairs):
    ds = load_parallel(str(fixtures_dir / "iitb-300"))

    assert ds.column_names == ["hi", "en"]
    assert ds.features["hi"] == datasets.Value("string")
    assert ds.features["en"] == datasets.Value("string")
    assert len(ds) == 300
    assert ds["hi"][:] == iitb_pairs[0]
    assert ds["en"][:] == iitb_pairs[1]


def _write_tsv(path: Path, hi: list[str], en: list[str]) -> None:
    path.write_text("".join(f"{h}\t{e}\n" for h, e in zip(hi, en, strict=True)), encoding="utf-8")


def _write_tsv_header_en_first(path: Path, hi: list[str], en: list[str]) -> None:
    rows = ["en\thi"] + [f"{e}\t{h}" for h, e in zip(hi, en, strict=True)]
    path.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")


def _write_jsonl_flat(path: Path, hi: list[str], en: list[str]) -> None:
    rows = [json.dumps({"hi": h, "en": e}, ensure_ascii=False) for h, e in zip(hi, en, strict=True)]
    path.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")


def _write_jsonl_translation(path: Path, hi: list[str], en: list[str]) -> None:
    rows = [json.dumps({"translation": {"en": e, "hi": h}}) for h, e in zip(hi, en, strict=True)]
    path.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")


@pytest.mark.parametrize(
    "filename, write",
    [
        ("pairs.tsv", _write_tsv),
        ("pairs.tsv", _write_tsv_header_en_first),
        ("pairs.jsonl", _write_jsonl_flat),
        ("pairs.jsonl", _write_jsonl_translation),
    ],
    ids=["tsv", "tsv-header-en-hi", "jsonl-flat", "jsonl-translation"],
)
def test_file_formats_match_aligned_pair(tmp_path, fixtures_dir, iitb_pairs, filename, write):
    path = tmp_path / filename
    write(path, *iitb_pairs)

    ds = load_parallel(str(path))

    assert ds.column_names == ["hi", "en"]
    assert ds.features == load_parallel(str(fixtures_dir / "iitb-300")).features
    assert ds.to_dict() == {"hi": iitb_pairs[0], "en": iitb_pairs[1]}


def test_mismatched_line_count_names_both(tmp_path):
    prefix = tmp_path / "bad"
    Path(f"{prefix}.hi").write_text("एक\nदो\nतीन\n", encoding="utf-8")
    Path(f"{prefix}.en").write_text("one\ntwo\n", encoding="utf-8")

    with pytest.raises(ValueError, match="line count") as raised:
        load_parallel(str(prefix))

    assert "3 lines" in str(raised.value)
    assert "2 lines" in str(raised.value)


def test_line_split_only_on_newline(tmp_path):
    # U+0085 (NEL) and U+2028 occur inside real segments; splitting on them misaligns the pair.
    prefix = write_pair(tmp_path / "nel", ["पहला\x85भाग", "दूसरा\u2028भाग"], ["first", "second"])

    ds = load_parallel(str(prefix))

    assert ds["hi"][:] == ["पहला\x85भाग", "दूसरा\u2028भाग"]
    assert ds["en"][:] == ["first", "second"]


def test_empty_lines_stay_aligned(tmp_path):
    prefix = write_pair(tmp_path / "gaps", ["एक", "", "तीन"], ["one", "two", ""])

    ds = load_parallel(str(prefix))

    assert ds["hi"][:] == ["एक", "", "तीन"]
    assert ds["en"][:] == ["one", "two", ""]


def test_tsv_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("hi\ten\nएक\tone\nदो two\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"bad.tsv:3: expected 2 tab-separated fields, found 1"):
        load_parallel(str(path))


def test_jsonl_missing_key_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"hi": "एक", "en": "one"}\n{"hi": "दो"}\n', encoding="utf-8")

    with pytest.raises(ValueError, match=r"bad.jsonl:2:"):
        load_parallel(str(path))


def test_missing_source_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_parallel(str(tmp_path / "nowhere"))


def test_local_source_rejects_other_split(fixtures_dir):
    with pytest.raises(ValueError, match="validation"):
        load_parallel(str(fixtures_dir / "iitb-300"), split="validation")


# --- source weights ----------------------------------------------------------------------------


@pytest.fixture
def two_sources(tmp_path) -> Path:
    write_pair(
        tmp_path / "small", [f"छोटा {i}" for i in range(10)], [f"small {i}" for i in range(10)]
    )
    write_pair(
        tmp_path / "large", [f"बड़ा {i}" for i in range(20)], [f"large {i}" for i in range(20)]
    )
    return tmp_path


def test_sources_concatenated_with_names(two_sources):
    ds = load_sources(two_sources, [SourceSpec("small"), SourceSpec("large")])

    assert ds.column_names == ["hi", "en", "source"]
    assert Counter(ds["source"][:]) == {"small": 10, "large": 20}
    assert ds[0] == {"hi": "छोटा 0", "en": "small 0", "source": "small"}


def test_weight_below_one_subsamples(two_sources):
    specs = [SourceSpec("small"), SourceSpec("large", weight=0.25)]

    first = load_sources(two_sources, specs, seed=1)
    again = load_sources(two_sources, specs, seed=1)
    other_seed = load_sources(two_sources, specs, seed=2)

    large = [row["en"] for row in first if row["source"] == "large"]
    assert len(large) == 5
    assert len(set(large)) == 5
    assert first.to_dict() == again.to_dict()
    assert other_seed.to_dict() != first.to_dict()


def test_weight_above_one_repeats(two_sources):
    ds = load_sources(two_sources, [SourceSpec("small", weight=2.5), SourceSpec("large")])

    small = Counter(row["en"] for row in ds if row["source"] == "small")
    assert sum(small.values()) == 25
    assert set(small) == {f"small {i}" for i in range(10)}
    assert sorted(Counter(small.values()).items()) == [(2, 5), (3, 5)]


def test_source_sample_independent_of_order(two_sources):
    forward = load_sources(two_sources, [SourceSpec("small"), SourceSpec("large", 0.5)], seed=3)
    reverse = load_sources(two_sources, [SourceSpec("large", 0.5), SourceSpec("small")], seed=3)

    def large_rows(ds):
        return [row["en"] for row in ds if row["source"] == "large"]

    assert large_rows(forward) == large_rows(reverse)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_source_spec_rejects_weight(weight):
    with pytest.raises(ValueError, match="weight"):
        SourceSpec("small", weight=weight)


def test_duplicate_source_names_rejected(two_sources):
    with pytest.raises(ValueError, match="unique"):
        load_sources(two_sources, [SourceSpec("small"), SourceSpec("small")])


def test_prepare_keeps_upsampled_repeats(two_sources):
    # Deduplication runs before weighting, so the repeats from weight 2 survive cleaning.
    specs = [SourceSpec("small", weight=2.0), SourceSpec("large")]

    ds, report = prepare_training_data(two_sources, specs, CleaningConfig())

    assert report.duplicate == 0
    assert report.kept == 30
    assert Counter(ds["source"][:]) == {"small": 20, "large": 20}


def test_prepare_dedupes_across_sources(tmp_path):
    write_pair(tmp_path / "first", ["एक", "दो"], ["one", "two"])
    write_pair(tmp_path / "second", ["दो", "तीन"], ["two", "three"])

    ds, report = prepare_training_data(
        tmp_path, [SourceSpec("first"), SourceSpec("second")], CleaningConfig()
    )

    assert report.duplicate == 1
    assert ds.to_dict()["source"] == ["first", "first", "second"]


# --- cleaning ----------------------------------------------------------------------------------

GOOD = ("यह एक अच्छा वाक्य है।", "This is a good sentence.")

CLEANING_CASES = [
    # (case id, pairs, expected drop counts, expected number of kept pairs)
    ("kept", [GOOD], {}, 1),
    ("empty-hindi", [GOOD, ("", "Nothing on the left.")], {"empty": 1}, 1),
    ("blank-english", [GOOD, ("कुछ नहीं", " \t ")], {"empty": 1}, 1),
    ("too-long", [GOOD, ("क" * 401, "k" * 401)], {"too_long": 1}, 1),
    ("at-max-length", [GOOD, ("क" * 400, "k" * 400)], {}, 2),
    (
        "ratio-outlier",
        [GOOD, ("नमस्ते", "Hello and welcome to everyone who came here")],
        {"length_ratio": 1},
        1,
    ),
    ("short-pair-allowance", [GOOD, ("जी।", "Yes, of course.")], {}, 2),
    ("duplicate", [GOOD, GOOD], {"duplicate": 1}, 1),
    (
        "whitespace-duplicate",
        [GOOD, ("  यह एक  अच्छा वाक्य है। ", "This is a\tgood sentence.")],
        {"duplicate": 1},
        1,
    ),
    (
        "eval-overlap-hindi",
        [GOOD, ("यह परीक्षा का वाक्य है।", "Some other English.")],
        {"eval_overlap": 1},
        1,
    ),
    (
        "eval-overlap-english",
        [GOOD, ("कुछ और हिंदी।", "This is an evaluation sentence.")],
        {"eval_overlap": 1},
        1,
    ),
    (
        "mojibake-hindi",
        [GOOD, ("à¤«à¤¼à¤¾à¤à¤² à¤à¤à¤¾à¤°", "File size")],
        {"mojibake": 1},
        1,
    ),
    ("sentence-marker-only", [GOOD, ("<s>", "<s>")], {"empty": 1}, 1),
]

EXCLUDE = {"यह परीक्षा का वाक्य है।", "This is an evaluation sentence."}


@pytest.mark.parametrize(
    "pairs, dropped, kept",
    [case[1:] for case in CLEANING_CASES],
    ids=[case[0] for case in CLEANING_CASES],
)
def test_cleaning_cases(pairs, dropped, kept):
    cleaned, report = clean_pairs(pairs_dataset(pairs), CleaningConfig(), exclude=EXCLUDE)

    assert report.total == len(pairs)
    assert report.kept == kept
    assert len(cleaned) == kept
    for reason in ("empty", "too_short", "too_long", "length_ratio", "mojibake", "eval_overlap",
                   "duplicate"):
        assert getattr(report, reason) == dropped.get(reason, 0), reason


def test_cleaning_removes_sentence_markers():
    pairs = [("कीमियागर रेत पर चित्र बनाने लगा । <s> ऐसा करने में उसे पांच मिनट लगे ।",
              "The alchemist began to draw in the sand. <s>It took him five minutes.")]
    cleaned, report = clean_pairs(pairs_dataset(pairs), CleaningConfig())
    assert report.kept == 1
    assert cleaned["hi"] == ["कीमियागर रेत पर चित्र बनाने लगा । ऐसा करने में उसे पांच मिनट लगे ।"]
    assert cleaned["en"] == ["The alchemist began to draw in the sand. It took him five minutes."]


def test_cleaning_min_chars():
    config = CleaningConfig(min_chars=3)

    _, report = clean_pairs(pairs_dataset([GOOD, ("हाँ", "Ok")]), config)

    assert report.too_short == 1
    assert report.kept == 1


def test_nukta_and_zwj_variants_deduplicated():
    precomposed = "\u095b\u0930\u0942\u0930\u0940 \u0915\u093e\u092e"  # ज़रूरी काम, U+095B
    decomposed = "\u091c" + NUKTA + "\u0930\u0942\u0930\u0940 \u0915\u093e\u092e"
    with_joiners = (
        "\u091c" + NUKTA + ZWJ + "\u0930\u0942\u0930\u0940 " + ZWNJ + "\u0915\u093e\u092e"
    )
    assert len({precomposed, decomposed, with_joiners}) == 3
    pairs = [
        (precomposed, "Important work."),
        (decomposed, "Important work."),
        (with_joiners, "Important work."),
    ]

    cleaned, report = clean_pairs(pairs_dataset(pairs), CleaningConfig())

    assert report.duplicate == 2
    assert cleaned["hi"][:] == [decomposed]


def test_without_normalize_variants_stay():
    precomposed = "\u095b\u0930\u0942\u0930\u0940"
    decomposed = "\u091c" + NUKTA + "\u0930\u0942\u0930\u0940"
    pairs = [(precomposed, "Necessary."), (decomposed, "Necessary.")]

    cleaned, report = clean_pairs(pairs_dataset(pairs), CleaningConfig(normalize=False))

    assert report.duplicate == 0
    assert cleaned["hi"][:] == [precomposed, decomposed]


def test_eval_overlap_matches_nukta_variant(tmp_path):
    (tmp_path / "dev.hi").write_text(
        "\u095b\u0930\u0942\u0930\u0940 \u0939\u0948\u0964\n\n", encoding="utf-8"
    )
    (tmp_path / "dev.en").write_text("It  is necessary.\n", encoding="utf-8")
    exclude = load_eval_texts([tmp_path / "dev.hi", tmp_path / "dev.en"])
    pairs = [
        (
            "\u091c" + NUKTA + ZWJ + "\u0930\u0942\u0930\u0940 \u0939\u0948\u0964",
            "Different English.",
        ),
        ("अलग हिंदी।", "It is necessary."),
        GOOD,
    ]

    cleaned, report = clean_pairs(pairs_dataset(pairs), CleaningConfig(), exclude=exclude)

    assert "" not in exclude
    assert report.eval_overlap == 2
    assert cleaned.to_dict() == {"hi": [GOOD[0]], "en": [GOOD[1]]}


def test_dedupe_disabled_keeps_duplicates():
    _, report = clean_pairs(pairs_dataset([GOOD, GOOD]), CleaningConfig(dedupe=False))

    assert report.kept == 2


def test_cleaning_keeps_other_columns_after_select():
    ds = pairs_dataset([GOOD, ("", "x"), ("दूसरा वाक्य।", "Second sentence.")])
    ds = ds.add_column("source", ["a", "b", "c"]).select([2, 1, 0])  # leaves an index mapping

    cleaned, _ = clean_pairs(ds, CleaningConfig())

    assert cleaned.column_names == ["hi", "en", "source"]
    assert cleaned.to_dict() == {
        "hi": ["दूसरा वाक्य।", GOOD[0]],
        "en": ["Second sentence.", GOOD[1]],
        "source": ["c", "a"],
    }


def test_cleaning_fixture_keeps_all(fixtures_dir):
    # The fixture pairs are real, distinct and 3-20 words per side, so every filter passes them.
    ds = load_parallel(str(fixtures_dir / "iitb-300"))
    exclude = load_eval_texts([fixtures_dir / "iitb-dev-50.hi", fixtures_dir / "iitb-dev-50.en"])

    cleaned, report = clean_pairs(ds, CleaningConfig(), exclude=exclude)

    assert len(exclude) == 100
    assert report == CleaningReport(total=300, kept=300)
    assert len(cleaned) == 300


def test_report_format():
    report = CleaningReport(total=10, kept=7, empty=1, duplicate=2)

    assert report.dropped == 3
    assert report.format() == "kept 7/10 (empty 1, duplicate 2)"


@pytest.mark.parametrize(
    "options",
    [
        {"min_chars": 0},
        {"min_chars": 10, "max_chars": 5},
        {"max_length_ratio": 0.5},
        {"ratio_allowance": -1},
    ],
)
def test_cleaning_config_rejects_invalid(options):
    with pytest.raises(ValueError):
        CleaningConfig(**options)
