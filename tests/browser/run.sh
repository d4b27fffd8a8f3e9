#!/usr/bin/env bash
# The browser suite: builds build/web (make web) and the native reference, then runs each engine's node --test file.
# Chromium and Firefox run headless; WebKit (MiniBrowser has no headless mode) runs under xvfb-run.
# chat_page.test.mjs (the www/ chat page against `lowbit serve`) is run by tests/server/run.sh, not here.
# Every figure lands in build/bench/results.duckdb (table browser_results).
# Environment: LB_BROWSERS="chromium firefox webkit" (subset), LB_BROWSER_MODELS (comma-separated model files),
# LB_WEB_BUILD=dir (build and serve `make web WEB_BUILD=dir` in place of build/web).
set -u
cd "$(dirname "$0")/../.."
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
make -j2 WEB_BUILD="${LB_WEB_BUILD:-build/web}" web >/dev/null && make -j2 >/dev/null || { echo "browser: build failed"; echo "browser: 0 passed, 1 failed"; exit 1; }
# lowbit's own 2-bit files for acceptance 1: every block tensor LBQ2, and every block tensor LBQV (the type
# most of the tuned 2-bit plan is made of); about 25 s each, once.
mkdir -p build/browser
for t in lbq2 lbqv; do
  own=build/browser/techdocs-28M-$t.gguf
  [ -f "$own" ] && continue
  build/release/lowbit quantize "${LB_SHARED:-../shared}/models/techdocs-28M-f16.gguf" "$own.tmp" --type q2_K --tensor-type blk.=$t -q \
    && mv "$own.tmp" "$own" || echo "could not make $own: its greedy checks are left out"
done
pass=0; fail=0
one() {   # one NAME CMD...
  local name=$1; shift
  echo "== $name"
  if timeout -k 10 900 "$@"; then pass=$((pass+1)); else echo "!! $name failed"; fail=$((fail+1)); fi
}
one capabilities node --test tests/browser/capabilities.test.mjs
browsers=${LB_BROWSERS:-chromium firefox webkit}
for b in $browsers; do
  case $b in
    chromium)
      one chromium node --test --test-concurrency=1 tests/browser/chromium.test.mjs
      [ -f tests/browser/examples.test.mjs ] && one examples node --test --test-concurrency=1 tests/browser/examples.test.mjs ;;
    firefox)
      if [ -x /usr/bin/firefox-esr ]; then one firefox node --test --test-concurrency=1 tests/browser/firefox.test.mjs
      else echo "skip firefox: /usr/bin/firefox-esr missing"; fi ;;
    webkit)
      if [ -x /usr/bin/WebKitWebDriver ] && command -v xvfb-run >/dev/null; then
        one webkit xvfb-run -a node --test --test-concurrency=1 tests/browser/webkit.test.mjs
      else echo "skip webkit: WebKitWebDriver or xvfb-run missing"; fi ;;
  esac
done
echo "browser: $pass passed, $fail failed"
[ $fail -eq 0 ]
