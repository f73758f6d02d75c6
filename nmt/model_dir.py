"""Reading and writing a model directory: the unit that `Translator`, the service and releases use.

A model directory contains ``model.safetensors`` (weights, fp32, fp16 or bf16), ``config.json``
(`ModelConfig`), ``tokenizer.model`` (SentencePiece) and ``metadata.json`` (search defaults and
provenance). Weights are read with safetensors, which never unpickles Python objects.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nmt.config import ModelConfig
from nmt.model import Transformer
from nmt.tokenizer import Tokenizer

__all__ = ["WEIGHTS", "CONFIG", "TOKENIZER", "METADATA", "CT2_FILES", "check_model_dir",
           "engine_mismatch", "load_model_dir", "read_metadata", "save_model_dir"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.model"
METADATA = "metadata.json"
# Files of a folder written by `nmt export-ct2`. Its config.json is CTranslate2's own.
CT2_FILES = ("model.bin", CONFIG, TOKENIZER, METADATA)


def save_model_dir(
    out_dir: Path,
    model: Transformer,
    tokenizer_path: Path,
    metadata: dict[str, Any],
    *,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write `model` with its tokenizer and metadata to `out_dir`, weights cast to `dtype`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to("cpu", dtype).contiguous()
             for name, tensor in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("output_projection.weight", None)
    save_file(state, str(out_dir / WEIGHTS), metadata={"format": "pt"})
    (out_dir / WEIGHTS).chmod(0o644)  # safetensors writes 0600; services often run as another user
    model.config.save(out_dir / CONFIG)
    if Path(tokenizer_path).resolve() != (out_dir / TOKENIZER).resolve():
        shutil.copyfile(tokenizer_path, out_dir / TOKENIZER)
    (out_dir / METADATA).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    return out_dir


def check_model_dir(model_dir: Path) -> None:
    """Raise FileNotFoundError unless `model_dir` is a folder with the files `load_model_dir`
    reads."""
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} is a file, not a directory")
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    missing = [name for name in (WEIGHTS, CONFIG, TOKENIZER) if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"model directory {model_dir} is missing {', '.join(missing)}")


def engine_mismatch(model_dir: Path, engine: str) -> str | None:
    """Return why `engine` ("native" or "ctranslate2") cannot load `model_dir` because it
    contains the other engine's kind of model, naming the command that converts or loads it, or
    None."""
    model_dir = Path(model_dir)
    is_native = (model_dir / WEIGHTS).is_file()
    is_ct2 = (model_dir / CT2_FILES[0]).is_file()
    if engine == "ctranslate2" and is_native and not is_ct2:
        return (f"model directory {model_dir} contains a PyTorch model, which engine ctranslate2 "
                f"cannot load; convert it first with `nmt export-ct2 --model {model_dir} --out "
                "DIR` and pass DIR as the model, or use --engine native")
    if engine == "native" and is_ct2 and not is_native:
        return (f"model directory {model_dir} contains a CTranslate2 export, which engine native "
                "cannot load; use --engine ctranslate2 (NMT_ENGINE=ctranslate2 for the service)")
    return None


def read_metadata(path: Path) -> dict[str, Any]:
    """Read a metadata.json file. Raise ValueError, naming `path`, unless it is a JSON object."""
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # decoding and parsing errors, deep nesting
        raise ValueError(f"{path} is not valid UTF-8 JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} must contain a JSON object, got {type(metadata).__name__}")
    return metadata


def load_model_dir(model_dir: Path, device: str = "cpu"
                   ) -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """Load the model (in fp32, eval mode), tokenizer and metadata of a model directory."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir)

    config = ModelConfig.load(model_dir / CONFIG)
    tokenizer = Tokenizer.from_file(model_dir / TOKENIZER)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} pieces but the model expects "
                         f"{config.vocab_size}")
    metadata = {}
    if (model_dir / METADATA).is_file():
        metadata = read_metadata(model_dir / METADATA)

    model = Transformer(config, pad_id=tokenizer.pad_id)
    state = {name: tensor.float() for name, tensor in load_file(str(model_dir / WEIGHTS)).items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), tokenizer, metadata
