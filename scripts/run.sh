#!/usr/bin/env bash
# THE main job: install what is missing, build, and generate text from the project's model.
# MODEL, PROMPT and N override the defaults; extra arguments go to `lowbit run` (e.g. --temp 0.8 --seed 1 -t 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh </dev/null >&2   # build chatter on stderr: stdout is the generated text
make -j2 >&2
exec build/release/lowbit run -m "${MODEL:-../shared/models/techdocs-28M-Q4_K_M.gguf}" \
  -p "${PROMPT:-The kernel scheduler}" -n "${N:-128}" "$@"
