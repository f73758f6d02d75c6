#!/usr/bin/env bash
# Train a larger model on one GPU in about ten minutes and leave a model directory, ready to
# release, with its IITB dev scores.
#
#   bash scripts/gpu-train.sh DATA_DIR OUT_DIR [CONFIG]
#
# DATA_DIR contains the training sources under train/ and the evaluation sets under eval/, as for
# `nmt train`. CONFIG defaults to configs/gpu-10min.yaml. OUT_DIR receives:
#   train.log      the training log (loss, steps/s, dev BLEU at each validation)
#   model/         fp16 average of the run's last checkpoints (the config's eval.average_last),
#                  with the release's search α = 1.4
#   dev.json       BLEU, chrF2 and chrF++ of model/ on IITB dev, beam 4 (nmt evaluate --json)
# With SPLIT_MB=N, model/model.safetensors is also cut into parts of N MiB
# (model.safetensors.part-aa, -ab, ...) and removed, for transfers that limit a file's size;
# `cat model.safetensors.part-* > model.safetensors` puts it back.
#
# It runs from the repository without installing it, with the packages of the `train` extra
# (torch with CUDA, sentencepiece, sacrebleu, safetensors, PyYAML, datasets and its pyarrow,
# dill and multiprocess). Its run folder (checkpoints) goes to a temporary folder outside
# OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: gpu-train.sh DATA_DIR OUT_DIR [CONFIG]"
data_dir=${1:?$usage}
out_dir=${2:?$usage}
config=${3:-configs/gpu-10min.yaml}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

mkdir -p "$out_dir"
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
read -r name average_last < <("$python" -c 'import sys; from training.config import load_config
config = load_config(sys.argv[1]); print(config.name, config.eval.average_last)' "$config")

"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' \
  | tee "$out_dir/train.log"
"$python" -m nmt.cli train --config "$config" --data-dir "$data_dir" --out-dir "$runs" \
  2>&1 | tee -a "$out_dir/train.log"

rm -rf "$out_dir/model"
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
