#!/usr/bin/env bash
# Installs every system package tracer needs to build, test and run its demo.
# Idempotent: skips apt entirely when everything is already present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libeigen3-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  libutf8proc-dev liblinear-dev libxgboost-dev libsqlite3-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libre2-dev  # linear-time regular expressions (--label-regex)
  chromium wrk  # headless browser test of report.html; HTTP load generator for bench/
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The official OpenAI Node client, for the proxy's end-to-end test (tests/node, pinned by its
# package-lock.json). Needs Node >= 20 and npm on the PATH (the machine image has them).
NODE_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/node"
if [ -f "$NODE_DIR/node_modules/openai/package.json" ] &&
  [ "$NODE_DIR/node_modules/.package-lock.json" -nt "$NODE_DIR/package-lock.json" ]; then
  echo "install-deps: the OpenAI Node client is already installed"
elif ! command -v npm >/dev/null; then
  echo "install-deps: npm not found: install Node.js >= 20 with npm; the OpenAI client test needs it" >&2
  exit 1
else
  echo "install-deps: npm ci in tests/node (the OpenAI Node client)"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
