#!/usr/bin/env bash
# Installs (as root, with apt-get) what lowbit's build and tests need, and prepares PCRE2 for the wasm build.
# Idempotent and quiet when everything is present; safe without a TTY (CI=true, no stdin).
# Set LB_SETUP_SKIP_WASM=1 to skip the PCRE2-for-wasm source step.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Packages and why:
#   build-essential gcc make   the native build
#   libpcre2-dev               the tokenizer's pre-tokenizer regexes
#   clang-14 lld libclang-rt-14-dev   libFuzzer targets and sanitizers with clang
#   bear                       compile_commands.json
#   emscripten nodejs          the WebAssembly build and running its tests
#   dpkg-dev                   dpkg-source, to unpack Debian's pcre2 source for emcc
#   qemu-user gcc-aarch64-linux-gnu   cross-building and running the NEON kernels' tests
#   python3                    emscripten's emcc runs on it
#   valgrind                   optional leak checks by hand
#   libcivetweb-dev libjansson-dev   `lowbit serve`: HTTP/SSE server and JSON; curl for the server tests
#   chromium firefox-esr webkit2gtk-driver xvfb mesa-vulkan-drivers   the browser tests (docs/browsers: headless
#                              Chromium and Firefox, WebKit under Xvfb; lavapipe gives Firefox a WebGPU adapter)
pkgs=(build-essential gcc make libpcre2-dev clang clang-14 lld libclang-rt-14-dev bear
      emscripten nodejs libjansson-dev jq dpkg-dev qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross python3 valgrind
      libcivetweb-dev curl chromium firefox-esr webkit2gtk-driver xvfb mesa-vulkan-drivers)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: $1 needs root; rerun as root (or with sudo)" >&2
    exit 1
  fi
}

updated=0
apt_update_once() {
  if [ $updated = 0 ]; then
    echo "setup: apt-get update"
    apt-get update -qq </dev/null
    updated=1
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  need_root "installing ${missing[*]}"
  echo "setup: installing ${missing[*]}"
  apt_update_once
  apt-get install -y -qq "${missing[@]}" </dev/null
fi

# PCRE2 for emscripten is built from Debian's own source package, so deb-src
# entries for bookworm are needed (in a separate file; the main sources stay as they are).
if [ "${LB_SETUP_SKIP_WASM:-0}" != 1 ] && [ ! -f build/wasm/pcre2/lib/libpcre2-8.a ]; then
  if [ -z "$(apt-cache showsrc pcre2 2>/dev/null | head -n 1)" ]; then
    need_root "enabling Debian deb-src entries"
    src=/etc/apt/sources.list.d/lowbit-deb-src.sources
    echo "setup: adding $src (deb-src for bookworm, for 'apt-get source pcre2')"
    cat >"$src" <<'EOF'
# Added by lowbit scripts/setup.sh: Debian source packages (PCRE2 is rebuilt with emscripten for the wasm tests).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    updated=0
    apt_update_once
  fi
  NODE_PATH=${NODE_PATH:-/usr/share/nodejs} scripts/wasm/build-pcre2.sh build/wasm/pcre2
fi

# The server tests' node packages (package.json: the official openai client), installed once from the lock file.
if [ ! -d node_modules/openai ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci (node packages for tests/server)"
  npm ci --no-audit --no-fund --loglevel=error </dev/null
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all build and test dependencies present"
fi
