"""Lender access grants through the client, against a server run with ``--lender-access granted``."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from ecocode_client import CallError, Client
from conftest import add_principal, start_server, uscc, with_principals

ACME = uscc("91330206739237858")
NEXT_YEAR = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=365)


@pytest.fixture(scope="module")
def granted(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("ecocode-granted")
    tokens = with_principals(data)
    tokens["acme"] = add_principal(data, "acme", "enterprise", ACME)
    running = start_server(data, extra=("--lender-access", "granted"))
    running.tokens = tokens
    yield running
    running.stop()


def test_a_lender_reads_an_enterprise_only_under_its_live_grant(granted):
    with Client(granted.url, token=granted.tokens["regulator"]) as regulator:
        regulator.register_enterprise(ACME, "Acme Chemicals", "330206", "C26")
    with Client(granted.url, token=granted.tokens["lender"], purpose="LA-9") as bank, Client(
        granted.url, token=granted.tokens["acme"]
    ) as acme:
        with pytest.raises(CallError) as refused:
            bank.get_score(ACME)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "ecocode grant add" in refused.value.details()

        grant = acme.grant_access(ACME, "bank-a", "loan_application", NEXT_YEAR, covers=("details", "history"))
        assert grant.status == "live"
        assert bank.get_score(ACME).points == 100
        (held,) = bank.list_grants()
        assert (held.seq, held.grant.expires_at.ToDatetime(tzinfo=dt.timezone.utc)) == (grant.seq, NEXT_YEAR)
        assert [i.grant_seq for i in acme.list_inquiries(uscc=ACME)] == [grant.seq]

        assert acme.revoke_access(ACME, grant.seq).status == "revoked"
        with pytest.raises(CallError):
            bank.get_score(ACME)
