#!/usr/bin/env bash
# Reproduces the built-in sample model (CIMLSegmentation/Resources/Models/brats-sample) on a CPU,
# from synthetic data only, in three stages:
#   1. the BraTS-like phantom, from scratch (500 steps, about 45 minutes on 2 cores);
#   2. realistic synthetic gliomas on the MNI152 brain (needs nilearn), fine-tuned from stage 1
#      with modality dropout (scripts/builtin-model-glioma.yaml; 900 steps, about 35 minutes);
#   3. gliomas of BraTS's size (--variation brats-volumes), fine-tuned from stage 2 with the same
#      recipe: 300 steps, then 300 more from that run's bundle, keeping the bundle of the best
#      synthetic validation (step 150 of the second run; about 15 minutes a run).
# Usage: bash scripts/train_sample_model.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/sample-model}
ciml=.venv/bin/ciml
[ -d "$work/data" ] || $ciml sample-data --kind brats --cases 40 --seed 0 --size small --out "$work/data"
[ -d "$work/run/bundle" ] || $ciml train --data "$work/data" --card CIMLSegmentation/Resources/Models/brats-sample.card.json \
  --out "$work/run" --device cpu --val-fraction 0.15
[ -d "$work/glioma-data" ] || $ciml sample-data --kind glioma --cases 300 --seed 0 --out "$work/glioma-data"
[ -d "$work/glioma-run/bundle" ] || $ciml train --init "$work/run/bundle" --data "$work/glioma-data" \
  --config scripts/builtin-model-glioma.yaml --max-steps 900 --val-fraction 0.05 --device cpu --out "$work/glioma-run"
[ -d "$work/sized-data" ] || $ciml sample-data --kind glioma --variation brats-volumes --cases 300 --seed 0 --out "$work/sized-data"
[ -d "$work/sized-run/bundle" ] || $ciml train --init "$work/glioma-run/bundle" --data "$work/sized-data" \
  --config scripts/builtin-model-glioma.yaml --max-steps 300 --val-fraction 0.05 --device cpu --out "$work/sized-run"
$ciml train --init "$work/sized-run/bundle" --data "$work/sized-data" --config scripts/builtin-model-glioma.yaml \
  --max-steps 300 --val-fraction 0.05 --device cpu --out "$work/sized-run-2"
rm -rf CIMLSegmentation/Resources/Models/brats-sample
cp -r "$work/sized-run-2/bundle" CIMLSegmentation/Resources/Models/brats-sample
$ciml info --model CIMLSegmentation/Resources/Models/brats-sample
