"""Hindi-to-English neural machine translation: model, tokenizer, search and translator."""

__version__ = "0.1.0"
