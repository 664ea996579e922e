#!/usr/bin/env python3
"""Screens a loan portfolio: a CSV of USCCs in, a data frame of codes, grades, points, reasons and verification out.

    pip install './clients/python[examples]'
    export ECOCODE_TOKEN=eco_...                       # a lender's token
    export ECOCODE_PUBLIC_KEY="$(ecocode key show)"    # the service's verifier key
    python clients/python/examples/screen_portfolio.py portfolio.csv --out screened.csv

The CSV has a header row with a ``uscc`` column (else its first column is
taken). Scores come from one ``BatchGetScores`` per 1 000 borrowers, all at
one instant; each borrower's signed attestation is then fetched and checked
offline against the verifier key, and must state the same points, grade and
colour. The frame (polars) is printed and, with ``--out``, written as CSV or
Parquet. Exit status 1 if any attestation fails to verify.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Any, Dict, List, Optional

import polars as pl

from ecocode_client import CallError, Client, VerificationError, pb, verify


def read_usccs(path: str) -> List[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    column = header.index("uscc") if "uscc" in header else 0
    body = rows[1:] if "uscc" in header else rows
    return [row[column].strip() for row in body if len(row) > column and row[column].strip()]


def enum_name(message: Any, field: str) -> str:
    """The name of an enum field's value, from the message's own descriptor."""
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    value = descriptor.enum_type.values_by_number.get(getattr(message, field))
    return value.name if value is not None else str(getattr(message, field))


# Issue 24 item 4 adds Score.mee_level (the MEE's four-level colour). The
# column appears as soon as the installed package's proto has the field; no
# change here is needed when it lands.
HAS_MEE_LEVEL = "mee_level" in pb.Score.DESCRIPTOR.fields_by_name


def check(client: Client, score: Any, key: Optional[str], purpose: Optional[str]) -> str:
    """'ok' if the borrower's signed attestation verifies and states this score, else what is wrong."""
    if key is None:
        return "not checked (no --public-key)"
    try:
        # The same instant and ledger prefix as the score: score(enterprise, T, N).
        attestation = client.get_attestation(score.uscc, as_of=score.as_of, tree_size=score.tree_size, purpose=purpose)
        attested = verify.attestation(attestation.signed_note, key)
    except (CallError, VerificationError) as e:
        return f"FAILED: {e}"
    stated = (attested.uscc, attested.points, attested.grade, attested.code)
    expected = (score.uscc, score.points, enum_name(score, "grade"), enum_name(score, "code"))
    if stated != expected:
        return f"FAILED: the attestation states {stated}, the score is {expected}"
    return "ok"


def screen(client: Client, usccs: List[str], key: Optional[str], purpose: Optional[str] = None) -> pl.DataFrame:
    batch = client.batch_get_scores(usccs, purpose=purpose)
    by_uscc = {s.uscc: s for s in batch.scores}
    rows: List[Dict[str, Any]] = []
    for code in dict.fromkeys(usccs):
        score = by_uscc.get(code)
        if score is None:
            row: Dict[str, Any] = dict(uscc=code, name=None, code=None, grade=None, points=None, reasons=None)
            if HAS_MEE_LEVEL:
                row["mee_level"] = None
            row.update(veto=None, disputed=None, as_of=None, tree_size=None, verified=False,
                       verification="not registered")
            rows.append(row)
            continue
        status = check(client, score, key, purpose)
        row = dict(
            uscc=score.uscc,
            name=score.name,
            code=enum_name(score, "code"),
            grade=enum_name(score, "grade"),
            points=score.points,
            reasons="; ".join(f"{r.kind} {r.points:+d} (seq {r.seq})" for r in score.reasons),
        )
        if HAS_MEE_LEVEL:
            row["mee_level"] = enum_name(score, "mee_level")
        row.update(
            veto=score.veto,
            disputed=score.disputed,
            as_of=score.as_of.ToDatetime().isoformat() + "Z",
            tree_size=score.tree_size,
            verified=status == "ok",
            verification=status,
        )
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("portfolio", help="CSV file with a uscc column")
    parser.add_argument("--server", default=os.environ.get("ECOCODE_SERVER", "http://127.0.0.1:50051"))
    parser.add_argument("--token", default=os.environ.get("ECOCODE_TOKEN"), help="default: $ECOCODE_TOKEN")
    parser.add_argument("--public-key", default=os.environ.get("ECOCODE_PUBLIC_KEY"),
                        help="the verifier key from `ecocode key show` (default: $ECOCODE_PUBLIC_KEY)")
    parser.add_argument("--ca", help="CA certificate (PEM) of an https:// server")
    parser.add_argument("--cert", help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--key", help="private key (PEM) of --cert")
    parser.add_argument("--purpose", help="recorded with each read, e.g. a loan application number")
    parser.add_argument("--out", help="write the frame to this .csv or .parquet file")
    args = parser.parse_args(argv)

    usccs = read_usccs(args.portfolio)
    if not usccs:
        print(f"{args.portfolio}: no USCCs found (expected a 'uscc' column)", file=sys.stderr)
        return 2
    try:
        with Client(args.server, token=args.token, ca=args.ca, cert=args.cert, key=args.key) as client:
            frame = screen(client, usccs, args.public_key, args.purpose)
    except (CallError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mee = ["mee_level"] if HAS_MEE_LEVEL else []
    shown = frame.select("uscc", "name", "code", *mee, "grade", "points", "verification")
    with pl.Config(tbl_rows=50, tbl_cols=-1, tbl_width_chars=120, fmt_str_lengths=40):
        print(shown)
    for row in frame.filter(pl.col("verification").str.starts_with("FAILED")).iter_rows(named=True):
        print(f"{row['uscc']}: {row['verification']}", file=sys.stderr)
    if args.out:
        if args.out.endswith(".parquet"):
            frame.write_parquet(args.out)
        else:
            frame.write_csv(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    failed = frame.filter(pl.col("verification").str.starts_with("FAILED")).height
    if failed:
        print(f"{failed} attestation(s) did NOT verify", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
