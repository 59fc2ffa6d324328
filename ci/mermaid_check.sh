#!/usr/bin/env bash
# Validates every ```mermaid block of README.md (or of the Markdown files given) by rendering it
# with mermaid-cli in headless Chromium (Debian's chromium package; puppeteer downloads nothing).
# A block that does not parse or render fails the check, naming the file and line.
#
# Then it checks itself: the same run on a copy of the first file with one deliberately broken
# block must fail (skip with MERMAID_CHECK_SELF_TEST=0).
#
# Pinned tools: ci/mermaid/package.json + package-lock.json (npm ci), config ci/mermaid/puppeteer-config.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE="$ROOT/ci/mermaid"
CHROMIUM=/usr/bin/chromium
[ $# -gt 0 ] || set -- "$ROOT/README.md"

say() { printf 'mermaid_check: %s\n' "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }

command -v node >/dev/null || die "node is required (Node 20)"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  [ -x "$CHROMIUM" ] || die "$CHROMIUM is missing: apt-get install -y chromium"
fi
if [ ! -x "$HERE/node_modules/.bin/mmdc" ] ||
  ! cmp -s "$HERE/package-lock.json" "$HERE/node_modules/.package-lock.json.ci" 2>/dev/null; then
  say "installing mermaid-cli from ci/mermaid/package-lock.json (npm ci, no browser download)"
  (cd "$HERE" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$HERE/package-lock.json" "$HERE/node_modules/.package-lock.json.ci"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# check FILE: renders each block; prints a FAIL line per broken block; returns 1 if any broke.
check() {
  local file=$1 dir n line out failed=0
  dir=$(mktemp -d "$WORK/blocks.XXXX")
  node "$HERE/extract.mjs" "$file" "$dir" >"$dir/index" || return 1
  if [ ! -s "$dir/index" ]; then
    say "$file: no mermaid blocks"
    return 0
  fi
  while read -r n line; do
    out="$dir/block-$n.svg"
    if ! "$HERE/node_modules/.bin/mmdc" -q -p "$HERE/puppeteer-config.json" \
      -i "$dir/block-$n.mmd" -o "$out" >"$dir/block-$n.log" 2>&1; then
      say "FAIL $file:$line: mermaid block $n does not render:"
      grep -v '^    at ' "$dir/block-$n.log" | head -n 8 | sed 's/^/    /'
      failed=1
    elif [ ! -s "$out" ] || grep -q 'Syntax error in text' "$out"; then
      say "FAIL $file:$line: mermaid block $n rendered as an error diagram"
      failed=1
    else
      say "ok   $file:$line: mermaid block $n ($(head -n 1 "$dir/block-$n.mmd" | tr -d '\r'))"
    fi
  done <"$dir/index"
  return $failed
}

status=0
for f in "$@"; do
  [ -f "$f" ] || die "no such file: $f"
  check "$f" || status=1
done
[ $status = 0 ] || die "a mermaid block does not render (see above)"

if [ "${MERMAID_CHECK_SELF_TEST:-1}" != 0 ]; then
  # A copy of the first file whose first mermaid block gets a line that is not mermaid.
  broken="$WORK/broken.md"
  awk 'BEGIN { done = 0 }
       { print }
       /^[[:space:]]*```[[:space:]]*mermaid[[:space:]]*$/ && !done { getline; print; print "    this is -->> not [[ valid mermaid"; done = 1 }' \
    "$1" >"$broken"
  if grep -q 'not \[\[ valid mermaid' "$broken"; then
    if check "$broken" >"$WORK/self-test.log" 2>&1; then
      cat "$WORK/self-test.log"
      die "self-test: a deliberately broken block passed; the check does not catch syntax errors"
    fi
    say "self-test: a deliberately broken block fails the check, as it should"
  fi
fi
say "all mermaid blocks render"
