#!/usr/bin/env bash
# Margin-term ablation at equal budget. It continues a finished run three times from the same
# checkpoint for STEPS more steps: with the plain loss, and with the additive angular margin term
# at two margins. Then it prints each continuation's dev loss, BLEU and chrF2 (full dev set, greedy).
#
#   bash scripts/margin-ablation.sh RUN_DIR DATA_DIR [STEPS]
#
# RUN_DIR is a run folder of `nmt train` (config.yaml, tokenizer.model, checkpoints/). Each
# continuation runs in a copy, RUN_DIR-ablation-NAME, so RUN_DIR itself is not changed. The three
# run at the same time with one torch thread each (THREADS), so they share the machine evenly.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:?usage: margin-ablation.sh RUN_DIR DATA_DIR [STEPS]}
data_dir=${2:?usage: margin-ablation.sh RUN_DIR DATA_DIR [STEPS]}
steps=${3:-250}
threads=${THREADS:-1}
nmt=${VENV:-.venv}/bin/nmt
python=${VENV:-.venv}/bin/python

# name weight margin: λ = 0 is the plain loss; the scale s stays at the config's value.
variants="plain 0.0 0.2
margin-0.1 0.1 0.1
margin-0.3 0.1 0.3"

while read -r name weight margin; do
  out="$run_dir-ablation-$name"
  rm -rf "$out"
  mkdir -p "$out/checkpoints"
  cp "$run_dir/tokenizer.model" "$out/"
  latest=$(ls "$run_dir"/checkpoints/step_*.pt | sort -t_ -k2 -n | tail -n 1)
  cp "$latest" "$out/checkpoints/"
  "$python" - "$run_dir/config.yaml" "$out" "$weight" "$margin" "$steps" "$latest" "$threads" <<'PY'
import re, sys
from pathlib import Path

import yaml

base, out, weight, margin, steps, latest, threads = sys.argv[1:]
config = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
start = int(re.search(r"step_(\d+)", latest).group(1))
out = Path(out)
config.update(name=out.name, out_dir=str(out.parent), threads=int(threads))
config["margin"].update(weight=float(weight), margin=float(margin))
config["optim"].update(max_steps=start + int(steps), max_minutes=None)
config["eval"].update(every_steps=int(steps), checkpoint_every_steps=int(steps),
                      bleu_sentences=100000, beam_size=1, average_last=1)
(out / "ablation.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
PY
  OMP_NUM_THREADS=$threads "$nmt" train --config "$out/ablation.yaml" --data-dir "$data_dir" \
    > "$out/train.log" 2>&1 &
done <<< "$variants"
wait

echo "variant      dev_loss  dev_BLEU  dev_chrF2"
while read -r name _ _; do
  out="$run_dir-ablation-$name"
  "$python" - "$out/metrics.jsonl" "$name" <<'PY'
import json, sys

records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
last = [r for r in records if "dev_bleu" in r][-1]
print(f"{sys.argv[2]:<12} {last['dev_loss']:8.4f}  {last['dev_bleu']:8.2f}  {last['dev_chrf2']:9.2f}")
PY
done <<< "$variants"
