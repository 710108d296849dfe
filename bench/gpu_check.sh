#!/usr/bin/env bash
# The GPU check of BENCHMARKS.md, one command for a lent H100/H200 (planned for under 8 minutes): our training
# pipeline, the decoded-once pipeline normalised in the workers, the model-only ceiling and the peer recipe, in bf16
# with channels_last (bench/run.py, ResNet18 at 224 px), then the two reference recipes' wall time on Flowers-sized
# synthetic photos (1,020 / 1,020 / 6,120 at 500 px), with the GPU's utilisation sampled every half second.
#
#     bash bench/gpu_wheels.sh                                   # here, once: the wheels the GPU image lacks
#     device run: bash bench/gpu_check.sh   carry [".whl"]       # there: figures and logs in $OUT
#     GPU_CHECK_DRY=1 bash bench/gpu_check.sh                    # here, on the CPU: the same steps, tiny sizes
#
# It uses that machine's own torch, transformers, timm and accelerate, and installs only the carried wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import datasets, albumentations, evaluate, pi_heif" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HOME=${HF_HOME:-/tmp/hf_home}
PYTHON=${PYTHON:-python3}

if [ -n "${GPU_CHECK_DRY:-}" ]; then  # the plumbing on a CPU, in about a minute
    BENCH=(--models resnet18 --device cpu --precision bf16 --channels_last --onnx false --image_size 32
           --source_image_size 64 --num_classes 4 --warmup_steps 1 --steps 2 --infer_runs 3 --batch_size 8)
    RECIPES=(--models none --recipes --device cpu --precision bf16 --channels_last
             --recipe_flags "--model test_resnet --image_size 32 --synthetic_image_size 64 --synthetic_num_classes 4
                             --synthetic_images_per_class 8 --max_steps 2 --stage2_epochs 0")
else
    BENCH=(--models resnet18 --device cuda --precision bf16 --channels_last --onnx false --image_size 224 --steps 100)
    RECIPES=(--models none --recipes --device cuda --precision bf16 --channels_last)
fi

SAMPLER=""
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
        > "$OUT/utilization.csv" &
    SAMPLER=$!
fi
phase() { echo "$1 $(date +%s.%N)" >> "$OUT/phases.txt"; }
: > "$OUT/phases.txt"
phase bench_start
"$PYTHON" bench/run.py "${BENCH[@]}" > "$OUT/bench.txt" 2> "$OUT/bench.log"
phase recipes_start
"$PYTHON" bench/run.py "${RECIPES[@]}" > "$OUT/recipes.txt" 2> "$OUT/recipes.log"
phase end
[ -z "$SAMPLER" ] || kill "$SAMPLER"

# The figures, and the mean GPU utilisation of each phase.
"$PYTHON" - "$OUT" <<'PY'
import datetime, json, sys
from pathlib import Path

out = Path(sys.argv[1])
phases = [(name, float(t)) for name, t in (line.split() for line in (out / "phases.txt").read_text().splitlines())]
samples = []
if (out / "utilization.csv").is_file():
    for line in (out / "utilization.csv").read_text().splitlines():
        stamp, util, _ = (field.strip() for field in line.split(","))
        when = datetime.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
        samples.append((when, float(util)))
summary = {"bench": json.loads((out / "bench.txt").read_text().splitlines()[-1]),
           "recipes": json.loads((out / "recipes.txt").read_text().splitlines()[-1])["recipes"]}
for (name, start), (_, end) in zip(phases, phases[1:]):
    inside = [util for when, util in samples if start <= when < end]
    summary[f"{name.removesuffix('_start')}_wall_s"] = round(end - start, 1)
    summary[f"{name.removesuffix('_start')}_gpu_utilization_mean"] = round(sum(inside) / len(inside), 1) if inside else None
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
print((out / "bench.txt").read_text())
print(json.dumps({k: v for k, v in summary.items() if k != "bench"}, indent=1))
PY
