#!/usr/bin/env bash
# Server tests: the openai npm client, curl and raw HTTP against `lowbit serve` on loopback.
# Each test file starts its own server on a free port and stops it; the whole run is bounded by node's test timeout.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${LOWBIT_BIN:-build/release/lowbit}
if [ ! -x "$bin" ]; then
  echo "server tests: $bin is missing; run make first" >&2
  exit 1
fi
if [ ! -d node_modules/openai ]; then
  echo "server tests: node_modules/openai is missing; running npm ci" >&2
  npm ci --no-audit --no-fund >/dev/null
fi
exec node --test --test-timeout=60000 --test-concurrency=1 tests/server/
