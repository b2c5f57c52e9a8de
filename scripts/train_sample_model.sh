#!/usr/bin/env bash
# Reproduces the built-in sample model (CIMLSegmentation/Resources/Models/brats-sample) on a CPU.
# About 45 minutes on 2 cores (500 steps; 2568 s on 2026-11-26). Usage: bash scripts/train_sample_model.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/sample-model}
ciml=.venv/bin/ciml
[ -d "$work/data" ] || $ciml sample-data --kind brats --cases 40 --seed 0 --size small --out "$work/data"
$ciml train --data "$work/data" --card CIMLSegmentation/Resources/Models/brats-sample.card.json \
  --out "$work/run" --device cpu --val-fraction 0.15
rm -rf CIMLSegmentation/Resources/Models/brats-sample
cp -r "$work/run/bundle" CIMLSegmentation/Resources/Models/brats-sample
$ciml info --model CIMLSegmentation/Resources/Models/brats-sample
