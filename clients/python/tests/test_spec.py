"""The byte formats of docs/ledger.md, checked against the spec's own vectors (no server)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ecocode_client import VerificationError, verify
from conftest import REPO

LEDGER_MD = (REPO / "docs" / "ledger.md").read_text(encoding="utf-8")
T0 = 1_764_000_000_000_000_000

# ingest/tlog/src/note.rs: a note signed by ecocode's signer with seed [3; 32].
SEED = bytes([3] * 32)
NOTE = (
    "ecocode.test/ledger\n7\nroot\n\n\u2014 ecocode.test "
    "y48T26ZEvQof0HBjAriW4L3yqU1HKTfIobBoLzkSei+4W5hbrrJytcUpRpChhfZ5otSNzbCRsAk8ci5TSQyGUkbsiw8=\n"
)
VERIFIER_KEY = "ecocode.test+cb8f13db+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR"


def spec_vectors() -> dict:
    """The hex constants of the 'Test vectors' block of docs/ledger.md, by label."""
    block = LEDGER_MD.split("### Test vectors", 1)[1].split("```", 2)[1]
    out: dict = {}
    label = None
    for line in block.splitlines():
        m = re.match(r"^(\S.*?)\s+([0-9a-f]{64})$", line)
        if m:
            out[m.group(1)] = bytes.fromhex(m.group(2))
        elif line.endswith(":"):
            label = line[:-1]
            out[label] = []
        elif re.match(r"^\s+[0-9a-f]{64}$", line) and label:
            out[label].append(bytes.fromhex(line.strip()))
    return out


def leaves() -> list:
    return [verify.entry_hash(i, T0 + 1000 * i, f"entry-{i}".encode()) for i in range(7)]


def sign(body: str, name: str = "ecocode.test", seed: bytes = SEED) -> str:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes_raw()
    sig = key.sign(body.encode())
    return body + "\n\u2014 " + name + " " + base64.b64encode(verify.key_id(name, public) + sig).decode() + "\n"


def vkey(name: str = "ecocode.test", seed: bytes = SEED) -> str:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return verify.VerifierKey(name, public, verify.key_id(name, public)).text()


def test_hashes_roots_and_proofs_equal_the_spec_vectors():
    v = spec_vectors()
    ls = leaves()
    chain = bytes(32)
    chains = []
    for leaf in ls:
        chain = verify.chain_hash(chain, leaf)
        chains.append(chain)
    assert ls[0] == v["entry_hash(0)"]
    assert chains[0] == v["chain_hash(0)"]
    assert chains[6] == v["chain_hash(6)"]
    assert verify.merkle_root(ls[:2]) == v["MTH(size 2)"]
    assert verify.merkle_root(ls[:3]) == v["MTH(size 3)"]
    assert verify.merkle_root(ls) == v["MTH(size 7)"]
    assert verify.empty_root() == v["MTH(empty)"]
    inclusion = v["inclusion(seq 5, size 7)"]
    assert len(inclusion) == 3
    assert verify.verify_inclusion(ls[5], 5, 7, inclusion, verify.merkle_root(ls))
    assert not verify.verify_inclusion(ls[4], 5, 7, inclusion, verify.merkle_root(ls))
    assert not verify.verify_inclusion(ls[5], 4, 7, inclusion, verify.merkle_root(ls))
    assert not verify.verify_inclusion(ls[5], 5, 5, inclusion, verify.merkle_root(ls))
    consistency = v["consistency(3 -> 7)"]
    assert len(consistency) == 4
    root3, root7 = verify.merkle_root(ls[:3]), verify.merkle_root(ls)
    assert verify.verify_consistency(3, 7, root3, root7, consistency)
    assert not verify.verify_consistency(3, 7, root3, root7, consistency[:3])
    assert not verify.verify_consistency(2, 7, root3, root7, consistency)


def test_every_consistency_and_inclusion_of_seven_leaves_verifies_and_a_wrong_root_does_not():
    ls = leaves()

    def path(m, d):
        if len(d) == 1:
            return []
        k = 1 << ((len(d) - 1).bit_length() - 1)
        return path(m, d[:k]) + [verify.merkle_root(d[k:])] if m < k else path(m - k, d[k:]) + [verify.merkle_root(d[:k])]

    def subproof(m, d, whole):
        if m == len(d):
            return [] if whole else [verify.merkle_root(d)]
        k = 1 << ((len(d) - 1).bit_length() - 1)
        if m <= k:
            return subproof(m, d[:k], whole) + [verify.merkle_root(d[k:])]
        return subproof(m - k, d[k:], False) + [verify.merkle_root(d[:k])]

    for n in range(1, 8):
        root = verify.merkle_root(ls[:n])
        for m in range(n):
            assert verify.verify_inclusion(ls[m], m, n, path(m, ls[:n]), root)
            assert not verify.verify_inclusion(ls[m], m, n, path(m, ls[:n]), bytes(32))
        for m in range(0, n + 1):
            proof = [] if m in (0, n) else subproof(m, ls[:n], True)
            assert verify.verify_consistency(m, n, verify.merkle_root(ls[:m]), root, proof), (m, n)
            if 0 < m < n:
                assert not verify.verify_consistency(m, n, verify.merkle_root(ls[:m]), bytes(32), proof)


def test_a_note_of_ecocodes_signer_verifies_byte_for_byte():
    key = verify.parse_verifier_key(VERIFIER_KEY)
    assert key.name == "ecocode.test" and key.key_id.hex() == "cb8f13db"
    assert key.text() == VERIFIER_KEY
    assert vkey() == VERIFIER_KEY
    assert sign("ecocode.test/ledger\n7\nroot\n") == NOTE
    assert verify.open_note(NOTE, VERIFIER_KEY) == "ecocode.test/ledger\n7\nroot\n"


@pytest.mark.parametrize(
    "note, message",
    [
        (NOTE.replace("\n7\n", "\n8\n"), "does not verify"),
        ("", "no blank line"),
        ("body\n\nnot a signature\n", "signature line 1"),
        ("body\n\n\u2014 k bad!\n", "signature line 1"),
        (NOTE.rstrip("\n"), "does not end with a newline"),
        (NOTE.replace("root", "ro\tot"), "control character"),
    ],
)
def test_altered_and_malformed_notes_name_what_is_wrong(note, message):
    with pytest.raises(VerificationError, match=message):
        verify.open_note(note, VERIFIER_KEY)


def test_a_note_signed_by_another_key_only_is_refused_and_a_cosigned_one_verifies():
    with pytest.raises(VerificationError, match="no signature by key someone-else"):
        verify.open_note(NOTE, vkey("someone-else"))
    with pytest.raises(VerificationError, match="no signature"):
        verify.open_note(NOTE, vkey("ecocode.test", bytes([4] * 32)))
    witness = sign("ecocode.test/ledger\n7\nroot\n", "witness.example", bytes([9] * 32)).rsplit("\n\n", 1)[1]
    cosigned = NOTE + witness
    assert verify.open_note(cosigned, VERIFIER_KEY) == "ecocode.test/ledger\n7\nroot\n"
    assert verify.open_note(cosigned, vkey("witness.example", bytes([9] * 32))) == "ecocode.test/ledger\n7\nroot\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("ecocode.test+cb8f13dc+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR", "does not match"),
        ("ecocode.test+cb8f13db", "is not <name>"),
        ("ecocode.test+cb8f13db+AgEB", "not an ed25519 key"),
        ("eco code+cb8f13db+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR", "key name"),
    ],
)
def test_bad_verifier_keys_are_refused(text, message):
    with pytest.raises(VerificationError, match=message):
        verify.parse_verifier_key(text)


PINNED_ATTESTATION = LEDGER_MD.split("Pinned example", 1)[1].split("```", 2)[1].lstrip("\n")


def test_the_pinned_attestation_body_verifies_as_a_note_and_as_qr_text():
    assert PINNED_ATTESTATION.startswith("ecocode.local/ledger/score\n")
    note = sign(PINNED_ATTESTATION)
    a = verify.attestation(note, VERIFIER_KEY)
    assert (a.origin, a.uscc, a.points, a.grade, a.code) == ("ecocode.local/ledger", "91330421739237858X", 87, "GOOD", "GREEN")
    assert (a.veto, a.disputed, a.model, a.as_of, a.tree_size) == (False, True, "ecocode-2026.1", "2026-11-26T09:00:00Z", 1234)
    assert a.root == bytes([7] * 32)
    assert a.as_of_datetime.isoformat() == "2026-11-26T09:00:00+00:00"
    qr = "http://127.0.0.1:8080/e/91330421739237858X?att=" + base64.urlsafe_b64encode(note.encode()).decode().rstrip("=")
    assert verify.attestation(qr, VERIFIER_KEY) == a
    assert verify.attestation(qr.split("att=")[1], VERIFIER_KEY) == a
    with pytest.raises(VerificationError, match="does not verify"):
        verify.attestation(note.replace("points 87", "points 97"), VERIFIER_KEY)
    for bad, message in [("http://x/e/1?b=2", "no att="), ("http://x/e/1?att=%%%", "base64url"), ("!!", "base64url")]:
        with pytest.raises(VerificationError, match=message):
            verify.attestation(bad, VERIFIER_KEY)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b.replace("points 87\n", "points x\n"), "points is not a whole number"),
        (lambda b: b.replace("veto false\n", ""), "expected the veto line"),
        (lambda b: b + "extra 1\n", "unexpected lines after root"),
        (lambda b: b.replace("/score\n", "/scores\n"), "first line"),
        (lambda b: b.replace("disputed true", "disputed yes"), "disputed is not true or false"),
    ],
)
def test_malformed_attestation_bodies_are_refused_even_when_signed(edit, message):
    with pytest.raises(VerificationError, match=message):
        verify.attestation(sign(edit(PINNED_ATTESTATION)), VERIFIER_KEY)


def checkpoint_note(size: int, chain: bytes = bytes(32)) -> str:
    root = verify.merkle_root(leaves()[:size])
    return sign(f"ecocode.test/ledger\n{size}\n{base64.b64encode(root).decode()}\nchain {base64.b64encode(chain).decode()}\n")


def test_checkpoints_verify_and_their_body_rules_hold():
    c = verify.checkpoint(checkpoint_note(7), VERIFIER_KEY, origin="ecocode.test/ledger")
    assert (c.origin, c.tree_size, c.root) == ("ecocode.test/ledger", 7, spec_vectors()["MTH(size 7)"])
    with pytest.raises(VerificationError, match="origin"):
        verify.checkpoint(checkpoint_note(7), VERIFIER_KEY, origin="other/ledger")
    root = base64.b64encode(bytes(32)).decode()
    for body, message in [
        (f"o\n07\n{root}\nchain {root}\n", "canonical decimal"),
        (f"o\n7\n{root}\n", "missing chain"),
        (f"o\n-7\n{root}\nchain {root}\n", "not a decimal"),
        (f"o\n7\nAAAA\nchain {root}\n", "root hash"),
    ]:
        with pytest.raises(VerificationError, match=message):
            verify.checkpoint(sign(body), VERIFIER_KEY)
    with_extension = sign(f"o\n0\n{base64.b64encode(verify.empty_root()).decode()}\nwitnessed 1\nchain {root}\n")
    assert verify.checkpoint(with_extension, VERIFIER_KEY).extensions == ("witnessed 1",)


def inclusion_bundle(seq: int = 5, size: int = 7) -> dict:
    def path(m, d):
        if len(d) == 1:
            return []
        k = 1 << ((len(d) - 1).bit_length() - 1)
        return path(m, d[:k]) + [verify.merkle_root(d[k:])] if m < k else path(m - k, d[k:]) + [verify.merkle_root(d[:k])]

    return {
        "kind": "inclusion",
        "checkpoint": checkpoint_note(size),
        "seq": seq,
        "recorded_at_ns": T0 + 1000 * seq,
        "payload": base64.b64encode(f"entry-{seq}".encode()).decode(),
        "hashes": [base64.b64encode(h).decode() for h in path(seq, leaves()[:size])],
    }


def test_bundles_of_the_spec_vectors_verify_and_altered_ones_name_the_fault(tmp_path):
    b = inclusion_bundle()
    assert b["hashes"] == [base64.b64encode(h).decode() for h in spec_vectors()["inclusion(seq 5, size 7)"]]
    got = verify.bundle(json.dumps(b), VERIFIER_KEY)
    assert (got.seq, got.tree_size, got.payload) == (5, 7, b"entry-5")
    path = tmp_path / "entry5.proof"
    path.write_text(json.dumps(b))
    assert verify.bundle(path, VERIFIER_KEY) == got
    assert verify.bundle(str(path), VERIFIER_KEY) == got
    consistency = {
        "kind": "consistency",
        "old_checkpoint": checkpoint_note(3),
        "checkpoint": checkpoint_note(7),
        "hashes": [base64.b64encode(h).decode() for h in spec_vectors()["consistency(3 -> 7)"]],
    }
    c = verify.bundle(json.dumps(consistency), VERIFIER_KEY)
    assert (c.from_size, c.to_size) == (3, 7)

    cases = [
        (dict(b, payload=base64.b64encode(b"entry-6").decode()), "entry 5 is NOT included"),
        (dict(b, seq=4), "entry 4 is NOT included"),
        (dict(b, recorded_at_ns=b["recorded_at_ns"] + 1), "NOT included"),
        (dict(b, seq=5.0), "seq is not an integer"),
        (dict(b, extra=1), "unknown field 'extra'"),
        (dict(b, hashes=["AAAA"]), r"hashes\[0\]"),
        (dict(b, checkpoint=b["checkpoint"].replace("\n7\n", "\n8\n")), "checkpoint: signature by ecocode.test does not verify"),
        (dict(consistency, hashes=consistency["hashes"][:-1]), "NOT a prefix"),
        (dict(consistency, old_checkpoint=checkpoint_note(2)), "NOT a prefix"),
        ({k: v for k, v in b.items() if k != "hashes"}, "missing field 'hashes'"),
        (dict(b, kind="score"), "kind is 'score'"),
    ]
    for bad, message in cases:
        with pytest.raises(VerificationError, match=message):
            verify.bundle(json.dumps(bad), VERIFIER_KEY)
    with pytest.raises(VerificationError, match="duplicate field 'seq'"):
        verify.bundle(json.dumps(b)[:-1] + ', "seq": 5}', VERIFIER_KEY)
    with pytest.raises(VerificationError, match="cannot read"):
        verify.bundle(tmp_path / "missing.proof", VERIFIER_KEY)


def test_base64_with_non_canonical_trailing_bits_is_refused_as_rust_refuses_it():
    # "AB==" decodes to one byte in Python's lenient decoder but has non-zero
    # trailing bits; Rust's base64 refuses it, so must we (one accept set).
    with pytest.raises(VerificationError):
        verify._b64("AB==", "x")
    assert verify._b64("AA==", "x") == b"\x00"
