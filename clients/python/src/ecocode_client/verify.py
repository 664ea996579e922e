"""Offline verification of what ecocode signs: checkpoints, score attestations and proof bundles.

Pure Python over ``blake3`` and ``cryptography`` (Ed25519), written against
the byte formats of ``docs/ledger.md`` and nothing else: no server, no clock,
no network. A bank keeps a loan file's attestation, checkpoint and proof
bundles together with the service's verifier key (``ecocode key show``) and
can check them here years later.

Every check mirrors the Rust verifier (``ingest/tlog``) rule for rule; the
cross-language vectors in ``fixtures/vectors`` are run through both, and both
must accept and reject the same files.

Public functions:

* :func:`checkpoint` - a signed checkpoint note, returned as :class:`Checkpoint`;
* :func:`attestation` - a signed score attestation, as a note or as the text
  of the page's QR code (the compact ``HTTP://HOST/Q/<digits>`` form or the
  full ``?att=`` one), returned as :class:`Attestation`;
* :func:`bundle` - a proof bundle from ``ecocode proof inclusion|consistency``
  (or :meth:`ecocode_client.Client.inclusion_bundle`), returned as
  :class:`Inclusion` or :class:`Consistency`;
* :class:`Policy` - a C2SP tlog-policy file (logs, witnesses, quorum);
  ``checkpoint``, ``bundle`` and ``attestation`` take ``policy=`` and then
  refuse a checkpoint without the quorum of witness cosignatures
  (tlog-cosignature v1, Ed25519: :func:`cosignature`);
* :func:`record` - a ledger entry's record: a committed record opened with
  its details (``Entry.details``) and checked against its commitment;
* the primitives :func:`entry_hash`, :func:`chain_hash`, :func:`node`,
  :func:`merkle_root`, :func:`verify_inclusion`, :func:`verify_consistency`,
  :func:`details_commitment`.

Each raises :class:`ecocode_client.VerificationError` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import blake3 as _blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import VerificationError

__all__ = [
    "Attestation",
    "Checkpoint",
    "Consistency",
    "CosignerKey",
    "Inclusion",
    "Policy",
    "PolicyWitness",
    "Verdict",
    "VerifierKey",
    "attestation",
    "bundle",
    "chain_hash",
    "checkpoint",
    "cosignature",
    "cosignature_message",
    "cosigner_key_id",
    "details_commitment",
    "compact_bytes",
    "compact_note",
    "empty_root",
    "entry_hash",
    "merkle_root",
    "node",
    "note_from_qr_text",
    "open_note",
    "parse_cosigner_key",
    "parse_verifier_key",
    "record",
    "verify_consistency",
    "verify_inclusion",
]

Hash = bytes
"""A 32-byte BLAKE3 digest."""

_U64_MAX = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_ALG_ED25519 = 0x01
_MAX_NOTE_BYTES = 1_000_000
_MAX_SIGNATURES = 100
_EM_DASH_PREFIX = "\u2014 "
_DECIMAL = re.compile(r"[0-9]+\Z")
_SIGNED_DECIMAL = re.compile(r"[+-]?[0-9]+\Z")
_QR_PARAM = "att"

# ----------------------------------------------------------------- hashes


def entry_hash(seq: int, recorded_at_ns: int, payload: bytes) -> Hash:
    """``BLAKE3(0x00 || u64_be(seq) || i64_be(recorded_at_ns) || payload)``: the Merkle leaf of entry ``seq``."""
    return _blake3.blake3(
        b"\x00" + seq.to_bytes(8, "big") + recorded_at_ns.to_bytes(8, "big", signed=True) + bytes(payload)
    ).digest()


def chain_hash(prev: Hash, entry: Hash) -> Hash:
    """``BLAKE3(0x02 || prev || entry)``; ``prev`` is 32 zero bytes for seq 0."""
    return _blake3.blake3(b"\x02" + prev + entry).digest()


def node(left: Hash, right: Hash) -> Hash:
    """``BLAKE3(0x01 || left || right)``: an interior Merkle node."""
    return _blake3.blake3(b"\x01" + left + right).digest()


def details_commitment(salt: bytes, record: bytes) -> Hash:
    """``BLAKE3(0x07 || salt || record)``: a committed record's commitment to its details."""
    return _blake3.blake3(b"\x07" + bytes(salt) + bytes(record)).digest()


def record(payload: bytes, details: bytes = b"") -> Any:
    """The record a ledger entry's ``payload`` holds (``docs/ledger.md``, "Committed records").

    A record written before committed records comes back as its
    ``ecocode.v1.Record``. A committed record with its ``details`` (an
    ``Entry.details``, given to readers who may see the record whole) comes
    back as the whole ``Record`` once the details open the commitment and
    agree with every clear field; without details, as the
    ``ecocode.v1.CommittedRecord`` (the scoring fields and the commitment).
    Raises :class:`VerificationError` for anything else.
    """
    from .v1 import ecocode_pb2

    try:
        event = ecocode_pb2.LedgerEvent.FromString(bytes(payload))
    except Exception as e:  # protobuf's DecodeError and friends
        raise VerificationError(f"payload is not a LedgerEvent: {e}") from None
    which = event.WhichOneof("event")
    if which == "record" and not details:
        return event.record
    if which != "committed_record":
        raise VerificationError(f"the entry holds a {which or 'nothing'}, not a record with these details")
    committed = event.committed_record
    if not details:
        return committed
    try:
        opened = ecocode_pb2.RecordDetails.FromString(bytes(details))
        whole = ecocode_pb2.Record.FromString(opened.record)
    except Exception as e:
        raise VerificationError(f"details are not RecordDetails: {e}") from None
    if len(opened.salt) != 32:
        raise VerificationError(f"details: the salt is {len(opened.salt)} bytes, not 32")
    if details_commitment(opened.salt, opened.record) != committed.details_commitment:
        raise VerificationError("details do not open the entry's commitment")
    clear = (whole.uscc, whole.kind, whole.occurred_at, whole.amount_yuan, whole.refers_to_seq,
             whole.attributes.get("outcome", ""))
    stated = (committed.uscc, committed.kind, committed.occurred_at, committed.amount_yuan,
              committed.refers_to_seq, committed.outcome)
    if clear != stated:
        raise VerificationError("details: the record does not agree with the entry's clear fields")
    return whole


def empty_root() -> Hash:
    """``BLAKE3("")``: the root of the empty tree."""
    return _blake3.blake3(b"").digest()


def merkle_root(leaves: Sequence[Hash]) -> Hash:
    """``MTH(D[n])`` of RFC 9162 with BLAKE3 nodes (a reference, O(n))."""
    n = len(leaves)
    if n == 0:
        return empty_root()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def verify_inclusion(leaf: Hash, seq: int, tree_size: int, proof: Sequence[Hash], root: Hash) -> bool:
    """RFC 9162 section 2.1.3.2: is ``leaf`` entry ``seq`` of the tree of ``tree_size`` entries with ``root``?"""
    if seq >= tree_size:
        return False
    fn, sn, r = seq, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(from_size: int, to_size: int, from_root: Hash, to_root: Hash, proof: Sequence[Hash]) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree of ``from_size`` entries a prefix of the tree of ``to_size``?

    The empty tree is a prefix of every tree, with an empty proof (ecocode's rule).
    """
    if from_size > to_size:
        return False
    if from_size == to_size:
        return len(proof) == 0 and from_root == to_root
    if from_size == 0:
        return len(proof) == 0 and from_root == empty_root()
    if len(proof) == 0:
        return False
    # When from_size is a power of two its root is a node of the new tree and
    # the RFC leaves it out of the proof.
    path = ([from_root] if from_size & (from_size - 1) == 0 else []) + list(proof)
    fn, sn = from_size - 1, to_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == from_root and sr == to_root and sn == 0


# ----------------------------------------------------------------- base64


def _b64(text: str, what: str, urlsafe: bool = False) -> bytes:
    """Strict base64: the alphabet, padding and trailing bits exactly as the encoder writes them.

    Python's decoder accepts non-canonical trailing bits that Rust's rejects;
    re-encoding and comparing keeps both verifiers to one set of inputs.
    """
    if not isinstance(text, str):
        raise VerificationError(f"{what} is not a base64 string")
    try:
        if urlsafe:
            if "=" in text:
                raise ValueError
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            canonical = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        else:
            raw = base64.b64decode(text, validate=True)
            canonical = base64.b64encode(raw).decode("ascii")
    except (binascii.Error, ValueError):
        canonical, raw = None, b""
    if canonical != text:
        kind = "base64url without padding" if urlsafe else "standard base64"
        raise VerificationError(f"{what} is not {kind}")
    return raw


def _hash(text: str, what: str) -> Hash:
    raw = _b64(text, what)
    if len(raw) != 32:
        raise VerificationError(f"{what} is not 32 bytes of base64")
    return raw


# ----------------------------------------------------------------- keys


@dataclass(frozen=True)
class VerifierKey:
    """The service's verifier key, as printed by ``ecocode key show``: ``<name>+<key id>+<base64(0x01 || key)>``."""

    name: str
    public_key: bytes
    key_id: bytes

    def text(self) -> str:
        """The key text, one line."""
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([_ALG_ED25519]) + self.public_key).decode()}"


def _key_name_valid(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ALG_ED25519]) + public_key).digest()[:4]


def parse_verifier_key(text: Union[str, VerifierKey]) -> VerifierKey:
    """Parses a verifier key text and checks that its key id matches the name and key."""
    if isinstance(text, VerifierKey):
        return text
    if not isinstance(text, str):
        raise VerificationError("verifier key: expected the text printed by `ecocode key show`")
    fields = text.strip().split("+", 2)
    if len(fields) != 3:
        raise VerificationError("verifier key is not <name>+<key id hex>+<base64 key>")
    name, id_hex, key_b64 = fields
    if not _key_name_valid(name):
        raise VerificationError(f"verifier key: key name {name!r} must be non-empty without spaces or '+'")
    if len(id_hex) != 8:
        raise VerificationError("verifier key is not <name>+<key id hex>+<base64 key>")
    try:
        raw = _b64(key_b64, "verifier key")
    except VerificationError:
        raise VerificationError("verifier key is not <name>+<key id hex>+<base64 key>") from None
    if not raw or raw[0] != _ALG_ED25519:
        raise VerificationError("verifier key is not an ed25519 key (algorithm byte 0x01, 32 bytes)")
    if len(raw) != 33:
        raise VerificationError("verifier key: an ed25519 key has 32 bytes after the algorithm byte")
    public = raw[1:]
    kid = key_id(name, public)
    if kid.hex() != id_hex.lower():
        raise VerificationError(f"verifier key: key id {id_hex} does not match key {name}")
    return VerifierKey(name=name, public_key=public, key_id=kid)


# ----------------------------------------------------------------- signed notes


def _text(note: Union[str, bytes], what: str) -> str:
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationError(f"{what}: not UTF-8") from None
    if not isinstance(note, str):
        raise VerificationError(f"{what}: expected the note's text")
    return note


def open_note(note: Union[str, bytes], vkey: Union[str, VerifierKey], what: str = "signed note") -> str:
    """Checks that ``note`` (a C2SP signed note) carries a valid signature by ``vkey`` and returns its body.

    Signatures by other keys (co-signers, witnesses) are ignored, as the
    signed-note specification asks; a signature by this key that does not
    verify is an error even if another one does.
    """
    key = parse_verifier_key(vkey)
    text = _text(note, what)
    if len(text.encode("utf-8")) > _MAX_NOTE_BYTES:
        raise VerificationError(f"{what}: longer than {_MAX_NOTE_BYTES} bytes")
    for ch in text:
        if ch < " " and ch != "\n":
            raise VerificationError(f"{what}: contains the control character {ch!r}")
    if "\n\n" not in text:
        raise VerificationError(f"{what}: no blank line before the signature lines")
    body, sigs = text.rsplit("\n\n", 1)
    body += "\n"
    if not sigs.endswith("\n"):
        raise VerificationError(f"{what}: the last signature line does not end with a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise VerificationError(f"{what}: more than {_MAX_SIGNATURES} signatures")
    parsed: List[Tuple[str, bytes, bytes]] = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(_EM_DASH_PREFIX) or " " not in line[len(_EM_DASH_PREFIX) :]:
            raise VerificationError(f"{what}: signature line {number} is not '\u2014 <key name> <base64>'")
        name, sig_b64 = line[len(_EM_DASH_PREFIX) :].split(" ", 1)
        raw = _b64(sig_b64, f"{what}: signature line {number}")
        if len(raw) < 5 or not _key_name_valid(name):
            raise VerificationError(f"{what}: signature line {number} is malformed")
        parsed.append((name, raw[:4], raw[4:]))
    verified = False
    seen = set()
    ed25519 = Ed25519PublicKey.from_public_bytes(key.public_key)
    for name, kid, sig in parsed:
        if name != key.name or kid != key.key_id or (name, kid) in seen:
            continue
        seen.add((name, kid))
        try:
            if len(sig) != 64:
                raise InvalidSignature
            ed25519.verify(sig, body.encode("utf-8"))
        except InvalidSignature:
            raise VerificationError(f"{what}: signature by {key.name} does not verify") from None
        verified = True
    if not verified:
        raise VerificationError(f"{what}: no signature by key {key.name}")
    return body


# ----------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: the ledger's signed size, Merkle root and chain head."""

    origin: str
    tree_size: int
    root: Hash
    chain: Hash
    body: str
    note: str
    extensions: Tuple[str, ...] = ()
    witnessed: Optional["Verdict"] = field(default=None, compare=False)
    """With a policy: who cosigned it (the quorum is met)."""


def _parse_checkpoint(body: str, what: str) -> Tuple[str, int, Hash, Hash, Tuple[str, ...]]:
    if not body.endswith("\n"):
        raise VerificationError(f"{what}: body does not end with a newline")
    lines = body[:-1].split("\n")
    origin = lines[0]
    if not origin:
        raise VerificationError(f"{what}: empty origin")
    if len(lines) < 2:
        raise VerificationError(f"{what}: missing tree size")
    size_line = lines[1]
    if not _DECIMAL.match(size_line) or int(size_line) > _U64_MAX:
        raise VerificationError(f"{what}: tree size is not a decimal number")
    if str(int(size_line)) != size_line:
        raise VerificationError(f"{what}: tree size is not in canonical decimal")
    if len(lines) < 3:
        raise VerificationError(f"{what}: missing root hash")
    try:
        root = _hash(lines[2], "root")
    except VerificationError:
        raise VerificationError(f"{what}: root hash is not 32 bytes of base64") from None
    chain: Optional[Hash] = None
    extensions = []
    for line in lines[3:]:
        if line.startswith("chain "):
            try:
                chain = _hash(line[len("chain ") :], "chain")
            except VerificationError:
                raise VerificationError(f"{what}: chain hash is not 32 bytes of base64") from None
        else:
            extensions.append(line)
    if chain is None:
        raise VerificationError(f"{what}: missing chain extension line")
    return origin, int(size_line), root, chain, tuple(extensions)


def checkpoint(
    note: Union[str, bytes],
    vkey: Union[str, VerifierKey],
    origin: Optional[str] = None,
    policy: Union["Policy", str, None] = None,
) -> Checkpoint:
    """Verifies a signed checkpoint note and returns its content.

    ``vkey`` is the verifier key text (``ecocode key show``). With ``origin``
    the checkpoint must also be of that ledger (e.g. ``ecocode.local/ledger``).
    With ``policy`` (a :class:`Policy` or a policy file's text) it must also
    carry the policy's quorum of witness cosignatures; the error names who is
    missing, and :attr:`Checkpoint.witnessed` says who cosigned.
    """
    what = "checkpoint"
    text = _text(note, what)
    body = open_note(text, vkey, what)
    found_origin, size, root, chain, extensions = _parse_checkpoint(body, what)
    if origin is not None and found_origin != origin:
        raise VerificationError(f"{what}: origin is {found_origin!r}, expected {origin!r}")
    witnessed = _policy(policy).verify(text) if policy is not None else None
    return Checkpoint(found_origin, size, root, chain, body, text, extensions, witnessed)


# ----------------------------------------------------------------- witnesses

_ALG_COSIGNATURE_V1 = 0x04
_COSIGNATURE_LEN = 4 + 8 + 64
_MAX_POLICY_ENTRIES = 256


@dataclass(frozen=True)
class CosignerKey:
    """A witness's verifier key (``ecocode witness key``): ``<name>+<key id>+<base64(0x04 || key)>``."""

    name: str
    public_key: bytes
    key_id: bytes

    def text(self) -> str:
        """The key text, one line."""
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([_ALG_COSIGNATURE_V1]) + self.public_key).decode()}"


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x04 || public_key)[:4]`` (tlog-cosignature v1, Ed25519)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ALG_COSIGNATURE_V1]) + public_key).digest()[:4]


def parse_cosigner_key(text: Union[str, CosignerKey]) -> CosignerKey:
    """Parses a witness's vkey (signature type 0x04) and checks that its key id matches."""
    if isinstance(text, CosignerKey):
        return text
    fields = text.strip().split("+", 2) if isinstance(text, str) else []
    if len(fields) != 3 or len(fields[1]) != 8:
        raise VerificationError("witness key is not <name>+<key id hex>+<base64 key>")
    name, id_hex, key_b64 = fields
    if not _key_name_valid(name):
        raise VerificationError(f"witness key: key name {name!r} must be non-empty without spaces or '+'")
    raw = _b64(key_b64, "witness key")
    if len(raw) != 33 or raw[0] != _ALG_COSIGNATURE_V1:
        raise VerificationError("witness key is not a tlog-cosignature v1 Ed25519 key (type byte 0x04, 32 bytes)")
    kid = cosigner_key_id(name, raw[1:])
    if kid.hex() != id_hex.lower():
        raise VerificationError(f"witness key: key id {id_hex} does not match key {name}")
    return CosignerKey(name=name, public_key=raw[1:], key_id=kid)


def cosignature_message(timestamp: int, body: str) -> bytes:
    """What a v1 cosignature signs: ``cosignature/v1\\ntime <timestamp>\\n`` and the checkpoint's whole body."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode("utf-8")


def _signature_lines(note: str) -> Tuple[str, List[Tuple[str, bytes]]]:
    """A note's body (ending in a newline) and its signature lines as (key name, decoded bytes)."""
    if not note.endswith("\n") or "\n\n" not in note:
        raise VerificationError("signed note: no blank line before the signature lines")
    body, sigs = note.rsplit("\n\n", 1)
    lines = []
    for number, line in enumerate(sigs[:-1].split("\n"), 1):
        if not line.startswith(_EM_DASH_PREFIX) or " " not in line[len(_EM_DASH_PREFIX) :]:
            raise VerificationError(f"signed note: signature line {number} is not '\u2014 <key name> <base64>'")
        name, sig_b64 = line[len(_EM_DASH_PREFIX) :].split(" ", 1)
        raw = _b64(sig_b64, f"signed note: signature line {number}")
        if len(raw) < 5:
            raise VerificationError(f"signed note: signature line {number} is shorter than its key id")
        lines.append((name, raw))
    if len(lines) > _MAX_SIGNATURES:
        raise VerificationError(f"signed note: more than {_MAX_SIGNATURES} signatures")
    return body + "\n", lines


def cosignature(note: Union[str, bytes], key: Union[str, CosignerKey]) -> int:
    """Checks that ``note`` carries a valid v1 cosignature by the witness ``key`` and returns its timestamp.

    Lines of other names or key ids are ignored (the spec asks so); a line
    with this witness's name and key id that does not verify is an error.
    """
    witness = parse_cosigner_key(key)
    body, lines = _signature_lines(_text(note, "checkpoint"))
    ed25519 = Ed25519PublicKey.from_public_bytes(witness.public_key)
    found: Optional[int] = None
    for name, raw in lines:
        if name != witness.name or raw[:4] != witness.key_id:
            continue
        if len(raw) != _COSIGNATURE_LEN:
            raise VerificationError(f"cosignature by {witness.name} is not key id, timestamp and a 64-byte signature")
        timestamp = int.from_bytes(raw[4:12], "big")
        if timestamp > _I64_MAX:
            raise VerificationError(f"cosignature by {witness.name}: timestamp beyond 2^63-1")
        try:
            ed25519.verify(raw[12:], cosignature_message(timestamp, body))
        except InvalidSignature:
            raise VerificationError(f"cosignature by {witness.name} does not verify") from None
        found = timestamp
    if found is None:
        raise VerificationError(f"no cosignature by {witness.name}")
    return found


@dataclass(frozen=True)
class PolicyWitness:
    """A witness of a policy: its policy name, its key and (for the log) its URL."""

    name: str
    key: CosignerKey
    url: Optional[str] = None


@dataclass(frozen=True)
class Verdict:
    """How a checkpoint fares against a policy: who cosigned, who did not, and whether the quorum is met."""

    met: bool
    cosigned: Tuple[str, ...]
    missing: Tuple[str, ...]


# A quorum node: None (``quorum none``), a witness index, or (k, members).
_Node = Union[None, int, Tuple[int, Tuple[Any, ...]]]


def _satisfied(node: _Node, signed: Sequence[bool]) -> bool:
    if node is None:
        return True
    if isinstance(node, int):
        return signed[node]
    k, members = node
    return sum(1 for m in members if _satisfied(m, signed)) >= k


@dataclass(frozen=True)
class Policy:
    """A C2SP tlog-policy: the logs and witnesses a verifier trusts and the quorum of cosignatures it needs.

    Log keys are this ledger's Ed25519 vkeys (type 0x01); an ecocode log's
    key name may differ from its origin, so the checkpoint's signature is
    checked with the name in the vkey. Witness keys are tlog-cosignature v1
    Ed25519 vkeys (type 0x04).
    """

    logs: Tuple[VerifierKey, ...]
    witnesses: Tuple[PolicyWitness, ...]
    quorum_name: str
    _quorum: Any = field(repr=False, compare=False, default=None)

    @classmethod
    def parse(cls, text: Union[str, bytes]) -> "Policy":
        """Parses a policy file's text; an error names the line and the rule it breaks."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="surrogateescape")
        names: Dict[str, _Node] = {}
        logs: List[VerifierKey] = []
        witnesses: List[PolicyWitness] = []
        quorum: Optional[Tuple[_Node, str]] = None
        for number, raw in enumerate(text.split("\n"), 1):

            def at(what: str) -> VerificationError:
                return VerificationError(f"policy line {number}: {what}")

            if any((ch < " " and ch != "\t") or ch == "\x7f" for ch in raw):
                raise at("control characters other than tab are not allowed")
            line = raw.strip(" \t")
            if not line or line.startswith("#"):
                continue
            fields = [f for f in re.split(r"[ \t]+", line) if f]
            keyword, args = fields[0], fields[1:]
            if keyword == "log":
                if len(args) not in (1, 2):
                    raise at("expected `log <vkey> [<url>]`")
                try:
                    key = parse_verifier_key(args[0])
                except VerificationError as e:
                    raise at(f"log key: {e}") from None
                if any(log.public_key == key.public_key for log in logs):
                    raise at("duplicate log key")
                logs.append(key)
            elif keyword == "witness":
                if len(args) not in (2, 3):
                    raise at("expected `witness <name> <vkey> [<url>]`")
                name = args[0]
                try:
                    wkey = parse_cosigner_key(args[1])
                except VerificationError as e:
                    raise at(f"witness {name}: {e}") from None
                cls._define(names, name, len(witnesses), at)
                if any(w.key.public_key == wkey.public_key for w in witnesses):
                    raise at(f"witness {name}: duplicate witness key")
                witnesses.append(PolicyWitness(name, wkey, args[2] if len(args) == 3 else None))
            elif keyword == "group":
                if len(args) < 2:
                    raise at("expected `group <name> all|any|<k> <name>...`")
                name, threshold, members = args[0], args[1], args[2:]
                if not members:
                    raise at(f"group {name} has no members")
                n = len(members)
                if threshold == "all":
                    k = n
                elif threshold == "any":
                    k = 1
                elif _DECIMAL.match(threshold) and str(int(threshold)) == threshold and 1 <= int(threshold) <= n:
                    k = int(threshold)
                else:
                    raise at(f"group {name}: threshold must be all, any or 1..={n}")
                nodes = []
                for j, member in enumerate(members):
                    if member in members[:j]:
                        raise at(f"group {name}: member {member} is listed twice")
                    if member not in names:
                        if member == "none":
                            raise at(f"group {name}: none cannot be a member")
                        raise at(f"group {name}: {member} is not defined above")
                    nodes.append(names[member])
                cls._define(names, name, (k, tuple(nodes)), at)
            elif keyword == "quorum":
                if len(args) != 1:
                    raise at("expected `quorum <name>`")
                if quorum is not None:
                    raise at("a policy has exactly one quorum line")
                if args[0] == "none":
                    quorum = (None, "none")
                elif args[0] in names:
                    quorum = (names[args[0]], args[0])
                else:
                    raise at(f"quorum {args[0]} is not defined above")
            else:
                raise at(f"unknown keyword {keyword!r} (log, witness, group, quorum)")
            if len(names) > _MAX_POLICY_ENTRIES or len(logs) > _MAX_POLICY_ENTRIES:
                raise at(f"more than {_MAX_POLICY_ENTRIES} names or logs")
        if quorum is None:
            raise VerificationError("policy: no `quorum` line (use `quorum none` for none)")
        return cls(tuple(logs), tuple(witnesses), quorum[1], quorum[0])

    @staticmethod
    def _define(names: Dict[str, _Node], name: str, node: _Node, at: Any) -> None:
        if name == "none":
            raise at("the name none is predefined")
        if name in names:
            raise at(f"{name} is defined twice")
        names[name] = node

    def evaluate(self, note: Union[str, bytes]) -> Verdict:
        """Which witnesses validly cosigned ``note`` and whether that meets the quorum.

        Lines of unknown names or key ids are ignored; a witness whose line
        does not verify counts as missing. The log's signature is not checked
        here (see :meth:`verify`).
        """
        signed = []
        for w in self.witnesses:
            try:
                cosignature(note, w.key)
                signed.append(True)
            except VerificationError:
                signed.append(False)
        return Verdict(
            met=_satisfied(self._quorum, signed),
            cosigned=tuple(w.name for w, ok in zip(self.witnesses, signed) if ok),
            missing=tuple(w.name for w, ok in zip(self.witnesses, signed) if not ok),
        )

    def verify(self, note: Union[str, bytes]) -> Verdict:
        """Requires a log of the policy (if it lists any) to have signed ``note`` and the quorum to cosign it.

        Raises :class:`VerificationError` naming the witnesses whose
        cosignature is missing.
        """
        if self.logs:
            signed_by_log = False
            for log in self.logs:
                try:
                    open_note(note, log, "checkpoint")
                    signed_by_log = True
                    break
                except VerificationError:
                    pass
            if not signed_by_log:
                raise VerificationError("checkpoint NOT accepted by the policy: it is not signed by any log of the policy")
        verdict = self.evaluate(note)
        if not verdict.met:
            cosigned = ", ".join(verdict.cosigned) or "nobody"
            raise VerificationError(
                f"checkpoint NOT accepted by the policy: it lacks the quorum {self.quorum_name}: "
                f"cosigned by {cosigned}; missing: {', '.join(verdict.missing)}; "
                "ask the log for a checkpoint its witnesses cosigned"
            )
        return verdict


def _policy(policy: Union["Policy", str, bytes]) -> "Policy":
    return policy if isinstance(policy, Policy) else Policy.parse(policy)


# ----------------------------------------------------------------- attestations

_ATTESTATION_FIELDS = ("uscc", "points", "grade", "code", "veto", "disputed", "model", "as_of", "tree_size", "root")


@dataclass(frozen=True)
class Attestation:
    """A verified score attestation: what the service signed about one enterprise's score."""

    origin: str
    uscc: str
    points: int
    grade: str
    code: str
    veto: bool
    disputed: bool
    model: str
    as_of: str
    tree_size: int
    root: Hash
    note: str = field(repr=False, default="")
    #: The hash of the ledger entry holding the model's exact file (notes
    #: signed since the index and score proofs; ``None`` in older notes).
    model_entry: Optional[Hash] = None

    @property
    def as_of_datetime(self) -> _dt.datetime:
        """``as_of`` as an aware UTC datetime (microseconds; nanoseconds are cut)."""
        text = self.as_of
        match = re.match(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z\Z", text)
        if not match:
            raise VerificationError(f"attestation: as_of {text!r} is not RFC 3339 in UTC")
        base = _dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
        micros = int((match.group(2) or "0")[:6].ljust(6, "0"))
        return base + _dt.timedelta(microseconds=micros)


def _parse_attestation(body: str) -> Dict[str, Any]:
    what = "attestation"
    if not body.endswith("\n"):
        raise VerificationError(f"{what}: body does not end with a newline")
    lines = body[:-1].split("\n")
    first = lines[0]
    if not first.endswith("/score") or first == "/score":
        raise VerificationError(f"{what}: first line is not <origin>/score")
    # The optional model_entry line follows the model line.
    model_entry = None
    if len(lines) > 8 and lines[8].startswith("model_entry "):
        try:
            model_entry = _hash(lines.pop(8)[len("model_entry ") :], "model_entry")
        except VerificationError:
            raise VerificationError(f"{what}: model_entry is not 32 bytes of base64") from None
    values = []
    for i, name in enumerate(_ATTESTATION_FIELDS, 1):
        if i >= len(lines):
            raise VerificationError(f"{what}: missing {name} line")
        if not lines[i].startswith(name + " "):
            raise VerificationError(f"{what}: expected the {name} line")
        values.append(lines[i][len(name) + 1 :])
    if len(lines) > len(_ATTESTATION_FIELDS) + 1:
        raise VerificationError(f"{what}: unexpected lines after root")

    def number(i: int, name: str) -> int:
        text = values[i]
        if not _SIGNED_DECIMAL.match(text) or not _I64_MIN <= int(text) <= _I64_MAX:
            raise VerificationError(f"{what}: {name} is not a whole number")
        return int(text)

    def flag(i: int, name: str) -> bool:
        if values[i] not in ("true", "false"):
            raise VerificationError(f"{what}: {name} is not true or false")
        return values[i] == "true"

    tree_size = number(8, "tree_size")
    if tree_size < 0:
        raise VerificationError(f"{what}: tree_size is negative")
    try:
        root = _hash(values[9], "root")
    except VerificationError:
        raise VerificationError(f"{what}: root is not 32 bytes of base64") from None
    return dict(
        origin=first[: -len("/score")],
        uscc=values[0],
        points=number(1, "points"),
        grade=values[2],
        code=values[3],
        veto=flag(4, "veto"),
        disputed=flag(5, "disputed"),
        model=values[6],
        as_of=values[7],
        tree_size=tree_size,
        root=root,
        model_entry=model_entry,
    )


# ----------------------------------------------------------------- compact QR form

_COMPACT_VERSION = 1
_COMPACT_PATH = "/Q/"
_COMPACT_GRADES = ("INTEGRITY", "GOOD", "WARNING", "POOR")
_COMPACT_CODES = ("GREEN", "YELLOW", "RED")
# Digits of a group of n bytes (index n): the fewest that hold 256**n - 1.
_GROUP_DIGITS = (0, 3, 5, 8, 10, 13, 15, 17)
_GROUP_BYTES = 7
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# 10000-01-01T00:00:00Z: the layout's instants have four-digit years.
_YEAR_10000 = 253_402_300_800
_ASCII_DIGITS = re.compile(r"[0-9]+\Z")


def _compact_digits_of(text: str) -> Optional[str]:
    """The digits of a compact QR text (``.../Q/<digits>``, ``/q/`` too, or the bare digits), if it is one."""
    text = text.strip()
    at = text.rfind(_COMPACT_PATH)
    if at < 0:
        at = text.rfind(_COMPACT_PATH.lower())
    digits = text[at + len(_COMPACT_PATH) :] if at >= 0 else text
    return digits if _ASCII_DIGITS.match(digits) else None


def compact_bytes(digits: str) -> bytes:
    """The bytes written as ``digits``: groups of 17 digits for 7 bytes, a last shorter group of 3 to 15.

    A digit count no byte count gives, or a group whose number does not fit
    its bytes, raises :class:`VerificationError`.
    """
    what = "compact attestation digits"
    if not isinstance(digits, str) or not _ASCII_DIGITS.match(digits):
        raise VerificationError(f"{what}: not all decimal digits")
    full = _GROUP_DIGITS[_GROUP_BYTES]
    rest = len(digits) % full
    if rest not in _GROUP_DIGITS:
        raise VerificationError(
            f"{what}: {len(digits)} digits is not a whole number of groups "
            f"(17 digits for 7 bytes, a last group of 3, 5, 8, 10, 13 or 15); truncated?"
        )
    out = bytearray()
    for start in range(0, len(digits), full):
        group = digits[start : start + full]
        n = _GROUP_BYTES if len(group) == full else _GROUP_DIGITS.index(len(group))
        value = int(group)
        if value >> (8 * n):
            raise VerificationError(f"{what}: group {start // full + 1} ({group}) is larger than its {n} bytes")
        out += value.to_bytes(n, "big")
    return bytes(out)


class _Reader:
    """Reads the compact layout's fields in order; a missing byte is 'too short'."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int, field: str) -> bytes:
        if self.at + n > len(self.data):
            raise VerificationError(f"compact attestation: too short (truncated in {field})")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]

    def varint(self, field: str) -> int:
        """Unsigned LEB128 of at most 10 bytes and 64 bits, with no superfluous trailing zero group."""
        value = 0
        for i in range(10):
            b = self.byte(field)
            part = b & 0x7F
            if i == 9 and part > 1:
                break
            value |= part << (7 * i)
            if b & 0x80 == 0:
                if i > 0 and b == 0:
                    break
                return value
        raise VerificationError(f"compact attestation: {field} is not a varint")

    def text(self, field: str) -> str:
        raw = self.take(self.byte(field), field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationError(f"compact attestation: {field} is not UTF-8") from None


def _unpack_uscc(raw: bytes) -> Optional[str]:
    value = int.from_bytes(raw, "big")
    out = []
    for _ in range(18):
        value, digit = divmod(value, 31)
        out.append(_USCC_ALPHABET[digit])
    return "".join(reversed(out)) if value == 0 else None


def _format_instant(seconds: int, fraction: Optional[Tuple[int, int]]) -> Optional[str]:
    if seconds >= _YEAR_10000:
        return None
    t = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=seconds)
    out = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if fraction is not None:
        digits, value = fraction
        if value >= 10**digits:
            return None
        out += f".{value:0{digits}d}"
    return out + "Z"


def compact_note(data: bytes) -> str:
    """The signed note a compact attestation (layout version 1 of docs/ledger.md) rebuilds, byte for byte.

    Checks the layout only; :func:`attestation` then verifies the note's
    signature as for the full form.
    """
    what = "compact attestation"
    if not isinstance(data, (bytes, bytearray)):
        raise VerificationError(f"{what}: expected the bytes of the compact form")
    data = bytes(data)
    r = _Reader(data)
    if not data:
        raise VerificationError(f"{what}: empty")
    version = r.byte("version")
    if version != _COMPACT_VERSION:
        raise VerificationError(
            f"{what}: unknown format version {version}; this verifier reads version {_COMPACT_VERSION}"
        )
    kid = r.take(4, "key id")
    signature = r.take(64, "signature")
    flags = r.byte("flags")
    points = r.byte("points")
    uscc = _unpack_uscc(r.take(12, "uscc"))
    if uscc is None:
        raise VerificationError(f"{what}: USCC is out of range")
    code_bits = (flags >> 4) & 3
    if code_bits == 3:
        raise VerificationError(f"{what}: code bits are 3")
    seconds = r.varint("as_of")
    digits = (flags >> 6) * 3
    fraction = (digits, int.from_bytes(r.take(4, "as_of fraction"), "big")) if digits else None
    as_of = _format_instant(seconds, fraction)
    if as_of is None:
        raise VerificationError(f"{what}: as_of is out of range")
    tree_size = r.varint("tree_size")
    root = r.take(32, "root")
    key_name = r.text("key name")
    shared = r.byte("origin shared")
    name_bytes = key_name.encode("utf-8")
    prefix = None
    if shared <= len(name_bytes):
        try:
            prefix = name_bytes[:shared].decode("utf-8")
        except UnicodeDecodeError:
            pass  # not on a character boundary
    if prefix is None:
        raise VerificationError(f"{what}: origin shares more than the key name (or splits a character)")
    origin = prefix + r.text("origin")
    model = r.text("model")
    if r.at != len(data):
        raise VerificationError(f"{what}: trailing bytes")
    fields = dict(
        origin=origin,
        uscc=uscc,
        points=points,
        grade=_COMPACT_GRADES[(flags >> 2) & 3],
        code=_COMPACT_CODES[code_bits],
        veto=bool(flags & 1),
        disputed=bool(flags & 2),
        model=model,
        as_of=as_of,
        tree_size=tree_size,
        root=root,
        # The compact form (version 1) has no room for it.
        model_entry=None,
    )
    body = (
        f"{origin}/score\nuscc {uscc}\npoints {points}\ngrade {fields['grade']}\ncode {fields['code']}\n"
        f"veto {'true' if fields['veto'] else 'false'}\ndisputed {'true' if fields['disputed'] else 'false'}\n"
        f"model {model}\nas_of {as_of}\ntree_size {tree_size}\n"
        f"root {base64.b64encode(root).decode('ascii')}\n"
    )
    # The body must read back as the note's parser reads it: no line break
    # smuggled in a string, nothing the full form could not say.
    try:
        readback = _parse_attestation(body)
    except VerificationError:
        readback = None
    if readback != fields or " " in key_name or "\n" in key_name:
        raise VerificationError(f"{what}: a string field holds a space or line break where the note allows none")
    sig = base64.b64encode(kid + signature).decode("ascii")
    return f"{body}\n{_EM_DASH_PREFIX}{key_name} {sig}\n"


def _compact_decode(digits: str) -> str:
    return compact_note(compact_bytes(digits))


def note_from_qr_text(text: str) -> str:
    """The signed note inside the text of the page's QR code.

    The compact form (``HTTP://HOST/Q/<digits>``, ``/q/`` too, the bare
    digits, or the digits as the ``att=`` parameter) is decoded and its note
    rebuilt byte for byte (docs/ledger.md, "In a QR code"); anything else is
    the full form, ``<page URL>?att=<base64url of the note>`` or the bare
    value. Only the layout is checked here: :func:`attestation` verifies the
    signature.
    """
    text = text.strip()
    digits = _compact_digits_of(text)
    if digits is not None:
        return _compact_decode(digits)
    if "?" in text:
        query = text.split("?", 1)[1]
        value = None
        for pair in query.split("&"):
            if pair.startswith(_QR_PARAM + "="):
                value = pair[len(_QR_PARAM) + 1 :]
                break
        if value is None:
            raise VerificationError(f"QR text: no {_QR_PARAM}= parameter and no /Q/<digits>")
    else:
        value = text
    digits = _compact_digits_of(value)
    if digits is not None:
        return _compact_decode(digits)
    try:
        raw = _b64(value, f"QR text: {_QR_PARAM}", urlsafe=True)
    except VerificationError:
        if _COMPACT_PATH in value or _COMPACT_PATH.lower() in value:
            raise VerificationError("QR text: what follows /Q/ is not decimal digits") from None
        raise
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError("QR text: the attestation is not UTF-8") from None


def attestation(
    note_or_qr_text: Union[str, bytes],
    vkey: Union[str, VerifierKey],
    policy: Union["Policy", str, None] = None,
    checkpoint: Union[str, bytes, None] = None,
) -> Attestation:
    """Verifies a signed score attestation and returns what it states.

    Accepts the signed note itself (``GetAttestation``'s ``signed_note``,
    ``ecocode attest get``) or the text of the page's QR code. A text of one
    line is taken as a QR text, as ``ecocode attest verify`` does.

    With ``policy`` (as ``ecocode attest verify --policy --checkpoint``),
    ``checkpoint`` is required: the log's signed checkpoint of exactly the
    attestation's tree (origin, size, root), carrying the policy's quorum.
    """
    text = _text(note_or_qr_text, "attestation")
    note = text if "\n" in text.strip() else note_from_qr_text(text)
    body = open_note(note, vkey, "attestation")
    result = Attestation(note=note, **_parse_attestation(body))
    if policy is None:
        return result
    if checkpoint is None:
        raise VerificationError("attestation: a policy needs the checkpoint of the attestation's tree (checkpoint=...)")
    head_text = _text(checkpoint, "checkpoint")
    head = _parse_checkpoint(open_note(head_text, vkey, "checkpoint"), "checkpoint")
    if (head[0], head[1], head[2]) != (result.origin, result.tree_size, result.root):
        raise VerificationError(
            f"checkpoint is of {head[0]} at size {head[1]}, the attestation of {result.origin} at size "
            f"{result.tree_size}; give the checkpoint of the attestation's tree"
        )
    _policy(policy).verify(head_text)
    return result


# ----------------------------------------------------------------- bundles


@dataclass(frozen=True)
class Inclusion:
    """A verified inclusion bundle: entry ``seq``, with exactly these bytes, is in the signed tree."""

    seq: int
    tree_size: int
    entry_hash: Hash
    recorded_at_ns: int
    payload: bytes = field(repr=False)
    checkpoint: Checkpoint = field(repr=False)

    @property
    def recorded_at(self) -> _dt.datetime:
        """When the service recorded the entry (UTC, microseconds)."""
        seconds, nanos = divmod(self.recorded_at_ns, 1_000_000_000)
        return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc) + _dt.timedelta(microseconds=nanos // 1000)

    def event(self) -> Any:
        """The payload decoded as ``ecocode.v1.LedgerEvent`` (the registration, record, ... it holds)."""
        from .v1 import ecocode_pb2

        return ecocode_pb2.LedgerEvent.FromString(self.payload)


@dataclass(frozen=True)
class Consistency:
    """A verified consistency bundle: the signed tree of ``from_size`` is a prefix of the one of ``to_size``."""

    from_size: int
    to_size: int
    old_checkpoint: Checkpoint = field(repr=False)
    checkpoint: Checkpoint = field(repr=False)


_BUNDLE_FIELDS = {
    "inclusion": ("checkpoint", "seq", "recorded_at_ns", "payload", "hashes"),
    "consistency": ("old_checkpoint", "checkpoint", "hashes"),
}


def _no_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise VerificationError(f"bundle: duplicate field {key!r}")
        out[key] = value
    return out


def _read_bundle(path_or_text: Union[str, bytes, "os.PathLike[str]"]) -> str:
    if isinstance(path_or_text, bytes):
        return _text(path_or_text, "bundle")
    if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("{"):
        return path_or_text
    try:
        with open(path_or_text, "rb") as f:
            return _text(f.read(), "bundle")
    except OSError as e:
        raise VerificationError(f"bundle: cannot read {os.fspath(path_or_text)!r}: {e.strerror}") from None


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise VerificationError(f"bundle: {name} is not an integer in {low}..{high}")
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise VerificationError(f"bundle: {name} is not a string")
    return value


def _hashes(value: Any) -> List[Hash]:
    if not isinstance(value, list):
        raise VerificationError("bundle: hashes is not a list")
    out = []
    for i, h in enumerate(value):
        shown = repr(h)[:66]
        try:
            out.append(_hash(_string(h, f"hashes[{i}]"), f"hashes[{i}]"))
        except VerificationError:
            raise VerificationError(f"bundle: hashes[{i}] ({shown}) is not a base64 32-byte hash") from None
    return out


def _signed_head(note: Any, name: str, vkey: VerifierKey, policy: Optional["Policy"] = None) -> Checkpoint:
    return checkpoint(_string(note, name), vkey, policy=policy)


def bundle(
    path_or_text: Union[str, bytes, "os.PathLike[str]"],
    vkey: Union[str, VerifierKey],
    policy: Union["Policy", str, None] = None,
) -> Union[Inclusion, Consistency]:
    """Verifies a proof bundle (JSON, as ``ecocode proof`` writes it) and returns what it establishes.

    ``path_or_text`` is the bundle's JSON text or the path of its file. The
    bundle's checkpoint notes are verified with ``vkey``, then the proof
    against the signed sizes and roots. With ``policy`` the bundle's (newest)
    checkpoint must also carry the policy's quorum of cosignatures, as
    ``ecocode proof verify --policy`` requires.
    """
    key = parse_verifier_key(vkey)
    quorum = _policy(policy) if policy is not None else None
    text = _read_bundle(path_or_text)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as e:
        if isinstance(e, VerificationError):
            raise
        raise VerificationError(f"bundle: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise VerificationError("bundle: not a JSON object")
    kind = data.get("kind")
    if kind not in _BUNDLE_FIELDS:
        raise VerificationError(f"bundle: kind is {kind!r}, expected 'inclusion' or 'consistency'")
    expected = set(_BUNDLE_FIELDS[kind]) | {"kind"}
    unknown = sorted(set(data) - expected)
    if unknown:
        raise VerificationError(f"bundle: unknown field {unknown[0]!r}")
    missing = [name for name in _BUNDLE_FIELDS[kind] if name not in data]
    if missing:
        raise VerificationError(f"bundle: missing field {missing[0]!r}")

    if kind == "inclusion":
        seq = _integer(data["seq"], "seq", 0, _U64_MAX)
        recorded_at_ns = _integer(data["recorded_at_ns"], "recorded_at_ns", _I64_MIN, _I64_MAX)
        checkpoint_note = _string(data["checkpoint"], "checkpoint")
        payload_text = _string(data["payload"], "payload")
        hashes_value = data["hashes"]
        head = _signed_head(checkpoint_note, "checkpoint", key, quorum)
        try:
            payload = _b64(payload_text, "payload")
        except VerificationError:
            raise VerificationError("bundle: payload is not base64") from None
        proof = _hashes(hashes_value)
        leaf = entry_hash(seq, recorded_at_ns, payload)
        if not verify_inclusion(leaf, seq, head.tree_size, proof, head.root):
            raise VerificationError(f"entry {seq} is NOT included in the signed tree of size {head.tree_size}")
        return Inclusion(seq, head.tree_size, leaf, recorded_at_ns, payload, head)

    old = _signed_head(data["old_checkpoint"], "old_checkpoint", key)
    new = _signed_head(data["checkpoint"], "checkpoint", key, quorum)
    proof = _hashes(data["hashes"])
    if not verify_consistency(old.tree_size, new.tree_size, old.root, new.root, proof):
        raise VerificationError(f"the tree of size {old.tree_size} is NOT a prefix of the tree of size {new.tree_size}")
    return Consistency(old.tree_size, new.tree_size, old, new)
