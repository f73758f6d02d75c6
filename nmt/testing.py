"""A tiny, randomly initialized model directory for tests and examples; never for real use."""

from __future__ import annotations

from pathlib import Path

import torch

from nmt.config import ModelConfig
from nmt.model import Transformer
from nmt.model_dir import load_model_dir, save_model_dir
from nmt.tokenizer import Tokenizer

__all__ = ["TOY_PAIRS", "make_scrambled_model_dir", "make_tiny_model_dir"]

# A few short Hindi-English pairs: enough for a toy SentencePiece model.
TOY_PAIRS = [
    ("नमस्ते, आप कैसे हैं?", "Hello, how are you?"),
    ("भारत की राजधानी नई दिल्ली है।", "The capital of India is New Delhi."),
    ("मैं घर जा रहा हूँ।", "I am going home."),
    ("यह किताब बहुत अच्छी है।", "This book is very good."),
    ("आज मौसम साफ़ है।", "The weather is clear today."),
    ("वह स्कूल में पढ़ती है।", "She studies at school."),
    ("हम कल दिल्ली जाएंगे।", "We will go to Delhi tomorrow."),
    ("पानी पीना ज़रूरी है।", "Drinking water is necessary."),
    ("बच्चे बगीचे में खेल रहे हैं।", "The children are playing in the garden."),
    ("उसने मुझे एक पत्र लिखा।", "He wrote me a letter."),
    ("सरकार ने नई नीति की घोषणा की।", "The government announced a new policy."),
    ("कृपया दरवाज़ा बंद कीजिए।", "Please close the door."),
]


def make_tiny_model_dir(path: Path, seed: int = 0, *, max_positions: int = 64) -> Path:
    """Write a toy tokenizer and a random tiny Transformer to `path`; return `path`.

    Its translations are meaningless but deterministic for a given seed, which is what tests of
    batching, search and the service need.
    """
    from training.tokenizer_training import train_tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sentences = [side for pair in TOY_PAIRS for side in pair] * 4
    tokenizer_path = train_tokenizer(sentences, path / "tokenizer.model", vocab_size=400,
                                     hard_vocab_limit=False)
    tokenizer = Tokenizer.from_file(tokenizer_path)

    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=4, d_ff=64,
                         encoder_layers=2, decoder_layers=1, dropout=0.0,
                         max_positions=max_positions)
    model = Transformer(config, pad_id=tokenizer.pad_id)
    metadata = {"name": "tiny-test-model", "search": {"beam_size": 2, "max_length_extra": 5}}
    return save_model_dir(path, model, tokenizer_path, metadata)


def make_scrambled_model_dir(tiny_dir: Path, out: Path, seed: int, **changes) -> Path:
    """Write to `out` a model like the one in `tiny_dir`, with every parameter random; return `out`.

    The model has `tiny_dir`'s tokenizer and config, with `changes` applied to the config.

    Random biases and layer norm parameters make a wrong mapping of any of them visible. Matrices
    get 3 times the usual 1/√fan_in scale, which gives varied greedy outputs instead of one
    repeated token.
    """
    model, tokenizer, metadata = load_model_dir(tiny_dir)
    config = ModelConfig.from_dict({**model.config.to_dict(), **changes})
    model = Transformer(config, pad_id=tokenizer.pad_id)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.dim() == 2:
                parameter.copy_(noise * 3.0 / parameter.shape[1] ** 0.5)
            elif name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.2 * noise)
            else:
                parameter.copy_(0.2 * noise)
    return save_model_dir(out, model, tiny_dir / "tokenizer.model", metadata)
