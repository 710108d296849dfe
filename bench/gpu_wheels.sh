#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs on the lent GPU machine, which reaches no registry: the packages of this
# project that its image lacks (datasets, albumentations, evaluate, pi-heif and what they need that it lacks too),
# and timm, which gpu_check.sh installs only where the image's is older than flowers_hf/core/versions.py allows, at
# the versions of this checkout's .venv, for its Python 3.12 on x86-64. Run here, where pip reaches the registry:
#
#     bash bench/gpu_wheels.sh          # writes .whl/ (ignored by git; ~15 MB), then: device run with carry [".whl"]
#
# gradio is left out: the check runs no demo, and its wheels alone would pass the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(datasets dill multiprocess albumentations albucore pydantic pydantic-core annotated-types typing-inspection
          stringzilla simsimd evaluate pi-heif timm)
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
for name in "${PACKAGES[@]}"; do
    version=$(.venv/bin/python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$version" ] || { echo "gpu_wheels.sh: $name is not in .venv (make setup first)" >&2; exit 1; }
    platforms=()
    for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version"
done
du -sh .whl && ls .whl
