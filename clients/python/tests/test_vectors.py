"""Cross-language vectors (fixtures/vectors): Python gives every file the verdict the manifest expects.

tests/it/vectors.rs gives the same files to the Rust CLI and the tlog crate
with the same expectations, so the two verifiers accept and reject alike.
"""

from __future__ import annotations

import json

import pytest

from ecocode_client import VerificationError, verify
from conftest import REPO

VECTORS = REPO / "fixtures" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
KEY = (VECTORS / MANIFEST["public_key"]).read_text(encoding="utf-8").strip()


def check(vector):
    kind, path = vector["kind"], VECTORS / vector["file"]
    text = path.read_text(encoding="utf-8")
    # The witness vectors are verified with their policy (as `--policy`).
    policy = (VECTORS / vector["policy"]).read_text(encoding="utf-8") if "policy" in vector else None
    if kind == "checkpoint":
        return verify.checkpoint(text, KEY, policy=policy)
    if kind == "attestation":
        if policy is None:
            return verify.attestation(text, KEY)
        head = (VECTORS / vector["checkpoint"]).read_text(encoding="utf-8")
        return verify.attestation(text, KEY, policy=policy, checkpoint=head)
    if kind == "bundle":
        return verify.bundle(path, KEY, policy=policy)
    raise AssertionError(f"unknown vector kind {kind}")


@pytest.mark.parametrize("vector", MANIFEST["vectors"], ids=[v["file"] for v in MANIFEST["vectors"]])
def test_vector_gets_the_expected_verdict(vector):
    if vector["expect"] == "accept":
        check(vector)
    else:
        # Rejected with the verifier's own error, naming what is wrong, not
        # with a crash of some other kind.
        with pytest.raises(VerificationError) as rejected:
            check(vector)
        assert str(rejected.value)


def test_the_manifest_covers_each_kind_both_ways():
    seen = {(v["kind"], v["expect"]) for v in MANIFEST["vectors"]}
    assert seen == {(k, e) for k in ("checkpoint", "attestation", "bundle") for e in ("accept", "reject")}


def test_the_genuine_vectors_state_what_the_server_signed():
    inclusion = verify.bundle(VECTORS / "inclusion-seq2.json", KEY)
    event = inclusion.event()
    assert event.WhichOneof("event") == "record" and event.record.source_record_id == "P-1"
    attestation = verify.attestation((VECTORS / "attestation.note").read_text(encoding="utf-8"), KEY)
    qr = verify.attestation((VECTORS / "attestation-qr.txt").read_text(encoding="utf-8"), KEY)
    assert attestation == qr and attestation.uscc == "91330206739237858W"
    # The page signed the same score at its own request time.
    compact = verify.attestation((VECTORS / "attestation-compact-qr.txt").read_text(encoding="utf-8"), KEY)
    assert (compact.uscc, compact.points, compact.code, compact.tree_size, compact.root) == (
        attestation.uscc, attestation.points, attestation.code, attestation.tree_size, attestation.root)
    consistency = verify.bundle(VECTORS / "consistency.json", KEY)
    latest = verify.checkpoint((VECTORS / "checkpoint.note").read_text(encoding="utf-8"), KEY)
    assert consistency.to_size == latest.tree_size and consistency.from_size < latest.tree_size
