"""The released model in models/hi-en loads and clears a BLEU floor on IITB dev sentences.

The floor sits well below the score the release measured on these 50 sentences, so only a broken
release (wrong weights, tokenizer or config, or a decoding regression) fails it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nmt.pipeline import translate_texts
from nmt.translator import Translator
from training.evaluate import read_lines, score_corpus

RELEASE_DIR = Path(__file__).resolve().parent.parent / "models" / "hi-en"

# The released model scores BLEU 6.76 and chrF2 29.19 on these 50 sentences with the service's
# default search (beam 4). A model with random weights scores BLEU near 0 and chrF2 under 5.
BLEU_FLOOR = 2.0
CHRF_FLOOR = 15.0

pytestmark = pytest.mark.skipif(not (RELEASE_DIR / "model.safetensors").is_file(),
                                reason="no released model in models/hi-en")


@pytest.fixture(scope="module")
def release() -> Translator:
    return Translator.load(RELEASE_DIR)


def test_release_metadata_names_search_defaults(release: Translator) -> None:
    search = release.metadata["search"]
    assert search["beam_size"] == 4
    assert search["no_repeat_ngram_size"] >= 2


def test_release_clears_bleu_floor(release: Translator, fixtures_dir: Path) -> None:
    sources = read_lines(fixtures_dir / "iitb-dev-50.hi")
    references = read_lines(fixtures_dir / "iitb-dev-50.en")

    hypotheses = [result.translation for result in translate_texts(release, sources)]
    scores = score_corpus(hypotheses, references)

    assert scores.bleu >= BLEU_FLOOR, scores.format()
    assert scores.chrf2 >= CHRF_FLOOR, scores.format()


def test_release_translates_into_english(release: Translator) -> None:
    (result,) = translate_texts(release, ["भारत की राजधानी नई दिल्ली है।"])

    assert result.translation.isascii()
    assert "India" in result.translation
