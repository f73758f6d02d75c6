#!/usr/bin/env bash
# Train a larger model on one GPU in about ten minutes and leave a model directory, ready to
# release, with its IITB dev scores.
#
#   bash scripts/gpu-train.sh DATA_DIR OUT_DIR [CONFIG]
#
# DATA_DIR contains the training sources under train/ and the evaluation sets under eval/, as for
# `nmt train`. CONFIG defaults to configs/gpu-10min.yaml. OUT_DIR receives:
#   train.log      the training log (loss, target tokens/s, dev BLEU at each validation)
#   model/         fp16 average of the run's last checkpoints (the config's eval.average_last),
#                  with the release's search α = 1.4
#   dev.json       BLEU, chrF2 and chrF++ of model/ on IITB dev, beam 4 (nmt evaluate --json)
# With SPLIT_MB=N, model/model.safetensors is also cut into parts of N MiB
# (model.safetensors.part-aa, -ab, ...) and removed, for transfers that limit a file's size;
# `cat model.safetensors.part-* > model.safetensors` puts it back. The log's progress bar shows
# the steps per second (it/s). Relative paths are taken from the current folder.
#
# It runs from the repository without installing it, with the packages of the `train` extra
# (torch with CUDA, sentencepiece, sacrebleu, safetensors, PyYAML, datasets and its pyarrow,
# dill and multiprocess). The run folder (checkpoints) is a temporary folder, removed when the
# script exits, so a stopped run cannot resume.
set -euo pipefail
usage="usage: gpu-train.sh DATA_DIR OUT_DIR [CONFIG]"
data_dir=$(realpath -m "${1:?$usage}")
out_dir=$(realpath -m "${2:?$usage}")
repo=$(realpath "$(dirname "$0")/..")
config=$(realpath -m "${3:-$repo/configs/gpu-10min.yaml}")
python=${PYTHON:-python3}
if [[ -n "${SPLIT_MB:-}" && ! "$SPLIT_MB" =~ ^[1-9][0-9]*$ ]]; then
  echo "gpu-train.sh: SPLIT_MB must be a whole number of MiB, at least 1, got '$SPLIT_MB'" >&2
  exit 2
fi
cd "$repo"  # the config's tokenizer path is relative to the repository
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# The config is read before anything is written.
settings=$("$python" - "$config" <<'PY'
import sys

import yaml

from training.config import load_config

try:
    config = load_config(sys.argv[1])
except (OSError, ValueError, yaml.YAMLError) as error:
    sys.exit(f"gpu-train.sh: invalid config {sys.argv[1]}: {error}")
print(config.name, config.eval.average_last)
PY
) || exit 2
read -r name average_last <<< "$settings"

mkdir -p "$out_dir"
rm -rf "$out_dir/model" "$out_dir/dev.json"  # no results of an earlier run are left beside this one
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT

"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' \
  | tee "$out_dir/train.log"
"$python" -m nmt.cli train --config "$config" --data-dir "$data_dir" --out-dir "$runs" \
  2>&1 | tee -a "$out_dir/train.log"

"$python" -m nmt.cli average --run-dir "$runs/$name" --last "$average_last" --dtype fp16 --alpha 1.4 \
  --out "$out_dir/model"
device=$("$python" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
"$python" -m nmt.cli evaluate --model "$out_dir/model" --device "$device" --json \
  --src "$data_dir/eval/iitb-dev.hi" --ref "$data_dir/eval/iitb-dev.en" > "$out_dir/dev.json"
cat "$out_dir/dev.json"

if [[ -n "${SPLIT_MB:-}" ]]; then
  split -b "${SPLIT_MB}M" "$out_dir/model/model.safetensors" "$out_dir/model/model.safetensors.part-"
  rm "$out_dir/model/model.safetensors"
fi
