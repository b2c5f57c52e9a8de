#!/usr/bin/env bash
# What each part of the glioma generator buys on real scans. For each variation (the standard
# generator, then one part taken away at a time) it writes CASES cases, fine-tunes the
# phantom-trained model BASE on them for STEPS steps with the built-in model's settings
# (scripts/builtin-model-glioma.yaml), and scores the result on the real cases in REAL_DIR.
# Result files: docs/results/generator-<variation>.json; a variation whose file exists is skipped.
# About 10 minutes per variation on 2 idle CPU cores at the defaults.
# Usage: bash scripts/generator_ablation.sh BASE REAL_DIR [WORK_DIR] [STEPS] [CASES] [VARIATION...]
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1; real=$2; work=${3:-runs/generator-ablation}; steps=${4:-200}; cases=${5:-120}
shift $(( $# < 5 ? $# : 5 ))
variations=("$@")
[ ${#variations[@]} -gt 0 ] || variations=(standard random-tumour-contrast no-mass-effect no-hard-negatives clean-scanner)
ciml=.venv/bin/ciml
for variation in "${variations[@]}"; do
  [ -f "docs/results/generator-$variation.json" ] && continue
  [ -d "$work/$variation/data" ] || $ciml sample-data --kind glioma --variation "$variation" --cases "$cases" \
    --seed 0 --out "$work/$variation/data" 2>/dev/null
  [ -d "$work/$variation/run/bundle" ] || $ciml train --init "$base" --data "$work/$variation/data" \
    --config scripts/builtin-model-glioma.yaml --max-steps "$steps" --val-fraction 0.05 --device cpu \
    --out "$work/$variation/run" --progress none
  $ciml evaluate --model "$work/$variation/run/bundle" --data "$real" --progress none \
    --out "docs/results/generator-$variation.json"
done
