#!/usr/bin/env bash
# The full digits distillation sweep for a GPU session (issue 21): every grid kind, N in {1, 2, 4, 8, 16}, 3 seeds,
# MLP blocks at equal per-block width and at equal total parameters, and conv blocks, at the "gpu" scale of
# benchmarks/digits_distill.py (16384/4096 teacher trajectories, 64 teacher steps, 4000 training steps).
#
#   bash benchmarks/digits_distill_gpu.sh [ROOT]        # ROOT: run folders [runs/digits_distill_gpu]
#
# Resumable: kill it at any point and start it again with the same ROOT.  Ends with --report, which writes
# benchmarks/digits_distill.json and copies the small files of each run to benchmarks/validate_runs/digits_<run>/.
# Needs flowcert[torch] and a visible CUDA device (--device cuda is an input error without one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-runs/digits_distill_gpu}"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
time python benchmarks/digits_distill.py --scale gpu --device cuda --root "$ROOT" --runs mlp,mlp_total,conv
python benchmarks/digits_distill.py --report --root "$ROOT"
