"""The compact QR form of a signed attestation (``HTTP://HOST/Q/<digits>``), decoded by the Python verifier.

The spec's vector and hand-made damage need no server; the round trips take
the QR text of the 环保码 page of a real ``ecocode serve`` (its JSON form,
``/e/<USCC>?format=json``), under the default origin and key name and under
ones that share nothing, and check that Python rebuilds the very note the
page signed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.request

import pytest

from ecocode_client import Client, VerificationError, pb, verify
from conftest import start_server, uscc, with_principals
from test_spec import LEDGER_MD, PINNED_ATTESTATION, VERIFIER_KEY, sign

YESTERDAY = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=1)
REGION = "330206"
CLEAN = uscc("91330206739200001")
FINED = uscc("91330206739200002")
VETOED = uscc("91330206739200003")


def spec_compact_vector() -> "tuple[bytes, str]":
    """The compact bytes and QR text of the 'Test vector' block of docs/ledger.md's "In a QR code"."""
    section = LEDGER_MD.split("### In a QR code", 1)[1]
    block = section.split("**Test vector**", 1)[1].split("```", 2)[1]
    hex_part, qr_part = block.split("compact bytes (164, hex):", 1)[1].split("QR text (424 characters):", 1)
    return bytes.fromhex("".join(hex_part.split())), qr_part.split()[0]


def to_digits(data: bytes) -> str:
    """The layout's digits, written here from the spec's rule (a test-side encoder for damaged bytes)."""
    widths = (0, 3, 5, 8, 10, 13, 15, 17)
    return "".join(
        str(int.from_bytes(data[i : i + 7], "big")).zfill(widths[len(data[i : i + 7])]) for i in range(0, len(data), 7)
    )


SPEC_BYTES, SPEC_QR = spec_compact_vector()
SPEC_DIGITS = SPEC_QR.split("/Q/", 1)[1]


def test_the_spec_vector_decodes_to_the_pinned_attestation_byte_for_byte():
    assert len(SPEC_BYTES) == 164 and len(SPEC_QR) == 424
    assert SPEC_QR.startswith("HTTP://ECOCODE.EXAMPLE/Q/")
    assert verify.compact_bytes(SPEC_DIGITS) == SPEC_BYTES
    assert to_digits(SPEC_BYTES) == SPEC_DIGITS
    # The same signed note as the full form: same body, same signature line.
    note = sign(PINNED_ATTESTATION)
    assert verify.compact_note(SPEC_BYTES) == note
    assert verify.note_from_qr_text(SPEC_QR) == note
    attested = verify.attestation(SPEC_QR, VERIFIER_KEY)
    assert attested == verify.attestation(note, VERIFIER_KEY)
    assert (attested.origin, attested.uscc, attested.points, attested.code, attested.disputed) == (
        "ecocode.local/ledger", "91330421739237858X", 87, "GREEN", True)
    assert attested.note == note
    # Every way a reader meets the digits: lower case, bare, as the page's
    # att= parameter, with the line break a scanner app adds.
    for text in (SPEC_QR.lower(), SPEC_DIGITS, f"http://ecocode.example/e/X?att={SPEC_DIGITS}", SPEC_QR + "\n"):
        assert verify.attestation(text, VERIFIER_KEY) == attested


def replace_digit(digits: str, at: int) -> str:
    return digits[:at] + ("1" if digits[at] != "1" else "2") + digits[at + 1 :]


def leb128(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode(note: str, shared: "int | None" = None, fraction: "int | None" = None) -> bytes:
    """A test-side writer of layout version 1, from the spec's table (checked against the vector below).

    ``shared`` and ``fraction`` override what the writer would put in those
    fields, to make bytes a correct writer never would.
    """
    body, sig_line = note.rsplit("\n\n", 1)
    key_name, sig = sig_line.strip("\n")[2:].split(" ")
    lines = body.split("\n")
    f = dict(line.split(" ", 1) for line in lines[1:])
    origin = lines[0][: -len("/score")]
    as_of = f["as_of"]
    seconds = int(dt.datetime.strptime(as_of[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp())
    digits = len(as_of) - 21 if "." in as_of else 0
    grades, codes = ("INTEGRITY", "GOOD", "WARNING", "POOR"), ("GREEN", "YELLOW", "RED")
    flags = (f["veto"] == "true") | (f["disputed"] == "true") << 1 | grades.index(f["grade"]) << 2
    flags |= codes.index(f["code"]) << 4 | (digits // 3) << 6
    number = 0
    for ch in f["uscc"]:
        number = number * 31 + "0123456789ABCDEFGHJKLMNPQRTUWXY".index(ch)
    name, origin_bytes = key_name.encode(), origin.encode()
    common = 0
    while common < min(len(name), len(origin_bytes)) and name[common] == origin_bytes[common]:
        common += 1
    common = shared if shared is not None else common
    out = bytes([1]) + base64.b64decode(sig) + bytes([flags, int(f["points"])]) + number.to_bytes(12, "big")
    out += leb128(seconds)
    if digits:
        out += (fraction if fraction is not None else int(as_of[20:-1])).to_bytes(4, "big")
    out += leb128(int(f["tree_size"])) + base64.b64decode(f["root"])
    rest = origin_bytes[common:]
    model = f["model"].encode()
    return out + bytes([len(name)]) + name + bytes([common, len(rest)]) + rest + bytes([len(model)]) + model


def pinned(**changes: str) -> str:
    """The pinned attestation with some lines changed (``as_of="..."``), signed by the spec's key."""
    body = PINNED_ATTESTATION
    for name, value in changes.items():
        body = re.sub(rf"(?m)^{name} .*$", f"{name} {value}", body)
    return sign(body)


def with_byte(at: int, value: int) -> str:
    data = bytearray(SPEC_BYTES)
    data[at] = value
    return to_digits(bytes(data))


def test_the_test_side_writer_writes_the_spec_vector():
    assert encode(sign(PINNED_ATTESTATION)) == SPEC_BYTES


@pytest.mark.parametrize(
    "text, message",
    [
        # Digits: a scanner or a forger changed or dropped some.
        ("HTTP://H/Q/" + SPEC_DIGITS[:-1], "not a whole number of groups"),
        ("HTTP://H/Q/" + SPEC_DIGITS[:-25] + SPEC_DIGITS[-8:], "too short"),
        ("HTTP://H/Q/" + "99999999999999999" + SPEC_DIGITS[17:], "group 1 .* is larger than its 7 bytes"),
        ("HTTP://H/Q/" + SPEC_DIGITS[:-8] + "99999999", "larger than its 3 bytes"),
        ("HTTP://H/Q/12a45", "not decimal digits"),
        # A digit changed inside the signature, or inside a signed field:
        # the layout still reads, the rebuilt note does not verify.
        ("HTTP://H/Q/" + replace_digit(SPEC_DIGITS, 40), "does not verify"),
        ("HTTP://H/Q/" + with_byte(70, 97), "does not verify"),
        ("HTTP://H/Q/" + with_byte(69, SPEC_BYTES[69] ^ 1), "does not verify"),
        # The layout's own rules.
        ("HTTP://H/Q/" + with_byte(0, 2), "unknown format version 2; this verifier reads version 1"),
        ("HTTP://H/Q/" + with_byte(69, SPEC_BYTES[69] | 0x30), "code bits are 3"),
        ("HTTP://H/Q/" + with_byte(71, 0xFF), "USCC is out of range"),
        ("HTTP://H/Q/" + to_digits(SPEC_BYTES + b"\x00"), "trailing bytes"),
        ("HTTP://H/Q/" + to_digits(encode(pinned(), shared=13)), "origin shares more than the key name"),
        ("HTTP://H/Q/" + to_digits(encode(pinned(as_of="1970-01-01T00:00:00.123Z"), fraction=1000)),
         "as_of is out of range"),
        ("HTTP://H/Q/" + to_digits(encode(pinned(as_of="9999-12-31T23:59:59Z"))[:83] + leb128(253_402_300_800)
                                   + encode(pinned(as_of="9999-12-31T23:59:59Z"))[88:]),
         "as_of is out of range"),
        ("HTTP://H/Q/" + to_digits(encode(pinned(model="x")).replace(b"\x01x", b"\x02\n|")), "space or line break"),
        ("HTTP://H/Q/" + to_digits(encode(pinned(tree_size=str(1 << 63)))), "space or line break"),
        ("HTTP://H/Q/" + to_digits(encode(pinned(model="x")).replace(b"\x01x", b"\x01\xff")), "model is not UTF-8"),
        # Varints: a superfluous zero group, over 64 bits.
        ("HTTP://H/Q/" + to_digits(SPEC_BYTES[:83] + b"\x80\x00" + SPEC_BYTES[88:]), "as_of is not a varint"),
        ("HTTP://H/Q/" + to_digits(SPEC_BYTES[:83] + b"\xff" * 9 + b"\x02" + SPEC_BYTES[88:]), "as_of is not a varint"),
    ],
)
def test_damaged_compact_texts_are_refused_naming_what_is_wrong(text, message):
    with pytest.raises(VerificationError, match=message):
        verify.attestation(text, VERIFIER_KEY)


def test_every_truncation_and_every_changed_byte_is_an_error_never_a_crash_or_a_pass():
    # The Rust decoder's property (ingest/tlog/src/compact.rs), on the Python side.
    for end in range(len(SPEC_BYTES)):
        with pytest.raises(VerificationError):
            verify.attestation(to_digits(SPEC_BYTES[:end]), VERIFIER_KEY)
    for i in range(len(SPEC_BYTES)):
        data = bytearray(SPEC_BYTES)
        data[i] ^= 0x41
        with pytest.raises(VerificationError):
            verify.attestation(to_digits(bytes(data)), VERIFIER_KEY)


@pytest.mark.parametrize(
    "changes",
    [
        dict(as_of="1970-01-01T00:00:00Z", points="0", grade="POOR", code="RED", veto="true"),
        dict(as_of="2024-02-29T23:59:59.001Z", points="100", grade="INTEGRITY"),
        dict(as_of="2026-12-31T00:00:00.000001Z", grade="WARNING", code="YELLOW", disputed="false"),
        dict(as_of="9999-12-31T23:59:59.999999999Z", points="255", tree_size=str((1 << 63) - 1)),
        dict(model="模型-2026 with spaces"),
    ],
)
def test_every_field_value_the_layout_holds_rebuilds_the_note_exactly(changes):
    note = pinned(**changes)
    data = encode(note)
    assert verify.note_from_qr_text("HTTP://127.0.0.1:8080/Q/" + to_digits(data)) == note
    attested = verify.attestation(to_digits(data), VERIFIER_KEY)
    assert attested == verify.attestation(note, VERIFIER_KEY)


def test_the_full_form_still_reads_and_an_att_value_is_not_taken_for_digits_unless_all_digits():
    note = sign(PINNED_ATTESTATION)
    full = "http://x/e/91330421739237858X?att=" + base64.urlsafe_b64encode(note.encode()).decode().rstrip("=")
    assert verify.note_from_qr_text(full) == note
    # A /Q/ part that is not all digits does not hide a valid att= value.
    assert verify.note_from_qr_text(full.replace("/e/", "/Q/12a/e/")) == note


# ----------------------------------------------------------------- a real server


@pytest.fixture(
    scope="module",
    params=[(), ("--origin", "环保码.ningbo.example/ledger", "--key-name", "nb-epb")],
    ids=["default-origin", "origin-sharing-nothing"],
)
def web_server(request, tmp_path_factory):
    """A real ``ecocode serve`` with its web page on, holding a clean, a fined and a vetoed enterprise."""
    data = tmp_path_factory.mktemp("ecocode-qr")
    tokens = with_principals(data)
    server = start_server(data, extra=request.param, http=True)
    server.tokens = tokens
    assert server.http_address, "the server printed no web page address:\n" + "".join(server.stderr)
    with Client(server.url, token=tokens["regulator"]) as regulator:
        for code, name in ((CLEAN, "Clean Dyeing"), (FINED, "宁波甬港化工有限公司"), (VETOED, "Dumping Ltd")):
            regulator.register_enterprise(code, name, REGION, "C26")
        regulator.append_record(source="beilun-epb", source_record_id="F-1", uscc=FINED, kind="penalty.fine",
                                occurred_at=YESTERDAY, amount_yuan=300_000, description="COD above permit")
        last = regulator.append_record(source="beilun-epb", source_record_id="V-1", uscc=VETOED,
                                       kind="veto.crime", occurred_at=YESTERDAY, description="illegal dumping")
        # Pages show the latest signed checkpoint's tree: wait until it holds these entries.
        regulator.checkpoint_covering(last.seq + 1)
    yield server
    server.stop()


def page_json(server, code: str) -> dict:
    with urllib.request.urlopen(f"http://{server.http_address}/e/{code}?format=json", timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read().decode("utf-8"))


@pytest.mark.parametrize("code", [CLEAN, FINED, VETOED])
def test_the_pages_compact_qr_text_rebuilds_the_signed_note_and_verifies(web_server, code):
    key = web_server.public_key()
    page = page_json(web_server, code)
    qr_text = page["attestation"]["qr_text"]
    assert qr_text.startswith(f"HTTP://{web_server.http_address}/Q/"), qr_text
    # The very note the page signed, rebuilt from the digits alone.
    assert verify.note_from_qr_text(qr_text) == page["attestation"]["note"]
    attested = verify.attestation(qr_text, key)
    assert attested == verify.attestation(page["attestation"]["note"], key)
    assert (attested.uscc, attested.points, attested.grade, attested.code, attested.veto) == (
        code, page["points"], page["grade"], page["code"], page["veto"])
    assert (attested.model, attested.as_of, attested.tree_size) == (page["model"], page["as_of"], page["tree_size"])
    assert base64.b64encode(attested.root).decode() == page["root"]
    # What GetAttestation signs for the same score states the same.
    with Client(web_server.url, token=web_server.tokens["lender"], purpose="LA-2026-QR") as lender:
        score = lender.get_attestation(code).score
    assert (attested.points, attested.code) == (score.points, pb.EcoCode.Name(score.code))
    # One digit changed anywhere in the signature is refused.
    digits = qr_text.split("/Q/", 1)[1]
    with pytest.raises(VerificationError, match="does not verify"):
        verify.attestation(qr_text.split("/Q/", 1)[0] + "/Q/" + replace_digit(digits, 30), key)
    # And another server's key does not accept it.
    with pytest.raises(VerificationError, match="no signature by key"):
        verify.attestation(qr_text, VERIFIER_KEY)


def test_the_vetoed_and_the_fined_enterprises_differ_from_the_clean_one(web_server):
    # The three round trips above would pass on one enterprise's text; the
    # flags they carry must differ as the scores do.
    clean, fined, vetoed = (verify.attestation(page_json(web_server, c)["attestation"]["qr_text"], web_server.public_key())
                            for c in (CLEAN, FINED, VETOED))
    assert clean.code == "GREEN" and not clean.veto
    assert vetoed.code == "RED" and vetoed.veto
    assert fined.points < clean.points
    origin = "ecocode.local/ledger" if verify.parse_verifier_key(web_server.public_key()).name == "ecocode.local" else "环保码.ningbo.example/ledger"
    assert clean.origin == fined.origin == vetoed.origin == origin
