#!/usr/bin/env bash
# On the accelerator machine: install the offline wheel bundle, then run
# experiments/device_check.py (its flags pass through). Built and called from the dev machine:
#   python experiments/build_device_bundle.py --kzl <kzl/decision-transformer checkout>
#   device run: command "bash experiments/device_check.sh", carry [".device_bundle"],
#               timeout_s 560 (install ~10 s + the check's 480 s budget + margin)
# The machine has Python 3.12 with jax/flax/optax/torch; what it lacks comes from the bundle:
# the dependencies into $SITE, this checkout built there (else the bundle's wheel of the commit
# it was built from), transformers 4.57 into $TORCH_SITE (first on kzl's reference's path only).
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-$PWD/.device_bundle}
SITE=${SITE:-/tmp/s4dm_site}
TORCH_SITE=${TORCH_SITE:-/tmp/s4dm_torch_site}
PY=${PYTHON:-python3}
export OUT=${OUT:-$PWD/runs/device_check}
mkdir -p "$OUT"
install() { "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            "$@" >/tmp/s4dm_pip.log 2>&1 || { tail -20 /tmp/s4dm_pip.log; return 1; }; }

if [ ! -d "$BUNDLE/wheels" ]; then
    echo "no bundle in $BUNDLE: build it with experiments/build_device_bundle.py and carry" \
         ".device_bundle" >&2
    exit 2
fi
t0=$(date +%s)
install --target "$SITE" "$BUNDLE"/wheels/*.whl || exit 3
if ! install --no-build-isolation --target "$SITE/project" .; then
    echo "WARNING: this checkout did not build here; installing the bundle's wheel, built from" \
         "commit $(grep -o '"commit": "[0-9a-f]*"' "$BUNDLE/MANIFEST.json")"
    install --target "$SITE/project" "$BUNDLE"/project/*.whl || exit 3
fi
install --target "$TORCH_SITE" "$BUNDLE"/torch_wheels/*.whl \
    || echo "WARNING: transformers 4.57 did not install: the torch_dt part will fail"
export PYTHONPATH="$SITE/project:$SITE${PYTHONPATH:+:$PYTHONPATH}"
echo "bundle installed in $(( $(date +%s) - t0 )) s"
exec "$PY" experiments/device_check.py --out "$OUT" --bundle "$BUNDLE" \
    --torch-site "$TORCH_SITE" "$@"
