#!/usr/bin/env bash
# Builds PCRE2 (8-bit, Unicode, no JIT) for WebAssembly with emcc from Debian's own pcre2 source package.
# Why: Debian ships libpcre2-8 only for the host, and the tokenizer's pre-tokenizer regexes need it under emscripten too.
# Usage: scripts/wasm/build-pcre2.sh [OUTDIR]   (default build/wasm/pcre2; gives OUTDIR/lib/libpcre2-8.a and OUTDIR/include/pcre2.h)
# The source comes from `apt-get source pcre2` (deb-src for bookworm is enabled by scripts/setup.sh); nothing is fetched from outside Debian.
set -euo pipefail
out=${1:-build/wasm/pcre2}
cflags=${PCRE2_WASM_CFLAGS:--O2 -pthread}
lib=$out/lib/libpcre2-8.a
stamp=$out/.cflags
if [ -f "$lib" ] && [ -f "$out/include/pcre2.h" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$cflags" ]; then
  exit 0
fi
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
command -v emcc >/dev/null || { echo "build-pcre2: emcc not found (run scripts/setup.sh)" >&2; exit 1; }
srcroot=$out/src
mkdir -p "$srcroot"
srcdir=$(find "$srcroot" -maxdepth 3 -type f -name pcre2_compile.c -path '*/src/*' -printf '%h\n' 2>/dev/null | head -n 1 || true)
if [ -z "$srcdir" ]; then
  command -v dpkg-source >/dev/null || { echo "build-pcre2: dpkg-source missing (apt-get install dpkg-dev)" >&2; exit 1; }
  # Prefer the source of the host libpcre2 we link natively, then any other version apt knows.
  want=$(dpkg-query -W -f='${Version}' libpcre2-dev 2>/dev/null || true)
  versions=$( { [ -n "$want" ] && echo "$want"; apt-cache showsrc pcre2 2>/dev/null | awk '/^Version:/{print $2}' | sort -r -V; } | awk '!seen[$0]++')
  if [ -z "$versions" ]; then
    echo "build-pcre2: apt knows no pcre2 source package; enable deb-src (scripts/setup.sh does) and apt-get update" >&2
    exit 1
  fi
  got=
  for v in $versions; do
    echo "build-pcre2: apt-get source pcre2=$v"
    if (cd "$srcroot" && apt-get source --download-only "pcre2=$v" >/dev/null 2>&1); then got=$v; break; fi
  done
  [ -n "$got" ] || { echo "build-pcre2: could not download any pcre2 source package" >&2; exit 1; }
  dsc=$(ls "$srcroot"/pcre2_*.dsc | head -n 1)
  rm -rf "$srcroot/pcre2"
  (cd "$srcroot" && dpkg-source --no-check -x "$(basename "$dsc")" pcre2 >/dev/null)
  srcdir=$srcroot/pcre2/src
fi
echo "build-pcre2: building $lib from $srcdir with emcc $cflags"
obj=$out/obj
rm -rf "$obj" "$out/lib" "$out/include"
mkdir -p "$obj" "$out/lib" "$out/include"
cp "$srcdir/config.h.generic" "$obj/config.h"
cp "$srcdir/pcre2.h.generic" "$out/include/pcre2.h"
cp "$srcdir/pcre2_chartables.c.dist" "$obj/pcre2_chartables.c"
defs="-DHAVE_CONFIG_H -DPCRE2_CODE_UNIT_WIDTH=8 -DPCRE2_STATIC -DSUPPORT_UNICODE -DHAVE_STDINT_H -DHAVE_INTTYPES_H -DHAVE_STRING_H -DHAVE_STDLIB_H -DHAVE_LIMITS_H -DHAVE_MEMMOVE -DHAVE_STRERROR"
files="pcre2_auto_possess pcre2_compile pcre2_config pcre2_context pcre2_convert pcre2_dfa_match pcre2_error
       pcre2_extuni pcre2_find_bracket pcre2_jit_compile pcre2_maketables pcre2_match pcre2_match_data pcre2_newline
       pcre2_ord2utf pcre2_pattern_info pcre2_script_run pcre2_serialize pcre2_string_utils pcre2_study
       pcre2_substitute pcre2_substring pcre2_tables pcre2_ucd pcre2_valid_utf pcre2_xclass"
objs=()
for f in $files; do
  # shellcheck disable=SC2086
  emcc $cflags $defs -I"$obj" -I"$out/include" -I"$srcdir" -w -c "$srcdir/$f.c" -o "$obj/$f.o"
  objs+=("$obj/$f.o")
done
# shellcheck disable=SC2086
emcc $cflags $defs -I"$obj" -I"$out/include" -I"$srcdir" -w -c "$obj/pcre2_chartables.c" -o "$obj/pcre2_chartables.o"
objs+=("$obj/pcre2_chartables.o")
emar rcs "$lib" "${objs[@]}"
echo "$cflags" >"$stamp"
echo "build-pcre2: done ($lib)"
