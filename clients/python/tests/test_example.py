"""The portfolio example runs against a real server and verifies every attestation it fetched."""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys

from ecocode_client import Client, pb
from conftest import REPO, uscc

EXAMPLE = REPO / "clients" / "python" / "examples" / "screen_portfolio.py"


def test_screen_portfolio_writes_a_frame_with_codes_reasons_and_verification(server, tmp_path):
    borrowers = [uscc(f"91330206{i:09d}") for i in range(500, 504)]
    unknown = uscc("91330206777777777")
    with Client(server.url, token=server.tokens["regulator"]) as regulator:
        for i, code in enumerate(borrowers):
            regulator.register_enterprise(code, f"借款人 {i}", "330206")
        regulator.append_record(source="beilun-epb", source_record_id="X-1", uscc=borrowers[1], kind="penalty.warning",
                                occurred_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    portfolio = tmp_path / "portfolio.csv"
    portfolio.write_text("loan,uscc\n" + "".join(f"L-{i},{c}\n" for i, c in enumerate([*borrowers, unknown])))
    out = tmp_path / "screened.csv"
    env = dict(os.environ, ECOCODE_TOKEN=server.tokens["lender"], ECOCODE_PUBLIC_KEY=server.public_key())
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(portfolio), "--server", server.url, "--out", str(out), "--purpose", "LA-7"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["uscc"]: row for row in csv.DictReader(out.open(encoding="utf-8"))}
    assert list(rows) == [*borrowers, unknown]
    warned = rows[borrowers[1]]
    assert (warned["code"], warned["grade"], warned["points"]) == ("GREEN", "INTEGRITY", "97")
    assert warned["reasons"].startswith("penalty.warning -3 (seq ")
    assert all(rows[c]["verified"] == "true" and rows[c]["verification"] == "ok" for c in borrowers)
    assert (rows[unknown]["verified"], rows[unknown]["verification"]) == ("false", "not registered")
    assert ("mee_level" in rows[unknown]) == ("mee_level" in pb.Score.DESCRIPTOR.fields_by_name)
    assert borrowers[0] in done.stdout


def test_screen_portfolio_fails_when_an_attestation_does_not_verify(server, tmp_path):
    borrower = uscc("91330206000000600")
    with Client(server.url, token=server.tokens["regulator"]) as regulator:
        regulator.register_enterprise(borrower, "借款人", "330206")
    portfolio = tmp_path / "portfolio.csv"
    portfolio.write_text(f"uscc\n{borrower}\n")
    # A verifier key of the right name but another key: nothing verifies.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ecocode_client import verify

    name = verify.parse_verifier_key(server.public_key()).name
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    wrong = verify.VerifierKey(name, public, verify.key_id(name, public)).text()
    env = dict(os.environ, ECOCODE_TOKEN=server.tokens["lender"])
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(portfolio), "--server", server.url, "--public-key", wrong],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 attestation(s) did NOT verify" in done.stderr
    assert f"{borrower}: FAILED: attestation: no signature by key {name}" in done.stderr
