#!/usr/bin/env bash
# The mirror's catch-up rate next to the log's own verification rate, in
# one run on one machine (BENCHMARKS.md, issue 20 point 8):
#   1. a server takes N records (`ecocode append`), then stops;
#   2. `ecocode verify --data` checks the stopped store (the log's own
#      start-up verification: every entry, the chain and the tree);
#   3. the server starts again (its log line gives the verification time
#      at start) and `ecocode mirror --once` catches a fresh copy up to its
#      checkpoint through /checkpoint and /tile/... (two HTTP requests per
#      256 entries, every entry hashed and the root checked, then appended
#      to the local copy);
#   4. `ecocode verify` checks the copy.
# Usage: tests/load/mirror-bench.sh [N] [path/to/ecocode]  (default 100000, target/debug/ecocode)
set -euo pipefail
N=${1:-100000}
BIN=${2:-target/debug/ecocode}
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
DATA=$WORK/data
MIRROR=$WORK/mirror
GRPC=127.0.0.1:$((20000 + RANDOM % 10000))
HTTP=127.0.0.1:$((30000 + RANDOM % 10000))
serve() {
  "$BIN" serve --data "$DATA" --listen "$GRPC" --http-listen "$HTTP" \
    --http-requests-per-minute 1000000 >"$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 600); do
    "$BIN" checkpoint --server "http://$GRPC" --token "$ADMIN" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "server did not start"; cat "$WORK/serve.log"; exit 1
}
ADMIN=$("$BIN" principal add --data "$DATA" --name ops --role admin | tail -1)
serve
USCC=91330206739237858W
"$BIN" register --server "http://$GRPC" --token "$ADMIN" --uscc $USCC --name "Bench Co." --region 330206 --industry C1713 >/dev/null
python3 - "$N" "$USCC" >"$WORK/records.jsonl" <<'PY'
import sys
n, uscc = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print('{"source":"ops","source_record_id":"R-%d","uscc":"%s","kind":"inspection.finding","occurred_at":"2026-03-02T08:00:00Z","description":"bench record %d with a description of typical length"}' % (i, uscc, i))
PY
"$BIN" append --server "http://$GRPC" --token "$ADMIN" "$WORK/records.jsonl" >/dev/null
kill -TERM $SERVER; wait $SERVER || true
ENTRIES=$((N + 1))
start=$(date +%s.%N)
"$BIN" verify --data "$DATA"
verify_s=$(echo "$(date +%s.%N) - $start" | bc)
serve
sed 's/\x1b\[[0-9;]*m//g' "$WORK/serve.log" | grep -o 'verification_ms=[0-9]*' | head -1 || true
"$BIN" key show --data "$DATA" >"$WORK/log.pub"
start=$(date +%s.%N)
"$BIN" mirror --from "http://$HTTP" --data "$MIRROR" --token "$ADMIN" --public-key "$WORK/log.pub" --once
mirror_s=$(echo "$(date +%s.%N) - $start" | bc)
"$BIN" verify --data "$MIRROR"
echo "entries $ENTRIES"
echo "verify (stopped store)   $verify_s s  $(echo "$ENTRIES / $verify_s" | bc) entries/s"
echo "mirror --once (fresh)    $mirror_s s  $(echo "$ENTRIES / $mirror_s" | bc) entries/s"
echo "ratio mirror/verify      $(echo "scale=3; $verify_s / $mirror_s" | bc)"
