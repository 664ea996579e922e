#!/usr/bin/env bash
# API stability of ecocode.v1 (docs/api.md, "Stability"): buf lint, buf
# breaking against the last published state, and a test of the check itself
# (deliberately breaking changes to a copy of the proto must be caught, an
# addition must pass). buf comes from the npm registry (@bufbuild/buf) into
# .ci/node_modules when it is not on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
if command -v buf >/dev/null; then
  buf=buf
else
  buf=.ci/node_modules/.bin/buf
  if [ ! -x "$buf" ]; then
    npm install --silent --no-save --no-audit --no-fund --prefix .ci "@bufbuild/buf@$BUF_VERSION"
  fi
fi
echo "buf $("$buf" --version)"

echo "-- buf lint"
"$buf" lint proto

# What HEAD must not break: the merge base with main when this is a branch
# off it; on main itself, the proto before its latest change; also the
# last release tag (v*) when there is one. The baseline
# image (ecocode.v1 as first published, with buf) is checked every time, so
# a clone without history still compares against something.
base=""
if git rev-parse --verify -q main >/dev/null && merge_base=$(git merge-base HEAD main 2>/dev/null) \
  && [ "$merge_base" != "$(git rev-parse HEAD)" ]; then
  base=$merge_base
  why="the merge base with main"
elif last=$(git log -n 1 --format=%H -- proto/ecocode 2>/dev/null) && [ -n "$last" ] \
  && git rev-parse --verify -q "$last^" >/dev/null; then
  base=$(git rev-parse "$last^")
  why="the proto before its latest change ($(git log -n 1 --format=%h "$last"))"
fi
if [ -n "$base" ]; then
  echo "-- buf breaking against $why, $(git rev-parse --short "$base")"
  "$buf" breaking proto --against ".git#ref=$base,subdir=proto"
else
  echo "-- buf breaking: no git history to compare with; the baseline image only"
fi
if tag=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null); then
  echo "-- buf breaking against the last release tag, $tag"
  "$buf" breaking proto --against ".git#tag=$tag,subdir=proto"
fi
echo "-- buf breaking against the baseline image proto/ecocode.v1.baseline.binpb"
"$buf" breaking proto --against proto/ecocode.v1.baseline.binpb

echo "-- the check itself: breaking changes to a copy are caught, an addition is not"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
proto=ecocode/v1/ecocode.proto
expect() { # expect pass|fail DESCRIPTION SED-EXPRESSION
  local want=$1 what=$2 edit=$3
  rm -rf "$scratch/proto" && mkdir -p "$scratch/proto" && cp -r proto/buf.yaml proto/ecocode "$scratch/proto/"
  sed -i "$edit" "$scratch/proto/$proto"
  if cmp -s "proto/$proto" "$scratch/proto/$proto"; then
    echo "self-test '$what': the edit changed nothing; fix the test" >&2
    exit 1
  fi
  if "$buf" breaking "$scratch/proto" --against proto >"$scratch/out" 2>&1; then got=pass; else got=fail; fi
  if [ "$got" != "$want" ]; then
    echo "self-test '$what': buf breaking should $want but did $got:" >&2
    cat "$scratch/out" >&2
    exit 1
  fi
  echo "   $want as it should: $what"
}
expect fail "a field renumbered (Score.points 3 -> 30)" 's/^  int32 points = 3;/  int32 points = 30;/'
expect fail "a field renamed (Score.veto -> vetoed)" 's/^  bool veto = 6;/  bool vetoed = 6;/'
expect fail "a field removed (Score.disputed)" '/^  bool disputed = 7;/d'
expect fail "an enum value renamed (RED -> CRIMSON)" 's/^  RED = 3;/  CRIMSON = 3;/'
expect fail "an RPC removed (Scores.GetAttestation)" '/rpc GetAttestation(/d'
expect pass "a field added (Score.comment = 99)" 's/^  string industry_code = 15;/  string industry_code = 15;\n  string comment = 99;/'
echo "buf: lint and breaking ok"
