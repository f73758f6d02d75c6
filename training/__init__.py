"""Training pipeline: data, tokenizer training, the training loop and evaluation."""
