"""The client against a real ecocode server: writes, scores, pages, chunks, streams, evidence, errors."""

from __future__ import annotations

import base64
import json
import datetime as dt

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ecocode_client
from ecocode_client import CallError, Client, VerificationError, pb, verify
from conftest import uscc

REGION = "330206"
YESTERDAY = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=1)
ACME = uscc("91330206739237858")
PORTFOLIO = [uscc(f"91330206{i:09d}") for i in range(1, 8)]


@pytest.fixture(scope="module")
def admin(server):
    with Client(server.url, token=server.tokens["admin"]) as client:
        yield client


@pytest.fixture(scope="module")
def regulator(server):
    with Client(server.url, token=server.tokens["regulator"]) as client:
        yield client


@pytest.fixture(scope="module")
def lender(server):
    with Client(server.url, token=server.tokens["lender"], purpose="LA-2026-001") as client:
        yield client


@pytest.fixture(scope="module")
def registered(regulator):
    """ACME with a fine and the portfolio, registered and appended through the client."""
    first = regulator.register_enterprise(ACME, "Acme Chemicals", REGION, "C26")
    again = regulator.register_enterprise(ACME, "Acme Chemicals", REGION, "C26")
    assert again.duplicate and again.seq == first.seq
    for i, code in enumerate(PORTFOLIO):
        regulator.register_enterprise(code, f"Borrower {i}", REGION, "C26")
    fine = regulator.append_record(
        source="beilun-epb",
        source_record_id="F-1",
        uscc=ACME,
        kind="penalty.fine",
        occurred_at=YESTERDAY,
        amount_yuan=100_000,
        description="wastewater above the permit",
    )
    summary = regulator.append_records(
        [
            {
                "source": "beilun-epb",
                "source_record_id": "V-1",
                "uscc": PORTFOLIO[0],
                "kind": "veto.crime",
                "occurred_at": YESTERDAY,
                "description": "illegal dumping",
            },
            pb.Record(source="beilun-epb", source_record_id="F-1", uscc=ACME, kind="penalty.fine",
                      occurred_at=fine_timestamp(), amount_yuan=100_000, description="wastewater above the permit"),
        ]
    )
    assert (summary.accepted, summary.duplicates, summary.rejected_count) == (1, 1, 0)
    return fine


def fine_timestamp():
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(YESTERDAY)
    return ts


def test_a_registered_enterprise_scores_with_reasons_that_add_up(registered, lender):
    score = lender.get_score(ACME)
    assert score.uscc == ACME and score.name == "Acme Chemicals"
    assert score.points == 90 and pb.CreditGrade.Name(score.grade) == "INTEGRITY"
    assert pb.EcoCode.Name(score.code) == "GREEN"
    assert [(r.kind, r.points, r.seq) for r in score.reasons] == [("penalty.fine", -10, registered.seq)]
    assert 100 + sum(r.points for r in score.reasons) == score.points
    vetoed = lender.get_score(PORTFOLIO[0])
    assert (vetoed.veto, pb.EcoCode.Name(vetoed.code)) == (True, "RED")
    before = lender.get_score(ACME, tree_size=registered.seq)
    assert before.points == 100 and before.tree_size == registered.seq


def test_list_scores_iterates_over_every_page_in_uscc_order(registered, regulator):
    everyone = sorted([ACME, *PORTFOLIO])
    assert [s.uscc for s in regulator.list_scores(region_prefix=REGION, page_size=2)] == everyone
    assert [s.uscc for s in regulator.list_scores(region_prefix=REGION, codes=["RED"], page_size=1)] == [PORTFOLIO[0]]
    with pytest.raises(ValueError, match="PURPLE"):
        list(regulator.list_scores(codes=["PURPLE"]))
    assert [s.uscc for s in regulator.list_scores(region_prefix=REGION, industry_prefix="C99")] == []
    # Other keywords go to the request message as they are (a filter the
    # proto gains later needs no client change); protobuf names an unknown one.
    with pytest.raises(ValueError, match="no_such_filter"):
        list(regulator.list_scores(no_such_filter=1))


def test_a_portfolio_is_split_into_chunks_and_scored_at_one_instant(registered, lender):
    unknown = uscc("91330206999999999")
    asked = [*PORTFOLIO, ACME, unknown, ACME]
    got = lender.batch_get_scores(asked, chunk_size=3)
    assert [s.uscc for s in got.scores] == [*PORTFOLIO, ACME]
    assert got.not_found == [unknown]
    assert len({(s.as_of.seconds, s.as_of.nanos) for s in got.scores}) == 1
    with pytest.raises(ValueError, match="chunk_size"):
        lender.batch_get_scores(asked, chunk_size=ecocode_client.MAX_BATCH + 1)


def test_more_usccs_than_the_server_takes_in_one_call_are_sent_in_chunks_it_accepts(registered, lender):
    many = [uscc(f"91330206{i:09d}") for i in range(1000, 1000 + ecocode_client.MAX_BATCH + 1)]
    # The generated stub alone: the server refuses one call of 10 001.
    with pytest.raises(grpc.RpcError) as refused:
        lender._scores.BatchGetScores(pb.BatchGetScoresRequest(uscc=many), metadata=lender._metadata(None))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    got = lender.batch_get_scores([ACME, *many], chunk_size=ecocode_client.MAX_BATCH)
    assert [s.uscc for s in got.scores] == [ACME]
    assert len(got.not_found) == len(many)


def test_errors_carry_the_status_and_are_not_retried(registered, lender):
    attempts = []
    lender.on_retry = attempts.append
    try:
        with pytest.raises(CallError) as denied:
            list(lender.list_scores(region_prefix=REGION))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED and denied.value.attempts == 1
        assert "bank-a" in denied.value.details()
        with pytest.raises(CallError) as missing:
            lender.get_score(uscc("91330206888888888"))
        assert missing.value.status == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError):
            lender.get_entry(10_000)
    finally:
        lender.on_retry = None
    assert attempts == []


def test_a_deadline_that_passes_ends_the_call_without_a_retry(registered, lender):
    # A watch never ends by itself, so its deadline is what ends it.
    attempts = []
    lender.on_retry = attempts.append
    try:
        changes = lender.watch_codes([ACME], timeout=0.5)
        assert next(changes).uscc == ACME
        with pytest.raises(CallError) as late:
            next(changes)
    finally:
        lender.on_retry = None
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and attempts == []


def test_a_bad_token_is_unauthenticated(server):
    with Client(server.url, token="eco_not-a-token") as stranger:
        with pytest.raises(CallError) as refused:
            stranger.get_checkpoint()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_registry_calls_round_trip(registered, regulator, admin):
    assert regulator.get_enterprise(ACME).name == "Acme Chemicals"
    receipt = regulator.register_monitoring_point(
        "MN-0001", ACME, "DW001", [{"pollutant": "w01018", "limit": 50.0, "unit": "mg/L"}], password="secret-1"
    )
    assert not receipt.duplicate
    point = regulator.get_monitoring_point("MN-0001")
    assert (point.uscc, point.limits[0].pollutant, point.password, point.password_hash) == (ACME, "w01018", "", "")
    with pytest.raises(CallError) as no_gateway:
        admin.get_gateway_figures()
    assert no_gateway.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    closed = PORTFOLIO[-1]
    regulator.update_enterprise(closed, status="CLOSED", reason="ceased operating, test")
    history = regulator.get_enterprise_history(closed)
    assert [pb.EnterpriseStatus.Name(v.state.status) for v in history] == ["ACTIVE", "CLOSED"]
    assert closed not in [s.uscc for s in regulator.list_scores(region_prefix=REGION)]
    assert closed in [s.uscc for s in regulator.list_scores(region_prefix=REGION, include_closed=True)]


def test_score_history_and_inquiries(registered, lender, server):
    history = lender.get_score_history(ACME, from_=YESTERDAY - dt.timedelta(days=2))
    assert [p.points for p in history] == [100, 90]
    with pytest.raises(ValueError, match="time zone"):
        lender.get_score_history(ACME, from_=dt.datetime(2026, 1, 1))
    mine = list(lender.list_inquiries(uscc=ACME, page_size=1))
    assert mine and all(i.principal == "bank-a" for i in mine)
    assert "LA-2026-001" in {i.purpose for i in mine}
    assert [i.at.ToNanoseconds() for i in mine] == sorted((i.at.ToNanoseconds() for i in mine), reverse=True)


def test_watch_codes_sends_the_current_code_then_each_change(registered, lender, regulator):
    watched = PORTFOLIO[1]
    changes = lender.watch_codes([watched])
    first = next(changes)
    assert (first.uscc, first.previous, pb.EcoCode.Name(first.current)) == (watched, 0, "GREEN")
    regulator.append_record(source="beilun-epb", source_record_id="V-2", uscc=watched, kind="veto.crime",
                            occurred_at=YESTERDAY, description="illegal dumping")
    change = next(changes)
    assert (pb.EcoCode.Name(change.previous), pb.EcoCode.Name(change.current)) == ("GREEN", "RED")
    assert change.score.veto
    changes.close()
    with pytest.raises(ValueError, match="1 to 10000"):
        lender.watch_codes([])


def test_ledger_entries_decode_as_ledger_events(registered, lender):
    entries = list(lender.list_entries(0, registered.seq + 1))
    assert [e.seq for e in entries] == list(range(registered.seq + 1))
    event = pb.LedgerEvent.FromString(entries[-1].payload)
    # A committed record: the scoring fields in the hashed payload, the rest
    # in the details, which open its commitment.
    assert event.WhichOneof("event") == "committed_record" and event.committed_record.amount_yuan == 100_000
    assert event.submitted_by == "beilun-epb"
    whole = verify.record(entries[-1].payload, entries[-1].details)
    assert whole.source_record_id == "F-1" and whole.amount_yuan == 100_000
    forged = pb.RecordDetails.FromString(entries[-1].details)
    forged.record = pb.Record(source="beilun-epb", source_record_id="F-2").SerializeToString()
    with pytest.raises(VerificationError, match="commitment"):
        verify.record(entries[-1].payload, forged.SerializeToString())
    one = lender.get_entry(registered.seq)
    assert one.entry_hash == verify.entry_hash(one.seq, one.recorded_at.ToNanoseconds(), one.payload)
    proof = lender.get_inclusion_proof(registered.seq, registered.seq + 1)
    assert proof.tree_size == registered.seq + 1


def test_real_checkpoints_attestations_and_bundles_verify_offline(registered, lender, server):
    key = server.public_key()
    old = lender.checkpoint_covering(registered.seq + 1)
    checkpoint = verify.checkpoint(old.signed_note, key, origin="ecocode.local/ledger")
    assert (checkpoint.tree_size, checkpoint.root, checkpoint.chain) == (old.tree_size, old.root_hash, old.chain_hash)
    assert old.public_key == verify.parse_verifier_key(key).public_key

    attestation = lender.get_attestation(ACME)
    attested = verify.attestation(attestation.signed_note, key)
    score = attestation.score
    assert (attested.uscc, attested.points, attested.grade, attested.code) == (
        ACME, score.points, pb.CreditGrade.Name(score.grade), pb.EcoCode.Name(score.code))
    assert (attested.tree_size, attested.root, attested.model) == (score.tree_size, score.root_hash, score.model_version)
    # The note names the ledger entry holding the model's exact file.
    assert attested.model_entry == score.model_entry_hash and len(attested.model_entry) == 32
    qr = f"http://127.0.0.1:8080/e/{ACME}?att=" + base64.urlsafe_b64encode(attestation.signed_note.encode()).decode().rstrip("=")
    assert verify.attestation(qr, key) == attested
    with pytest.raises(VerificationError, match="does not verify"):
        verify.attestation(attestation.signed_note.replace("points 90", "points 99"), key)

    # A score proof: the bundle `ecocode proof verify` recomputes.
    proof = json.loads(lender.get_score_proof(ACME))
    assert proof["kind"] == "score" and registered.seq in [e["seq"] for e in proof["entries"]]

    inclusion = verify.bundle(lender.inclusion_bundle(registered.seq), key)
    assert inclusion.seq == registered.seq and inclusion.entry_hash == registered.entry_hash
    assert inclusion.event().committed_record.amount_yuan == 100_000
    grown = lender.consistency_bundle(old.signed_note)
    consistency = verify.bundle(grown, key)
    assert consistency.from_size == old.tree_size and consistency.to_size >= old.tree_size
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    name = verify.parse_verifier_key(key).name
    other = verify.VerifierKey(name, stranger, verify.key_id(name, stranger))
    with pytest.raises(VerificationError, match=f"no signature by key {name}"):
        verify.bundle(grown, other)


def test_append_records_streams_a_generator_once_and_names_a_bad_item(registered, regulator):
    def records():
        for i in range(3):
            yield {"source": "beilun-epb", "source_record_id": f"G-{i}", "uscc": PORTFOLIO[2],
                   "kind": "inspection.finding", "occurred_at": YESTERDAY, "description": f"finding {i}"}

    summary = regulator.append_records(records())
    assert (summary.accepted, summary.duplicates) == (3, 0)
    assert summary.checkpoint.tree_size > 0
    again = regulator.append_records(list(records()))
    assert (again.accepted, again.duplicates) == (0, 3)
    with pytest.raises(TypeError, match=r"records\[1\]"):
        regulator.append_records([next(records()), "not a record"])
