#!/usr/bin/env bash
# Server tests: the openai npm client, curl, raw HTTP, WebSocket (the ws package) and the chat page in Chromium against `lowbit serve` on loopback.
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
# The chat page in headless Chromium (tests/browser); without the browser that part cannot run, which CI counts as a failure.
dirs=(tests/server/)
rc=0
chromium=${LB_CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then
  dirs+=(tests/browser/chat_page.test.mjs)
else
  echo "server tests: SKIPPED the browser tests: $chromium is missing (apt-get install chromium)" >&2
  [ "${CI:-}" = true ] && rc=1
fi
node --test --test-timeout=60000 --test-concurrency=1 "${dirs[@]}" || rc=1
# The fault suite again under ASan+UBSan (tests/server/asan_faults.sh); LB_SERVER_ASAN=0 leaves it out.
if [ "${LB_SERVER_ASAN:-1}" != 0 ]; then
  tests/server/asan_faults.sh || rc=1
fi
exit "$rc"
