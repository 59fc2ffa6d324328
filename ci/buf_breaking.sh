#!/usr/bin/env bash
# `buf breaking` on proto/ against proto/ of an earlier commit (default HEAD~1, the commit before
# the one under test), with the rules of proto/buf.yaml (FILE). No network: the old proto/ is
# taken out of the local git history with `git archive`.
#
#   ci/buf_breaking.sh [REF]          REF (or $BUF_AGAINST_REF) defaults to HEAD~1
#   BUF_AGAINST_REF=HEAD ci/buf_breaking.sh      # uncommitted proto/ changes against HEAD
#
# Skips (exit 0, with a message) when there is nothing to compare with: a first commit, a shallow
# clone without that commit, or a REF without proto/. An intended breaking change has to be made
# in a new package version (paygate.v2) instead.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REF=${1:-${BUF_AGAINST_REF:-HEAD~1}}

say() { printf 'buf_breaking: %s\n' "$*"; }

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  say "skipped: $ROOT is not a git work tree"
  exit 0
fi
if ! git rev-parse -q --verify "$REF^{commit}" >/dev/null; then
  if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    say "skipped: $REF is not in this shallow clone (git fetch --deepen=1 to compare)"
  else
    say "skipped: $REF does not exist (first commit?)"
  fi
  exit 0
fi
if ! git cat-file -e "$REF:proto" 2>/dev/null; then
  say "skipped: $REF has no proto/"
  exit 0
fi

if ! command -v buf >/dev/null 2>&1; then
  say "installing buf (pip install buf-bin)"
  python3 -m pip install --quiet --disable-pip-version-check buf-bin==1.75.0
fi

OLD=$(mktemp -d)
trap 'rm -rf "$OLD"' EXIT
git archive "$REF" proto | tar -x -C "$OLD"

against=$(git rev-parse --short "$REF")
say "$(buf --version | head -n 1): proto/ against $REF ($against) proto/"
if buf breaking proto --against "$OLD/proto"; then
  say "no breaking change against $REF"
else
  say "FAIL: breaking change(s) in proto/ against $REF (listed above)" >&2
  exit 1
fi
