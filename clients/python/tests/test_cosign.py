"""Witness cosignatures (tlog-cosignature v1, Ed25519) and tlog-policy quorums in ecocode_client.verify.

The spec's own example, the key id formula, and the cross-language witness
vectors (fixtures/vectors: a checkpoint cosigned by real `ecocode witness
serve` processes, 2 of 3) checked for who cosigned and who is missing.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ecocode_client import VerificationError, verify
from conftest import REPO

VECTORS = REPO / "fixtures" / "vectors"
KEY = (VECTORS / "public.key").read_text(encoding="utf-8").strip()
POLICY_TEXT = (VECTORS / "witness-policy.txt").read_text(encoding="utf-8")
COSIGNED = (VECTORS / "cosigned-checkpoint.note").read_text(encoding="utf-8")

# tlog-cosignature.md (C2SP): the example checkpoint's witness line and the
# signed message it gives for its timestamp (the example's key is not given).
SPEC_LINE = (
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_MESSAGE = (
    "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_the_spec_example_line_is_key_id_timestamp_and_signature_of_its_message():
    raw = base64.b64decode(SPEC_LINE.split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    # The example's timestamp is the one of its message example.
    timestamp = int.from_bytes(raw[4:12], "big")
    assert timestamp == 1679315147
    assert verify.cosignature_message(timestamp, SPEC_BODY) == SPEC_MESSAGE.encode()


def test_key_id_is_sha256_of_name_newline_type_0x04_and_key():
    public = bytes(range(32))
    expected = hashlib.sha256(b"bank.example/witness\n\x04" + public).digest()[:4]
    assert verify.cosigner_key_id("bank.example/witness", public) == expected
    # Not the log's key id (type 0x01) for the same name and key.
    assert expected != verify.key_id("bank.example/witness", public)
    # And the witnesses' own vkeys in the policy carry exactly this id.
    for w in verify.Policy.parse(POLICY_TEXT).witnesses:
        assert w.key.key_id == verify.cosigner_key_id(w.key.name, w.key.public_key)
        assert w.key.text() in POLICY_TEXT


def _witness(name):
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    encoded = base64.b64encode(bytes([0x04]) + public).decode()
    vkey = f"{name}+{verify.cosigner_key_id(name, public).hex()}+{encoded}"
    return private, public, vkey


def test_a_cosignature_made_by_the_spec_recipe_verifies_and_a_changed_timestamp_does_not():
    private, public, vkey = _witness("w.example/w")
    body = COSIGNED.split("\n\n", 1)[0] + "\n"
    sig = private.sign(verify.cosignature_message(1700000000, body))
    raw = verify.cosigner_key_id("w.example/w", public) + (1700000000).to_bytes(8, "big") + sig
    note = COSIGNED + f"\u2014 w.example/w {base64.b64encode(raw).decode()}\n"
    assert verify.cosignature(note, vkey) == 1700000000
    raw = raw[:4] + (1700000001).to_bytes(8, "big") + raw[12:]
    with pytest.raises(VerificationError, match="cosignature by w.example/w does not verify"):
        verify.cosignature(COSIGNED + f"\u2014 w.example/w {base64.b64encode(raw).decode()}\n", vkey)


def test_the_real_cosigned_checkpoint_is_witnessed_by_bank_and_epb_not_court():
    policy = verify.Policy.parse(POLICY_TEXT)
    assert policy.quorum_name == "two-of-three"
    assert [w.name for w in policy.witnesses] == ["bank", "epb", "court"]
    verdict = policy.evaluate(COSIGNED)
    assert verdict == verify.Verdict(met=True, cosigned=("bank", "epb"), missing=("court",))
    head = verify.checkpoint(COSIGNED, KEY, policy=policy)
    assert head.witnessed == verdict and head.tree_size == 7


def test_a_checkpoint_without_the_quorum_names_who_is_missing():
    removed = (VECTORS / "tampered-cosigned-removed.note").read_text(encoding="utf-8")
    with pytest.raises(VerificationError) as refused:
        verify.checkpoint(removed, KEY, policy=POLICY_TEXT)
    assert "cosigned by bank; missing: epb, court" in str(refused.value)
    # The log's own checkpoint, never witnessed.
    bare = (VECTORS / "checkpoint.note").read_text(encoding="utf-8")
    with pytest.raises(VerificationError, match="cosigned by nobody; missing: bank, epb, court"):
        verify.checkpoint(bare, KEY, policy=POLICY_TEXT)
    with pytest.raises(VerificationError, match="missing: bank, epb, court"):
        verify.bundle(VECTORS / "inclusion-seq6.json", KEY, policy=POLICY_TEXT)


def test_a_forged_line_under_a_witness_name_counts_for_nobody():
    forged = (VECTORS / "tampered-cosigned-unknown-key.note").read_text(encoding="utf-8")
    assert "\u2014 epb.example/witness " in forged
    verdict = verify.Policy.parse(POLICY_TEXT).evaluate(forged)
    assert (verdict.met, verdict.cosigned, verdict.missing) == (False, ("bank",), ("epb", "court"))


def test_quorum_none_and_nested_groups():
    _, _, a = _witness("a.example/w")
    _, _, b = _witness("b.example/w")
    assert verify.Policy.parse("quorum none\n").evaluate(COSIGNED).met
    bank, epb = (line.split()[2] for line in POLICY_TEXT.splitlines() if line.split()[1:2] in (["bank"], ["epb"]))
    groups = (
        f"witness bank {bank}\nwitness epb {epb}\n\t# a comment\nwitness a {a}\n  witness\tb {b}  \n"
        "group ours all bank epb\ngroup theirs any a b\ngroup both all ours theirs\ngroup either any ours theirs\n"
    )
    # bank and epb cosigned, a and b did not.
    assert verify.Policy.parse(groups + "quorum either\n").evaluate(COSIGNED).met
    assert verify.Policy.parse(groups + "quorum ours\n").evaluate(COSIGNED).met
    both = verify.Policy.parse(groups + "quorum both\n").evaluate(COSIGNED)
    assert (both.met, both.cosigned, both.missing) == (False, ("bank", "epb"), ("a", "b"))


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "no `quorum` line"),
        ("quorum x\n", "policy line 1: quorum x is not defined above"),
        ("quorum none\nquorum none\n", "policy line 2: a policy has exactly one quorum line"),
        ("frobnicate x\nquorum none\n", "policy line 1: unknown keyword 'frobnicate'"),
        ("witness w\nquorum none\n", "policy line 1: expected `witness <name> <vkey> [<url>]`"),
        ("witness w nonsense\nquorum none\n", "policy line 1: witness w: witness key is not"),
        ("log nonsense\nquorum none\n", "policy line 1: log key: verifier key is not"),
        ("quorum none\x01\n", "policy line 1: control characters"),
        ("\ngroup g 1 x\nquorum g\n", "policy line 2: group g: x is not defined above"),
        ("group g 1\nquorum g\n", "policy line 1: group g has no members"),
    ],
)
def test_malformed_policies_name_the_line_and_the_rule(text, error):
    with pytest.raises(VerificationError) as bad:
        verify.Policy.parse(text)
    assert error in str(bad.value)


def test_policy_rules_on_witness_lines():
    _, _, a = _witness("a.example/w")
    _, _, b = _witness("b.example/w")
    cases = [
        (f"witness a {a}\nwitness a {b}\nquorum a\n", "policy line 2: a is defined twice"),
        (f"witness a {a}\nwitness b {a}\nquorum a\n", "policy line 2: witness b: duplicate witness key"),
        (f"witness none {a}\nquorum none\n", "policy line 1: the name none is predefined"),
        (f"witness a {a}\ngroup g 2 a\nquorum g\n", "policy line 2: group g: threshold must be all, any or 1..=1"),
        (f"witness a {a}\ngroup g 01 a\nquorum g\n", "threshold must be"),
        (f"witness a {a}\ngroup g any a a\nquorum g\n", "member a is listed twice"),
        (f"witness a {a}\ngroup g any a none\nquorum g\n", "none cannot be a member"),
        (f"witness a {KEY}\nquorum a\n", "0x04"),
    ]
    for text, error in cases:
        with pytest.raises(VerificationError) as bad:
            verify.Policy.parse(text)
        assert error in str(bad.value), text


def test_a_policy_with_another_log_refuses_this_logs_checkpoint():
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    encoded = base64.b64encode(bytes([0x01]) + public).decode()
    log = f"other.log+{verify.key_id('other.log', public).hex()}+{encoded}"
    text = POLICY_TEXT.replace(KEY, log)
    with pytest.raises(VerificationError, match="not signed by any log of the policy"):
        verify.checkpoint(COSIGNED, KEY, policy=text)


def test_attestation_with_policy_needs_the_checkpoint_of_its_tree():
    note = (VECTORS / "attestation.note").read_text(encoding="utf-8")
    with pytest.raises(VerificationError, match="needs the checkpoint"):
        verify.attestation(note, KEY, policy=POLICY_TEXT)
    old = (VECTORS / "checkpoint-old.note").read_text(encoding="utf-8")
    with pytest.raises(VerificationError, match="give the checkpoint of the attestation's tree"):
        verify.attestation(note, KEY, policy=POLICY_TEXT, checkpoint=old)
    assert verify.attestation(note, KEY, policy=POLICY_TEXT, checkpoint=COSIGNED).tree_size == 7
