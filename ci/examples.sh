#!/usr/bin/env bash
# Runs the examples end to end against a real paygate on its built-in Vipps emulator:
#
#   ci/examples.sh target/release/paygate
#
# - paygate with a temporary SQLite database, free ports and an API token; waits for /readyz;
# - the setup commands of examples/python/README.md and examples/typescript/README.md;
# - the fare system end to end (create with receipt and phone consent, AUTHORIZED, capture,
#   PROFILE_SHARED), the next ride pushed by customer_key, retries under injected 429s and lost
#   capture answers (one capture), no retry of INVALID_ARGUMENT, UNAUTHENTICATED without the token;
# - each subscriber (Python, TypeScript) on a stream of rides: SIGKILLed mid-stream, restarted,
#   and its journal must hold every event of the log exactly once, in order (compared with
#   ListPaymentEvents of every payment); then the files are put in the state a kill between
#   handling and saving the cursor leaves, and the redelivered events must be skipped;
# - paygate restarted (SIGTERM) under both subscribers: they reconnect with backoff, miss nothing;
# - the fare system and both subscribers over mutual TLS (a second paygate, a throwaway CA).
#
# Every example command is checked to appear word for word in its README before it runs.
# Ends with "examples: N passed, M failed"; exit status 1 on any failure.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: ci/examples.sh PAYGATE_BIN" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "$1")
[ -x "$BIN" ] || { echo "examples: FAIL: $1 is not an executable" >&2; exit 1; }
PY="$ROOT/examples/python"
TS="$ROOT/examples/typescript"
PY_README="$PY/README.md"
TS_README="$TS/README.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/paygate-examples.XXXXXX")
START=$(date +%s)
PASSED=0
FAILED=0
PIDS=()

say() { printf 'examples: %s\n' "$*"; }
step() { printf '\n=== examples: %s (%ss) ===\n' "$*" "$(($(date +%s) - START))"; }
pass() { PASSED=$((PASSED + 1)); say "ok: $*"; }
finish() {
  printf '\nexamples: %d passed, %d failed\n' "$PASSED" "$FAILED"
  say "took $(($(date +%s) - START))s"
}
fail() {
  FAILED=$((FAILED + 1))
  say "FAIL: $*" >&2
  for log in "$WORK"/*.log; do
    [ -f "$log" ] || continue
    printf -- '--- last lines of %s ---\n' "${log#"$WORK"/}" >&2
    tail -n 25 "$log" >&2
  done
  finish
  exit 1
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "${KEEP_WORK:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# The command must appear as one line of the README, word for word.
readme() {
  grep -qxF -- "$2" "$1" || fail "not in ${1#"$ROOT"/} word for word: $2"
}
# run DIR README LOG CMD: a README command, in the foreground; its output goes to LOG and stdout.
run() {
  local dir=$1 md=$2 log=$3 cmd=$4 rc=0
  readme "$md" "$cmd"
  say "\$ (cd ${dir#"$ROOT"/} && $cmd)"
  (cd "$dir" && bash -c "$cmd") >"$WORK/$log" 2>&1 || rc=$?
  cat "$WORK/$log"
  return $rc
}
# start DIR README LOG CMD: a README command in the background (exec'd: $! is the program itself).
start() {
  local dir=$1 md=$2 log=$3 cmd=$4
  readme "$md" "$cmd"
  say "\$ (cd ${dir#"$ROOT"/} && $cmd) &"
  # setsid: its own process group, so the cleanup also ends what a loop started.
  case $cmd in
    for\ *) (cd "$dir" && exec setsid bash -c "$cmd") >>"$WORK/$log" 2>&1 & ;;
    *) (cd "$dir" && exec setsid bash -c "exec $cmd") >>"$WORK/$log" 2>&1 & ;;
  esac
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
expect_in() { grep -qF -- "$2" "$WORK/$1" || fail "$3: '$2' not in $1"; }

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# start_paygate NAME [KEY=VALUE...]: paygate on the emulator with its own database and ports.
start_paygate() {
  local name=$1 grpc http emu
  shift
  read -r grpc http emu <<<"${PG_PORTS:-$(free_ports 3)}"
  PG_PORTS_USED="$grpc $http $emu"
  (
    for v in $(env | sed -n 's/^\(PAYGATE_[A-Z_]*\|VIPPS_[A-Z_]*\|DATABASE_URL\)=.*/\1/p'); do unset "$v"; done
    export DATABASE_URL="sqlite://$WORK/$name.db?mode=rwc" \
      PAYGATE_GRPC_ADDR="127.0.0.1:$grpc" PAYGATE_HTTP_ADDR="127.0.0.1:$http" \
      PAYGATE_EMULATOR_ADDR="127.0.0.1:$emu" PAYGATE_HEARTBEAT_MS=500 RUST_LOG=info "$@"
    exec setsid "$BIN"
  ) >>"$WORK/$name.log" 2>&1 &
  PG_PID=$!
  PIDS+=("$PG_PID")
  PG_GRPC="127.0.0.1:$grpc"
  PG_EMU="http://127.0.0.1:$emu"
  for _ in $(seq 1 120); do
    kill -0 "$PG_PID" 2>/dev/null || fail "paygate ($name) exited during startup"
    if curl -fsS -o /dev/null "http://127.0.0.1:$http/readyz" 2>/dev/null; then
      say "paygate ($name) ready: gRPC $PG_GRPC, HTTP 127.0.0.1:$http, emulator $PG_EMU"
      return 0
    fi
    sleep 0.5
  done
  fail "paygate ($name) not ready on /readyz within 60s"
}

# events_of REF...: every event of those payments, "sequence reference name" per line, by sequence.
events_of() {
  (cd "$PY" && .venv/bin/python list_events.py "$@") 2>>"$WORK/list_events.log" |
    python3 -c 'import json,sys
for l in sys.stdin: r = json.loads(l); print(r["sequence"], r["reference"], r["name"])'
}
# journal_of FILE: the same form of a subscriber journal, in the order it was written.
journal_of() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.strip(): r = json.loads(l); print(r["sequence"], r["reference"], r["name"])' "$1"
}
count_of() { events_of "$1" | awk -v n="$2" '$3 == n' | wc -l; }

# ---------------------------------------------------------------------------------------------
step "paygate on the emulator"
TOKEN="ci-examples-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
start_paygate paygate PAYGATE_API_TOKENS="ci-examples:$TOKEN"
MAIN_PID=$PG_PID
export PAYGATE_ADDR="http://$PG_GRPC" PAYGATE_TOKEN="$TOKEN" PAYGATE_EMULATOR_URL="$PG_EMU"
unset PAYGATE_TLS_CA PAYGATE_TLS_CERT PAYGATE_TLS_KEY PAYGATE_CURSOR_FILE PAYGATE_JOURNAL_FILE
pass "paygate ready"

step "Python setup (examples/python/README.md)"
run "$PY" "$PY_README" py-setup.log "python3 -m venv .venv" || fail "python3 -m venv"
run "$PY" "$PY_README" py-setup.log ".venv/bin/pip install -r requirements.txt" || fail "pip install"
run "$PY" "$PY_README" py-setup.log ".venv/bin/python make_stubs.py" || fail "make_stubs.py"
run "$PY" "$PY_README" py-unit.log ".venv/bin/python -m unittest test_examples" || fail "Python offline tests"
pass "Python setup and offline tests"

step "TypeScript setup (examples/typescript/README.md)"
run "$TS" "$TS_README" ts-setup.log "npm ci" || fail "npm ci"
run "$TS" "$TS_README" ts-setup.log "npm run build" || fail "npm run build"
run "$TS" "$TS_README" ts-unit.log "npm test" || fail "TypeScript offline tests"
pass "TypeScript setup and offline tests"

step "fare system end to end"
readme "$PY_README" "export PAYGATE_EMULATOR_URL=http://127.0.0.1:8090" # CI's emulator is on another port
run "$PY" "$PY_README" fare-0001.log ".venv/bin/python fare_system.py --reference taxi-34-ride-0001 --customer-key rider-1001" ||
  fail "fare system (taxi-34-ride-0001) exited non-zero"
expect_in fare-0001.log "rider shared phone number 47******67" "fare system"
expect_in fare-0001.log "done: taxi-34-ride-0001 captured" "fare system"
for name in CREATED AUTHORIZED CAPTURED PROFILE_SHARED; do
  [ "$(count_of taxi-34-ride-0001 "$name")" = 1 ] || fail "taxi-34-ride-0001: not exactly one $name event"
done
pass "fare: created with receipt and phone consent, AUTHORIZED, captured once, phone number shared"

run "$PY" "$PY_README" fare-0002.log ".venv/bin/python fare_system.py --reference taxi-34-ride-0002 --customer-key rider-1001 --phone ''" ||
  fail "the next ride by customer_key exited non-zero"
expect_in fare-0002.log "push to the number stored for customer_key 'rider-1001'" "next ride"
expect_in fare-0002.log "done: taxi-34-ride-0002 captured" "next ride"
pass "next ride pushed by customer_key"

run "$PY" "$PY_README" fare-0001-again.log ".venv/bin/python fare_system.py --reference taxi-34-ride-0001 --customer-key rider-1001" ||
  fail "running the same ride again exited non-zero"
for name in CREATED AUTHORIZED CAPTURED; do
  [ "$(count_of taxi-34-ride-0001 "$name")" = 1 ] || fail "the same ride again made a second $name event"
done
pass "the same ride again: same payment, no second create or capture"

step "retries"
run "$PY" "$PY_README" faults.log "curl -fsS -X POST \"\$PAYGATE_EMULATOR_URL/emulator/faults\" -H 'content-type: application/json' -d '{\"match\": \"/epayment/v1/payments\", \"method\": \"POST\", \"count\": 6, \"status\": 429, \"retryAfterSeconds\": 0}'" ||
  fail "injecting 429s"
run "$PY" "$PY_README" faults.log "curl -fsS -X POST \"\$PAYGATE_EMULATOR_URL/emulator/faults\" -H 'content-type: application/json' -d '{\"match\": \"/capture\", \"method\": \"POST\", \"count\": 6, \"status\": 503, \"afterEffect\": true}'" ||
  fail "injecting lost capture answers"
run "$PY" "$PY_README" fare-0003.log ".venv/bin/python fare_system.py --reference taxi-34-ride-0003" ||
  fail "fare system under faults exited non-zero"
expect_in fare-0003.log "CreatePaymentRequest: RESOURCE_EXHAUSTED" "create under 429s"
expect_in fare-0003.log "CapturePayment: UNAVAILABLE" "capture with lost answers"
expect_in fare-0003.log "retrying in" "retries"
run "$PY" "$PY_README" list-0003.log ".venv/bin/python list_events.py taxi-34-ride-0003" || fail "list_events.py"
[ "$(count_of taxi-34-ride-0003 CREATED)" = 1 ] || fail "taxi-34-ride-0003: not exactly one CREATED after retried creates"
[ "$(count_of taxi-34-ride-0003 CAPTURED)" = 1 ] || fail "taxi-34-ride-0003: not exactly one CAPTURED after retried captures"
pass "RESOURCE_EXHAUSTED and UNAVAILABLE retried with the same keys: one payment, one capture"

rc=0
run "$PY" "$PY_README" fare-0004.log ".venv/bin/python fare_system.py --reference taxi-34-ride-0004 --phone 12" || rc=$?
[ "$rc" = 2 ] || fail "an invalid phone number: exit status $rc, expected 2"
expect_in fare-0004.log "CreatePaymentRequest: INVALID_ARGUMENT, not retrying" "invalid request"
if grep -q "retrying in" "$WORK/fare-0004.log"; then fail "INVALID_ARGUMENT was retried"; fi
pass "INVALID_ARGUMENT not retried (exit 2)"

rc=0
(cd "$PY" && PAYGATE_TOKEN= .venv/bin/python list_events.py taxi-34-ride-0001) >"$WORK/unauth.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "without PAYGATE_TOKEN: exit status $rc, expected 2"
expect_in unauth.log "UNAUTHENTICATED" "without a token"
pass "PAYGATE_TOKEN is sent as the bearer token (UNAUTHENTICATED without it)"

# ---------------------------------------------------------------------------------------------
REFS=(taxi-34-ride-0001 taxi-34-ride-0002 taxi-34-ride-0003)

# kill_test LANG DIR README SUBSCRIBER_CMD RIDES_CMD RIDE...: the subscriber follows the log from
# the beginning while the rides run, is SIGKILLed mid-stream, restarted, and must end with every
# event of the log in its journal exactly once, in order.
kill_test() {
  local lang=$1 dir=$2 md=$3 sub_cmd=$4 rides_cmd=$5 rides_pid sub_pid want got before after i
  shift 5
  export PAYGATE_CURSOR_FILE="$WORK/$lang.cursor" PAYGATE_JOURNAL_FILE="$WORK/$lang.journal"
  before=$(events_of "${REFS[@]}" | wc -l)
  start "$dir" "$md" "$lang-subscriber.log" "$sub_cmd"
  sub_pid=$LAST_PID
  # First it catches up with the log so far (the earlier payments' $before events) ...
  for _ in $(seq 1 60); do
    [ "$(wc -l <"$PAYGATE_JOURNAL_FILE" 2>/dev/null || echo 0)" -ge "$before" ] && break
    kill -0 "$sub_pid" 2>/dev/null || fail "$lang subscriber exited"
    sleep 0.5
  done
  [ "$(wc -l <"$PAYGATE_JOURNAL_FILE")" -ge "$before" ] || fail "$lang subscriber did not catch up with $before events within 30s"
  REFS+=("$@")
  start "$dir" "$md" "$lang-rides.log" "$rides_cmd"
  rides_pid=$LAST_PID
  # ... then it is killed once it has handled some of the new rides' events, while they go on.
  for _ in $(seq 1 120); do
    [ "$(wc -l <"$PAYGATE_JOURNAL_FILE")" -ge $((before + 5)) ] && break
    sleep 0.25
  done
  kill -0 "$rides_pid" 2>/dev/null || fail "$lang: the rides ended before the subscriber could be killed mid-stream"
  kill -9 "$sub_pid"
  wait "$sub_pid" 2>/dev/null || true
  after=$(wc -l <"$PAYGATE_JOURNAL_FILE")
  say "$lang subscriber SIGKILLed after $after journal lines (cursor: $(cat "$PAYGATE_CURSOR_FILE" 2>/dev/null || echo none))"
  sleep 1 # events keep coming while it is down
  start "$dir" "$md" "$lang-subscriber.log" "$sub_cmd"
  sub_pid=$LAST_PID
  wait "$rides_pid" || fail "$lang: a ride failed (see $lang-rides.log)"
  want="$WORK/$lang.want"
  got="$WORK/$lang.got"
  for i in $(seq 1 120); do
    events_of "${REFS[@]}" >"$want"
    journal_of "$PAYGATE_JOURNAL_FILE" >"$got"
    cmp -s "$want" "$got" && break
    kill -0 "$sub_pid" 2>/dev/null || fail "$lang subscriber exited after the restart"
    sleep 0.5
  done
  kill -TERM "$sub_pid"
  wait "$sub_pid" 2>/dev/null || true
  if ! cmp -s "$want" "$got"; then
    diff "$want" "$got" | head -n 20 >&2 || true
    fail "$lang subscriber: its journal (>) is not every event of the log (<) exactly once, in order"
  fi
  [ "$(grep -c '^resuming: cursor' "$WORK/$lang-subscriber.log")" -ge 1 ] ||
    fail "$lang subscriber did not resume from its cursor after the kill"
  [ "$(sort "$got" | uniq -d | wc -l)" = 0 ] || fail "$lang subscriber handled an event twice"
  expect_in "$lang-subscriber.log" "handled seq=" "$lang subscriber log"
  # The window a kill can hit: the handler journaled an event, the cursor save did not happen.
  # Put the files in that state (cursor 2 events behind the journal): the restarted subscriber
  # gets those events again and must skip them as already handled.
  local last back
  last=$(tail -n 1 "$got" | cut -d' ' -f1)
  back=$(sed -n "$(($(wc -l <"$got") - 2))p" "$got" | cut -d' ' -f1)
  printf '{"sequence":%s}\n' "$back" >"$PAYGATE_CURSOR_FILE"
  start "$dir" "$md" "$lang-window.log" "$sub_cmd"
  sub_pid=$LAST_PID
  for _ in $(seq 1 40); do
    grep -q "^skip seq=$last (already handled)" "$WORK/$lang-window.log" && break
    sleep 0.25
  done
  kill -TERM "$sub_pid"
  wait "$sub_pid" 2>/dev/null || true
  grep -q "^skip seq=$last (already handled)" "$WORK/$lang-window.log" ||
    fail "$lang subscriber: an event redelivered after a lost cursor save was not skipped"
  journal_of "$PAYGATE_JOURNAL_FILE" | cmp -s - "$want" || fail "$lang subscriber: a redelivered event was handled twice"
  pass "$lang subscriber: SIGKILLed after $after of $(wc -l <"$want") events, restarted; every event handled exactly once, in order; redelivery after a lost cursor save skipped"
}

step "Python subscriber: SIGKILL mid-stream, restart, exactly once"
kill_test python "$PY" "$PY_README" ".venv/bin/python subscriber.py" \
  "for RIDE in 1001 1002 1003 1004 1005 1006; do .venv/bin/python fare_system.py --reference \"taxi-34-ride-\$RIDE\" --profile-wait-seconds 5; done" \
  taxi-34-ride-1001 taxi-34-ride-1002 taxi-34-ride-1003 taxi-34-ride-1004 taxi-34-ride-1005 taxi-34-ride-1006

step "TypeScript subscriber: SIGKILL mid-stream, restart, exactly once"
readme "$TS_README" "export PAYGATE_EMULATOR_URL=http://127.0.0.1:8090"
kill_test typescript "$TS" "$TS_README" "node dist/subscriber.js" \
  "for RIDE in 2001 2002 2003 2004 2005 2006; do ../python/.venv/bin/python ../python/fare_system.py --reference \"taxi-34-ride-\$RIDE\" --profile-wait-seconds 5; done" \
  taxi-34-ride-2001 taxi-34-ride-2002 taxi-34-ride-2003 taxi-34-ride-2004 taxi-34-ride-2005 taxi-34-ride-2006

# ---------------------------------------------------------------------------------------------
step "paygate restarts under both subscribers: they reconnect with backoff and miss nothing"
PIDS_BEFORE=${#PIDS[@]}
for lang in python typescript; do
  if [ $lang = python ]; then dir=$PY md=$PY_README cmd=".venv/bin/python subscriber.py"; else dir=$TS md=$TS_README cmd="node dist/subscriber.js"; fi
  export PAYGATE_CURSOR_FILE="$WORK/$lang.cursor" PAYGATE_JOURNAL_FILE="$WORK/$lang.journal"
  start "$dir" "$md" "$lang-restart.log" "$cmd"
done
SUBS=("${PIDS[@]:$PIDS_BEFORE}")
(cd "$PY" && .venv/bin/python fare_system.py --reference taxi-34-ride-3001 --profile-wait-seconds 5) >"$WORK/fare-3001.log" 2>&1 ||
  fail "ride taxi-34-ride-3001"
kill -TERM "$MAIN_PID"
for _ in $(seq 1 60); do kill -0 "$MAIN_PID" 2>/dev/null || break; sleep 0.5; done
kill -0 "$MAIN_PID" 2>/dev/null && fail "paygate did not stop on SIGTERM within 30s"
sleep 2 # the subscribers retry against a closed port meanwhile
PG_PORTS=$PG_PORTS_USED start_paygate paygate PAYGATE_API_TOKENS="ci-examples:$TOKEN"
MAIN_PID=$PG_PID
(cd "$PY" && .venv/bin/python fare_system.py --reference taxi-34-ride-3002 --profile-wait-seconds 5) >"$WORK/fare-3002.log" 2>&1 ||
  fail "ride taxi-34-ride-3002 after the restart"
REFS+=(taxi-34-ride-3001 taxi-34-ride-3002)
for i in $(seq 1 60); do
  events_of "${REFS[@]}" >"$WORK/restart.want"
  ok=1
  for lang in python typescript; do
    journal_of "$WORK/$lang.journal" | cmp -s - "$WORK/restart.want" || ok=0
  done
  [ $ok = 1 ] && break
  sleep 0.5
done
kill -TERM "${SUBS[@]}"
wait "${SUBS[@]}" 2>/dev/null || true
for lang in python typescript; do
  journal_of "$WORK/$lang.journal" | cmp -s - "$WORK/restart.want" ||
    fail "$lang subscriber: after paygate restarted, its journal is not every event exactly once"
  expect_in "$lang-restart.log" "stream broke: UNAVAILABLE" "$lang subscriber during the restart"
  [ "$(grep -c '^reconnecting in' "$WORK/$lang-restart.log")" -ge 2 ] || fail "$lang subscriber did not retry with backoff"
done
pass "paygate restarted under both subscribers: UNAVAILABLE, reconnects with backoff, every event exactly once"

# ---------------------------------------------------------------------------------------------
step "mutual TLS (PAYGATE_TLS_CA, PAYGATE_TLS_CERT, PAYGATE_TLS_KEY)"
if ! command -v openssl >/dev/null; then
  fail "openssl is needed for the TLS step"
fi
kill -TERM "$MAIN_PID" 2>/dev/null || true
T="$WORK/tls"
mkdir -p "$T"
(
  cd "$T"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=paygate-examples-ca" \
    -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem
  openssl req -newkey rsa:2048 -nodes -subj "/CN=ci-examples" -keyout client.key -out client.csr
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem
) >"$WORK/openssl.log" 2>&1 || fail "making test certificates"
start_paygate paygate-tls PAYGATE_TLS_CERT="$T/server.pem" PAYGATE_TLS_KEY="$T/server.key" PAYGATE_TLS_CLIENT_CA="$T/ca.pem"
export PAYGATE_ADDR="$PG_GRPC" PAYGATE_EMULATOR_URL="$PG_EMU" PAYGATE_TLS_CA="$T/ca.pem" PAYGATE_TLS_CERT="$T/client.pem" PAYGATE_TLS_KEY="$T/client.key"
unset PAYGATE_TOKEN
run "$PY" "$PY_README" tls-fare.log ".venv/bin/python fare_system.py --reference taxi-34-ride-0001 --customer-key rider-1001" ||
  fail "fare system over mutual TLS"
expect_in tls-fare.log "TLS, CA $T/ca.pem, client certificate $T/client.pem" "fare system over TLS"
for lang in python typescript; do
  if [ $lang = python ]; then dir=$PY md=$PY_README cmd=".venv/bin/python subscriber.py"; else dir=$TS md=$TS_README cmd="node dist/subscriber.js"; fi
  export PAYGATE_CURSOR_FILE="$WORK/$lang-tls.cursor" PAYGATE_JOURNAL_FILE="$WORK/$lang-tls.journal"
  start "$dir" "$md" "$lang-tls.log" "$cmd"
  pid=$LAST_PID
  for _ in $(seq 1 60); do
    [ "$( (cat "$PAYGATE_JOURNAL_FILE" 2>/dev/null || true) | wc -l)" -ge 4 ] && break
    sleep 0.5
  done
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  events_of taxi-34-ride-0001 >"$WORK/$lang-tls.want"
  journal_of "$PAYGATE_JOURNAL_FILE" >"$WORK/$lang-tls.got"
  cmp -s "$WORK/$lang-tls.want" "$WORK/$lang-tls.got" || fail "$lang subscriber over mutual TLS did not get the events"
done
rc=0
(cd "$PY" && PAYGATE_TLS_CERT= PAYGATE_TLS_KEY= .venv/bin/python list_events.py taxi-34-ride-0001) >"$WORK/tls-nocert.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "paygate with PAYGATE_TLS_CLIENT_CA accepted a client without a certificate"
pass "fare system and both subscribers over mutual TLS (and no client certificate is refused)"

finish
