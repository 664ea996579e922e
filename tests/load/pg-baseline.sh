#!/usr/bin/env bash
# The obvious alternative to ecocode's ledger, measured in the same run on
# the same machine: a PostgreSQL table whose BEFORE INSERT trigger chains
# each row's SHA-256 to the previous row's (serialized by an advisory lock),
# at the same durability (synchronous_commit = on, fsync = on), driven by
# pgbench with 1 and 8 clients; then ecocode's ledger group commit
# (`cargo bench -p ledger --bench ledger`: 1 and 64 concurrent appenders of
# 200-byte entries) and the ratios.
#
#   bash tests/load/pg-baseline.sh [SECONDS]
#
# Starts a throwaway cluster in a temporary directory on a Unix socket (no
# TCP port), as the `postgres` user when run as root, and removes it after.
# Needs Debian's postgresql package (installed if missing and root).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  else
    echo "PostgreSQL is not installed: apt-get install postgresql" >&2
    exit 1
  fi
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

dir=$(mktemp -d)
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
cleanup() { as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

as_pg "$bin/initdb" -D "$dir/data" -A trust -U bench >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-k $dir -c listen_addresses='' -c synchronous_commit=on -c fsync=on" start >/dev/null
psql() { as_pg "$bin/psql" -h "$dir" -U bench -d postgres -v ON_ERROR_STOP=1 -q "$@"; }

psql <<'SQL'
CREATE TABLE chain (
  seq     bigserial PRIMARY KEY,
  payload bytea NOT NULL,
  hash    bytea NOT NULL
);
CREATE FUNCTION chain_hash() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE prev bytea;
BEGIN
  -- One chain: appends are serialized, as a hash chain requires.
  PERFORM pg_advisory_xact_lock(42);
  SELECT hash INTO prev FROM chain ORDER BY seq DESC LIMIT 1;
  NEW.hash := sha256(coalesce(prev, '\x'::bytea) || NEW.payload);
  RETURN NEW;
END $$;
CREATE TRIGGER chain_hash BEFORE INSERT ON chain FOR EACH ROW EXECUTE FUNCTION chain_hash();
SQL
cat > "$dir/insert.sql" <<'SQL'
INSERT INTO chain (payload) VALUES (convert_to(repeat('x', 200), 'UTF8'));
SQL
chmod 644 "$dir/insert.sql"

pg_rate() {
  as_pg "$bin/pgbench" -h "$dir" -U bench -n -c "$1" -j "$1" -T "$seconds" -f "$dir/insert.sql" postgres \
    | awk '/^tps = / { printf "%.0f", $3 }'
}
pg1=$(pg_rate 1)
pg8=$(pg_rate 8)
rows=$(psql -tA -c "SELECT count(*) FROM chain")

ledger=$(cargo bench -q -p ledger --bench ledger 2>/dev/null)
eco1=$(echo "$ledger" | awk '/^1 appender:/ { sub("/s,", "", $5); print $5 }')
eco64=$(echo "$ledger" | awk '/^64 appenders:/ { sub("/s,", "", $5); print $5 }')

echo "PostgreSQL hash-chain trigger table, synchronous commit: 1 client ${pg1}/s, 8 clients ${pg8}/s (${rows} rows)"
echo "ecocode ledger, durable group commit:                   1 appender ${eco1}/s, 64 appenders ${eco64}/s"
awk -v a="$eco1" -v b="$pg1" -v c="$eco64" -v d="$pg8" \
  'BEGIN { printf "ratio: 1 vs 1 %.1fx, many vs 8 clients %.1fx\n", a / b, c / d }'
