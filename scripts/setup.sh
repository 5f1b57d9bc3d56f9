#!/usr/bin/env bash
# Set up the project: Debian packages (as root, when apt-get exists), then .venv with gantrack.
#   scripts/setup.sh          pipeline: tensorflow-cpu + Fashion-MNIST from dataset-fashion-mnist
#   scripts/setup.sh --test   also pytest, ruff and PostgreSQL (for the parallel tuning test)
# GANTRACK_EXTRAS=gpu scripts/setup.sh installs TensorFlow with CUDA instead of tensorflow-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${GANTRACK_EXTRAS:-cpu}
packages=(dataset-fashion-mnist)
if [ "${1:-}" = "--test" ]; then
  extras="$extras,test"
  packages+=(postgresql)
fi
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import ensurepip' 2>/dev/null || packages+=("python3-venv")

missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: not installing ${missing[*]} (needs root and apt-get); Fashion-MNIST then" \
         "comes from Keras' download" >&2
  fi
fi

# Chromium for the README's MLflow UI screenshot (scripts/docs_images.py and its test): Debian
# ships it as chromium-headless-shell; where it is not packaged, that test says it skips.
if [ "${1:-}" = "--test" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
   && ! command -v chromium-headless-shell >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq chromium-headless-shell >/dev/null 2>&1; } \
    || echo "setup: chromium-headless-shell not available; the screenshot test will skip" >&2
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check uv
# constraints.txt pins every transitive dependency; bytecode compiled now saves ~6 s per import.
UV_COMPILE_BYTECODE=1 .venv/bin/uv pip install -q --python .venv/bin/python \
  -c constraints.txt -e ".[$extras]"
echo "setup: ready (. .venv/bin/activate)"
