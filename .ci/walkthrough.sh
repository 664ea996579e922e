#!/usr/bin/env bash
# The README walk-through, run for real against the dev binary: a server on
# a free port over a temp data directory, every role's commands, then an
# offline verification. Fails on the first command that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ecocode() { target/debug/ecocode "$@"; }
# `cmd | grep -q` can fail under pipefail: grep exits at its first match and
# the command's next write gets EPIPE. Capture the output, then look in it.
expect() { local out; out=$("${@:2}"); grep -q -- "$1" <<<"$out" || { echo "expected $1 in: $out"; return 1; }; }
# CI builds it with the tests (`cargo test --no-run`); build it if not.
[ -x target/debug/ecocode ] || cargo build --bin ecocode --quiet

work=$(mktemp -d)
server_pid=
trap 'if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
data="$work/data"

ADMIN=$(ecocode principal add --data "$data" --name ops --role admin | tail -1)
EPB=$(ecocode principal add --data "$data" --name beilun-epb --role regulator --scope 330206 | tail -1)
BANK=$(ecocode principal add --data "$data" --name bank-a --role lender | tail -1)
ACME=$(ecocode principal add --data "$data" --name acme --role enterprise --scope 91330206739237858W | tail -1)

# The binary itself, not the shell function, so $! is the server's pid.
target/debug/ecocode serve --data "$data" --listen 127.0.0.1:0 --hj212-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
# Wait (bounded) until the server says where it listens.
timeout 120 bash -c 'until grep -q "ecocode listening on" "$1"; do sleep 0.1; done' _ "$work/server.log" \
  || { cat "$work/server.log"; exit 1; }
addr=$(sed -n 's/^ecocode listening on \([^ ]*\).*/\1/p' "$work/server.log")
export ECOCODE_SERVER="http://$addr"
echo "server at $ECOCODE_SERVER"
web=$(sed -n 's|^web page on \(http://[^/]*\)/e/<USCC>$|\1|p' "$work/server.log")
echo "web page at $web"

export ECOCODE_TOKEN=$EPB
ecocode register --uscc 91330206739237858W --name "Ningbo Acme Dyeing Co." --region 330206 --industry C1713
cat > "$work/records.jsonl" <<'JSONL'
{"source":"beilun-epb","source_record_id":"P-2026-0117","uscc":"91330206739237858W","kind":"penalty.fine","occurred_at":"2026-03-02T08:00:00Z","amount_yuan":80000,"description":"COD above permit at DW001"}
{"source":"beilun-epb","source_record_id":"I-2026-0440","uscc":"91330206739237858W","kind":"inspection.finding","occurred_at":"2026-04-11T02:30:00Z","description":"hazardous-waste ledger incomplete"}
JSONL
ecocode append "$work/records.jsonl"
expect "2 already present" ecocode append "$work/records.jsonl"
ecocode point --mn LD130133000015 --uscc 91330206739237858W --outlet DW001 --password 'Xk3v9-q2LmZ7' --limit w01018=50mg/L --limit w21003=5mg/L
printf 'source,source_record_id,uscc,kind,occurred_at,description\nbeilun-epb,C-1,91330206739237858W,complaint.verified,2026-05-02,odour at night\n' > "$work/complaints.csv"
ecocode import "$work/complaints.csv"

# The bank reads the enterprise's details under the enterprise's grant
# (征信查询授权书): without one, FAILED_PRECONDITION says what to ask for.
export ECOCODE_TOKEN=$BANK
refused=$(ecocode score 91330206739237858W 2>&1 || true)
grep -q "ecocode grant add" <<<"$refused"
export ECOCODE_TOKEN=$ACME
ecocode grant add --uscc 91330206739237858W --lender bank-a --purpose loan_application --covers details,history --expires-at 2030-01-01T00:00:00Z
export ECOCODE_TOKEN=$BANK
expect 'live .*bank-a' ecocode grant list
ecocode score 91330206739237858W --purpose LA-2026-001
expect '"points":86' ecocode score 91330206739237858W --as-of 2026-06-30T00:00:00Z --json
expect '"mee_level":"BLUE"' ecocode score 91330206739237858W --as-of 2026-06-30T00:00:00Z --json
ecocode score 91330206739237858W --as-of 2026-03-31T00:00:00Z --tree-size 2
ecocode attest get 91330206739237858W --out "$work/acme.note"
ecocode attest verify "$work/acme.note" --public-key "$(ecocode key show --data "$data")"
ecocode checkpoint > "$work/old.note"

export ECOCODE_TOKEN=$ACME
echo '{"source":"acme","source_record_id":"D-1","uscc":"91330206739237858W","kind":"dispute.opened","occurred_at":"2026-04-12T00:00:00Z","refers_to_seq":2,"description":"the ledger was complete"}' > "$work/dispute.jsonl"
ecocode append "$work/dispute.jsonl"
expect '"disputed":true' ecocode score 91330206739237858W --as-of 2026-06-30T00:00:00Z --json
expect 'bank-a .*LA-2026-001' ecocode inquiries   # the bank's read, with its purpose
# Everything held about the enterprise: its entries with proofs, grants, inquiries.
ecocode export --uscc 91330206739237858W --out "$work/acme.jsonl"
expect '"type":"grant".*"lender":"bank-a"' cat "$work/acme.jsonl"
expect '"type":"end","entries":[1-9]' tail -1 "$work/acme.jsonl"
# Each entry line is a proof bundle `ecocode proof verify` checks offline.
grep -m1 '"type":"entry"' "$work/acme.jsonl" | sed 's/^{"type":"entry","seq":[0-9]*,"bundle"://; s/,"details":"[^"]*"}$/}/; s/}$//' > "$work/export-entry.json"
ecocode proof verify "$work/export-entry.json" --public-key "$(ecocode key show --data "$data")"

# The web page: anyone reads the code, its reasons and proofs (README "The 环保码 page").
expect 'Ningbo Acme Dyeing Co.' curl -fsS "$web/e/91330206739237858W"
expect '"uscc":"91330206739237858W"' curl -fsS "$web/e/91330206739237858W?format=json"
curl -fsS -o "$work/web.note" "$web/e/91330206739237858W/attestation.txt"
ecocode attest verify "$work/web.note" --public-key "$(ecocode key show --data "$data")"
# The page's QR text (the compact form), verified offline as a scanner would.
curl -fsS "$web/e/91330206739237858W?format=json" | sed -n 's/.*"qr_text":"\([^"]*\)".*/\1/p' > "$work/qr.txt"
expect '^HTTP://.*/Q/[0-9]*$' cat "$work/qr.txt"
ecocode attest verify "$work/qr.txt" --public-key "$(ecocode key show --data "$data")"

export ECOCODE_TOKEN=$EPB
ecocode enterprise history --uscc 91330206739237858W
ecocode gateway
ecocode score-all --as-of 2026-06-30T16:00:00Z --out "$work/scores.parquet"
ecocode report --from 2026-01-01T00:00:00Z --to 2026-06-30T16:00:00Z --region 3302 --out "$work/distribution.csv" --changes-out "$work/changes.csv"

export ECOCODE_TOKEN=$BANK
ecocode proof inclusion --seq 1 --out "$work/entry1.proof"
# A score proof: every entry about the enterprise, recomputed offline (README "A score proof").
# The bank receives the May complaint only as withheld (its publicity
# window ended): its bundle holds that record's scoring fields and
# a commitment to the rest, and still recomputes; the enterprise's own holds
# the same entries.
ecocode proof score --uscc 91330206739237858W --out "$work/score.proof"
expect 'complete: the score counts all' ecocode proof verify "$work/score.proof" --public-key "$(ecocode key show --data "$data")"
# The withheld record alone: its inclusion bundle holds the same hashed
# bytes and verifies.
out=$(ecocode score 91330206739237858W)
withheld_seq=$(sed -n 's/.*withheld *seq \([0-9]*\).*/\1/p' <<<"$out")
withheld_seq=${withheld_seq%%$'\n'*}
ecocode proof inclusion --seq "$withheld_seq" --out "$work/withheld.proof"
expect "ok: entry $withheld_seq " ecocode proof verify "$work/withheld.proof" --public-key "$(ecocode key show --data "$data")"
ECOCODE_TOKEN=$ACME ecocode proof score --uscc 91330206739237858W --out "$work/acme-score.proof"
expect 'complete: the score counts all' ecocode proof verify "$work/acme-score.proof" --public-key "$(ecocode key show --data "$data")"
ecocode proof consistency --old-checkpoint "$work/old.note" --out "$work/grew.proof"
ecocode proof verify "$work/entry1.proof" --public-key "$(ecocode key show --data "$data")"
ecocode proof verify "$work/grew.proof" --public-key "$(ecocode key show --data "$data")"

# A revoked token stops working on the running server (within a second;
# the CLI call below may race the reload, so wait for it, bounded).
ecocode principal revoke --data "$data" --name bank-a
timeout 10 bash -c 'until ! target/debug/ecocode checkpoint > /dev/null 2>&1; do sleep 0.2; done'
refused=$(ecocode checkpoint 2>&1 || true)
grep -q Unauthenticated <<<"$refused"

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
ecocode verify --data "$data"

# Witnesses (README "Witnesses"): a bank and a regulator cosign the same
# log, restarted with a witness policy; its checkpoint is published with
# both cosignatures and a proof verifies against the policy offline.
wdata=$data
wpids=()
trap 'for p in "$server_pid" "${wpids[@]}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
logkey=$(ecocode key show --data "$wdata")
for who in bank epb; do
  target/debug/ecocode witness serve --data "$work/$who-w" --name "$who.example/witness" --listen 127.0.0.1:0 \
    --log-key "ecocode.local/ledger=$logkey" 2> "$work/$who-w.log" &
  wpids+=($!)
done
for who in bank epb; do
  timeout 60 bash -c 'until grep -q "listening on" "$1"; do sleep 0.1; done' _ "$work/$who-w.log" \
    || { cat "$work/$who-w.log"; exit 1; }
done
waddr() { sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$work/$1-w.log"; }
{
  echo "log $logkey"
  echo "witness bank $(ecocode witness key --data "$work/bank-w" --name bank.example/witness) $(waddr bank)"
  echo "witness epb $(ecocode witness key --data "$work/epb-w" --name epb.example/witness) $(waddr epb)"
  echo "group both all bank epb"
  echo "quorum both"
} > "$work/policy.txt"
target/debug/ecocode serve --data "$wdata" --listen 127.0.0.1:0 --http-listen off --witness-policy "$work/policy.txt" \
  > /dev/null 2> "$work/wserver.log" &
server_pid=$!
timeout 120 bash -c 'until grep -q "ecocode listening on" "$1"; do sleep 0.1; done' _ "$work/wserver.log" \
  || { cat "$work/wserver.log"; exit 1; }
export ECOCODE_SERVER="http://$(sed -n 's/^ecocode listening on \([^ ]*\).*/\1/p' "$work/wserver.log")"
export ECOCODE_TOKEN=$ADMIN
# Published once both witnesses cosigned the head (bounded wait).
timeout 60 bash -c 'until target/debug/ecocode checkpoint 2>/dev/null | grep -q "epb.example/witness"; do sleep 0.2; done' \
  || { cat "$work/wserver.log"; exit 1; }
ecocode checkpoint > "$work/witnessed.note"
expect "bank.example/witness" cat "$work/witnessed.note"
ecocode proof inclusion --seq 1 --out "$work/w1.proof"
ecocode proof verify "$work/w1.proof" --public-key "$logkey" --policy "$work/policy.txt"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
echo "README walk-through ok"
