#!/usr/bin/env bash
# The GPU check of BENCHMARKS.md, one command for a lent H100/H200 (planned for under 10 minutes), in bf16 with
# channels_last, the GPU's utilisation sampled every half second:
#   bench     our training pipeline, the decoded-once pipeline normalised in the workers, the model-only ceiling and
#             the peer recipe (bench/run.py, ResNet18 at 224 px);
#   compile   --torch_compile against eager on the same path: compile time, steady-state step (bench/compile.py);
#   recipes   the two reference recipes' wall time on Flowers-sized synthetic photos (1,020 / 1,020 / 6,120 at 500 px);
#   distill   the distillation preset, configs/distill_resnet18.yaml, from its teacher trained first on the same photos.
#
#     bash bench/gpu_wheels.sh                                   # here, once: the wheels the GPU image lacks
#     device run: bash bench/gpu_check.sh   carry [".whl"]       # there: figures and logs in $OUT
#     GPU_CHECK_DRY=1 bash bench/gpu_check.sh                    # here, on the CPU: the same steps, tiny sizes
#
# It uses that machine's own torch, transformers, huggingface_hub and accelerate (timm too where it is recent enough
# for flowers_hf/core/versions.py), installs only the carried wheels, and records the versions in versions.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
timm_recent() {  # the machine's timm is there and as recent as flowers_hf/core/versions.py asks
    python3 -c "import sys; from flowers_hf.core.versions import installed_versions, too_old
found = installed_versions()['timm']; sys.exit(found is None or bool(too_old({'timm': found})))"
}
if [ -d .whl ] && ! python3 -c "import datasets, albumentations, evaluate, pi_heif" 2>/dev/null; then
    wheels=()
    for wheel in .whl/*.whl; do
        [[ $wheel == .whl/timm-* ]] && timm_recent && continue  # the carried timm only where the machine's is not
        wheels+=("$wheel")
    done
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}"
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HOME=${HF_HOME:-/tmp/hf_home}
PYTHON=${PYTHON:-python3}

DISTILL_PRESET=configs/distill_resnet18.yaml
if [ -n "${GPU_CHECK_DRY:-}" ]; then  # the plumbing on a CPU, in a few minutes
    BENCH=(--models resnet18 --device cpu --precision bf16 --channels_last --onnx false --image_size 32
           --source_image_size 64 --num_classes 4 --warmup_steps 1 --steps 2 --infer_runs 3 --batch_size 8)
    # aot_eager: dynamo and AOTAutograd, without inductor's C++ code generation (3.5 min here under load)
    COMPILE=(--models test_resnet --device cpu --precision bf16 --channels_last --compile_backend aot_eager
             --image_size 32 --source_image_size 64 --num_classes 4 --warmup_steps 1 --steps 2 --batch_size 8)
    TINY="--image_size 32 --synthetic_image_size 64 --synthetic_num_classes 4 --synthetic_images_per_class 8 --max_steps 2"
    RECIPES=(--models none --recipes --device cpu --precision bf16 --channels_last
             --recipe_flags "--model test_resnet $TINY --stage2_epochs 0")
    DISTILL=(--dataset synthetic --pretrained false --use_cpu true --precision bf16 $TINY)
    TEACHER=(--model test_efficientnet "${DISTILL[@]}")
else
    BENCH=(--models resnet18 --device cuda --precision bf16 --channels_last --onnx false --image_size 224 --steps 100)
    COMPILE=(--models resnet18 --device cuda --precision bf16 --channels_last --image_size 224 --steps 100)
    RECIPES=(--models none --recipes --device cuda --precision bf16 --channels_last)
    DISTILL=(--dataset synthetic --synthetic_image_size 500 --pretrained false --early_stopping_patience 0
             --precision bf16 --channels_last true --num_train_epochs 3)
    TEACHER=("${DISTILL[@]}")
fi

"$PYTHON" - "$OUT/versions.json" <<'PY'
import json, platform, sys
from flowers_hf.core.versions import installed_versions

json.dump({"python": platform.python_version(), **installed_versions()}, open(sys.argv[1], "w"), indent=1)
PY

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
phase compile_start
"$PYTHON" bench/compile.py "${COMPILE[@]}" > "$OUT/compile.txt" 2> "$OUT/compile.log"
phase recipes_start
"$PYTHON" bench/run.py "${RECIPES[@]}" > "$OUT/recipes.txt" 2> "$OUT/recipes.log"
# The distillation preset: its teacher (configs/efficientnet_b3_finetune.yaml on the same photos, random init) first,
# then the student learning from it; the exit status and wall time of both. A failure is recorded, not fatal, so that
# the figures above still reach gpu_check.json.
phase distill_start
status=0
"$PYTHON" train.py --config configs/efficientnet_b3_finetune.yaml "${TEACHER[@]}" --report_to none \
    --output_dir "$OUT/distill_teacher" > "$OUT/distill.log" 2>&1 || status=$?
[ "$status" -ne 0 ] || "$PYTHON" train.py --config "$DISTILL_PRESET" "${DISTILL[@]}" --teacher "$OUT/distill_teacher" \
    --report_to none --output_dir "$OUT/distill" >> "$OUT/distill.log" 2>&1 || status=$?
echo "{\"preset\": \"$DISTILL_PRESET\", \"status\": $status}" > "$OUT/distill.json"
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
summary = {"versions": json.loads((out / "versions.json").read_text()),
           "bench": json.loads((out / "bench.txt").read_text().splitlines()[-1]),
           "compile": json.loads((out / "compile.txt").read_text().splitlines()[-1]),
           "recipes": json.loads((out / "recipes.txt").read_text().splitlines()[-1])["recipes"],
           "distill": json.loads((out / "distill.json").read_text())}
for (name, start), (_, end) in zip(phases, phases[1:]):
    inside = [util for when, util in samples if start <= when < end]
    summary[f"{name.removesuffix('_start')}_wall_s"] = round(end - start, 1)
    summary[f"{name.removesuffix('_start')}_gpu_utilization_mean"] = round(sum(inside) / len(inside), 1) if inside else None
(out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
print((out / "bench.txt").read_text())
print("\n".join((out / "compile.txt").read_text().splitlines()[:-1]) + "\n")
print(json.dumps({k: v for k, v in summary.items() if k not in ("bench", "compile")}, indent=1))
PY
