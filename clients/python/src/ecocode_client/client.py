"""A small typed client for the ``ecocode.v1`` gRPC API: one method per RPC, in snake case.

What it adds to the generated stubs, and nothing more:

* the connection: ``http://`` or a bare ``host:port`` is plaintext,
  ``https://`` is TLS (``ca`` for a private CA), ``cert``/``key`` add a
  client certificate for servers that require mutual TLS;
* the bearer token on every call, and ``x-ecocode-purpose`` on reads;
* a deadline on every unary call, and bounded retries of ``UNAVAILABLE``
  with exponential back-off (safe: every write is idempotent by its ledger
  key, so a re-sent append is answered as a duplicate);
* whole results instead of pages: ``list_scores`` and ``list_inquiries``
  iterate over every page, ``batch_get_scores`` splits a portfolio into
  chunks the server accepts, all evaluated at one instant;
* failures as :class:`ecocode_client.CallError` with the status and message.

Messages are the generated ``ecocode_client.v1.ecocode_pb2`` classes, so a
field added to the proto is there after a rebuild without a change here.
"""

from __future__ import annotations

import datetime as _dt
import json
import base64
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import grpc
from google.protobuf import timestamp_pb2

from .errors import CallError
from .v1 import ecocode_pb2 as pb
from .v1 import ecocode_pb2_grpc as pb_grpc

__all__ = ["BatchScores", "Client", "MAX_BATCH", "RetryEvent"]

#: The most USCCs ``BatchGetScores`` and ``WatchCodes`` accept in one call (docs/api.md, Limits).
MAX_BATCH = 10_000

# A chunk of 1 000 scores is about 1.5 MB (a few dozen reasons each) and at
# most 20 MB (200 reasons each), inside the receive limit below.
_DEFAULT_CHUNK = 1_000
_MAX_RECEIVE = 64 * 1024 * 1024

PathOrPem = Union[str, bytes, "os.PathLike[str]"]
Time = Union[_dt.datetime, timestamp_pb2.Timestamp]


@dataclass(frozen=True)
class RetryEvent:
    """Passed to ``on_retry`` before each back-off: which call, which attempt failed, the wait before the next."""

    method: str
    attempt: int
    status: grpc.StatusCode
    message: str
    delay: float


@dataclass
class BatchScores:
    """The answer of :meth:`Client.batch_get_scores` over every chunk."""

    scores: "List[pb.Score]"
    not_found: List[str]


def _pem(value: Optional[PathOrPem], what: str) -> Optional[bytes]:
    """PEM bytes as given, or read from a path."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what}: cannot read {os.fspath(value)!r}: {e.strerror}") from None


def _timestamp(value: Optional[Time], what: str) -> Optional[timestamp_pb2.Timestamp]:
    if value is None or isinstance(value, timestamp_pb2.Timestamp):
        return value
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"{what}: expected a datetime or a Timestamp, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError(f"{what}: the datetime has no time zone; use e.g. datetime(..., tzinfo=timezone.utc)")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(_dt.timezone.utc))
    return ts


def _enum(enum: Any, value: Union[str, int]) -> Any:
    """An enum value from its name (``"RED"``) or number."""
    if isinstance(value, str):
        try:
            return enum.Value(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {', '.join(enum.keys())}") from None
    return int(value)


def _message(cls: Any, value: Any, what: str) -> Any:
    """``value`` as a message of ``cls``: the message itself, or a dict of its fields."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        fields = dict(value)
        for name, field in cls.DESCRIPTOR.fields_by_name.items():
            if name in fields and field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
                fields[name] = _timestamp(fields[name], f"{what}.{name}")
        return cls(**fields)
    raise TypeError(f"{what}: expected {cls.DESCRIPTOR.full_name} or a dict of its fields, got {type(value).__name__}")


def _target(server: str) -> Tuple[str, bool]:
    """``(host:port, tls)`` of ``http://HOST:PORT``, ``https://HOST:PORT`` or ``HOST:PORT``."""
    if "://" not in server:
        return server, False
    url = urlsplit(server)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"server {server!r}: expected http://HOST:PORT, https://HOST:PORT or HOST:PORT")
    if url.path not in ("", "/") or url.query:
        raise ValueError(f"server {server!r}: a gRPC server is HOST:PORT, without a path")
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{host}:{port}", tls


class Client:
    """A connection to one ecocode server.

    ``Client("https://ecocode.example:50051", token="eco_...", ca="ca.pem")``;
    without ``token`` the environment's ``ECOCODE_TOKEN`` is used, as by the
    ``ecocode`` CLI. ``timeout`` is each unary call's deadline in seconds;
    ``retries`` is how many times a call answered ``UNAVAILABLE`` (server
    restarting, not yet listening, shutting down) is tried again, waiting
    ``backoff`` seconds, doubled each time up to ``max_backoff``, with
    jitter. A call therefore gives up after at most ``retries + 1`` attempts.
    ``purpose`` is sent as ``x-ecocode-purpose`` with every call (lenders'
    and regulators' reads are recorded with it); each read method takes its
    own ``purpose`` too. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        server: str = "http://127.0.0.1:50051",
        token: Optional[str] = None,
        *,
        ca: Optional[PathOrPem] = None,
        cert: Optional[PathOrPem] = None,
        key: Optional[PathOrPem] = None,
        timeout: Optional[float] = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        purpose: Optional[str] = None,
        on_retry: Optional[Callable[[RetryEvent], None]] = None,
        options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        if token is None:
            token = os.environ.get("ECOCODE_TOKEN")
        if not token:
            raise ValueError("token: pass the bearer token from `ecocode principal add` (or set ECOCODE_TOKEN)")
        if (cert is None) != (key is None):
            raise ValueError("cert and key: a client certificate needs both (mutual TLS)")
        if retries < 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError("retries, backoff, max_backoff: need retries >= 0 and 0 <= backoff <= max_backoff")
        target, tls = _target(server)
        if not tls and (ca is not None or cert is not None):
            raise ValueError(f"ca, cert, key: TLS options need an https:// server, not {server!r}")
        channel_options = [
            ("grpc.max_receive_message_length", _MAX_RECEIVE),
            # Retries are ours (bounded, logged through on_retry); reconnect
            # quickly so a retry after a restart finds the server.
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(max(max_backoff, 0.1) * 1000)),
            *options,
        ]
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(ca, "ca"),
                private_key=_pem(key, "key"),
                certificate_chain=_pem(cert, "cert"),
            )
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        else:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        self.server = server
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.purpose = purpose
        self.on_retry = on_retry
        self._registry = pb_grpc.RegistryStub(self._channel)
        self._ingest = pb_grpc.IngestStub(self._channel)
        self._scores = pb_grpc.ScoresStub(self._channel)
        self._ledger = pb_grpc.LedgerStub(self._channel)
        self._consent = pb_grpc.ConsentStub(self._channel)

    # ------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Closes the connection; streams still open end with ``CANCELLED``."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    def _metadata(self, purpose: Optional[str]) -> List[Tuple[str, str]]:
        metadata = [("authorization", f"Bearer {self._token}")]
        purpose = self.purpose if purpose is None else purpose
        if purpose:
            metadata.append(("x-ecocode-purpose", purpose))
        return metadata

    def _delay(self, attempt: int) -> float:
        # Full jitter: clients retrying after one restart do not come back in step.
        return random.uniform(self.backoff / 2, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    def _retry_or_raise(self, name: str, error: grpc.RpcError, attempt: int, retryable: bool) -> None:
        status = error.code()
        if not retryable or status != grpc.StatusCode.UNAVAILABLE or attempt > self.retries:
            raise CallError(name, status, error.details() or "", attempt) from None
        delay = self._delay(attempt)
        if self.on_retry is not None:
            self.on_retry(RetryEvent(name, attempt, status, error.details() or "", delay))
        time.sleep(delay)

    def _unary(self, name: str, rpc: Any, request: Any, purpose: Optional[str] = None, retryable: bool = True, timeout: Optional[float] = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return rpc(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata(purpose))
            except grpc.RpcError as error:
                self._retry_or_raise(name, error, attempt, retryable)

    def _stream(self, name: str, rpc: Any, request: Any, purpose: Optional[str] = None, timeout: Optional[float] = None) -> Iterator[Any]:
        """A server stream; ``UNAVAILABLE`` before its first message is retried like a unary call."""
        attempt = 0
        while True:
            attempt += 1
            call = rpc(request, timeout=timeout, metadata=self._metadata(purpose))
            received = False
            try:
                for message in call:
                    received = True
                    yield message
                return
            except grpc.RpcError as error:
                self._retry_or_raise(name, error, attempt, retryable=not received)
            finally:
                call.cancel()

    # ------------------------------------------------------------ Registry

    def register_enterprise(self, uscc: str, name: str, region_code: str, industry_code: str = "") -> "pb.Receipt":
        """``Registry.RegisterEnterprise``: appends a registration; the same one again is a duplicate."""
        request = pb.Enterprise(uscc=uscc, name=name, region_code=region_code, industry_code=industry_code)
        return self._unary("RegisterEnterprise", self._registry.RegisterEnterprise, request)

    def get_enterprise(self, uscc: str) -> "pb.Enterprise":
        """``Registry.GetEnterprise``."""
        return self._unary("GetEnterprise", self._registry.GetEnterprise, pb.GetEnterpriseRequest(uscc=uscc))

    def update_enterprise(
        self,
        uscc: str,
        *,
        reason: str,
        name: str = "",
        region_code: str = "",
        industry_code: str = "",
        status: Union[str, int] = 0,
        merged_into: str = "",
    ) -> "pb.Receipt":
        """``Registry.UpdateEnterprise``: empty fields stay unchanged; ``status`` is e.g. ``"CLOSED"``."""
        request = pb.EnterpriseUpdate(
            uscc=uscc,
            name=name,
            region_code=region_code,
            industry_code=industry_code,
            status=_enum(pb.EnterpriseStatus, status),
            merged_into=merged_into,
            reason=reason,
        )
        return self._unary("UpdateEnterprise", self._registry.UpdateEnterprise, request)

    def get_enterprise_history(self, uscc: str) -> "List[pb.EnterpriseVersion]":
        """``Registry.GetEnterpriseHistory``: every state, oldest first (``EnterpriseVersion``)."""
        request = pb.GetEnterpriseRequest(uscc=uscc)
        return list(self._unary("GetEnterpriseHistory", self._registry.GetEnterpriseHistory, request).versions)

    def register_monitoring_point(
        self, mn: str, uscc: str, outlet: str, limits: Iterable[Any], password: str
    ) -> "pb.Receipt":
        """``Registry.RegisterMonitoringPoint``; ``limits`` are ``PollutantLimit`` messages or dicts of their fields."""
        request = pb.MonitoringPoint(
            mn=mn,
            uscc=uscc,
            outlet=outlet,
            limits=[_message(pb.PollutantLimit, limit, "limits") for limit in limits],
            password=password,
        )
        return self._unary("RegisterMonitoringPoint", self._registry.RegisterMonitoringPoint, request)

    def get_monitoring_point(self, mn: str) -> "pb.MonitoringPoint":
        """``Registry.GetMonitoringPoint``."""
        request = pb.GetMonitoringPointRequest(mn=mn)
        return self._unary("GetMonitoringPoint", self._registry.GetMonitoringPoint, request)

    def get_gateway_figures(self, mn: str = "") -> "pb.GatewayFigures":
        """``Registry.GetGatewayFigures``: the HJ 212 gateway's figures (one device, or all the caller may see)."""
        request = pb.GetGatewayFiguresRequest(mn=mn)
        return self._unary("GetGatewayFigures", self._registry.GetGatewayFigures, request)

    # ------------------------------------------------------------ Ingest

    def append_record(self, record: Any = None, **fields: Any) -> "pb.Receipt":
        """``Ingest.AppendRecord``: a ``Record``, a dict, or its fields as keywords (``occurred_at`` a datetime)."""
        request = _message(pb.Record, fields if record is None else record, "record")
        return self._unary("AppendRecord", self._ingest.AppendRecord, request)

    def append_records(self, records: Iterable[Any], timeout: Optional[float] = None) -> "pb.AppendRecordsResponse":
        """``Ingest.AppendRecords``: streams ``records`` (messages or dicts) and returns the summary.

        A list or tuple is re-sent whole on ``UNAVAILABLE`` (what was
        committed comes back as duplicates); any other iterable is streamed
        once, without retries, so a generator is never read twice. A stream
        has no deadline unless ``timeout`` is given (a long import may take
        minutes; the server ends a stream that stops sending).
        """
        retryable = isinstance(records, (list, tuple))
        if retryable:
            # Converted before sending, so a bad item raises here, by index.
            records = [_message(pb.Record, record, f"records[{i}]") for i, record in enumerate(records)]

        def requests() -> Iterator[Any]:
            for i, record in enumerate(records):
                yield _message(pb.Record, record, f"records[{i}]")

        attempt = 0
        while True:
            attempt += 1
            try:
                return self._ingest.AppendRecords(requests(), timeout=timeout, metadata=self._metadata(None))
            except grpc.RpcError as error:
                self._retry_or_raise("AppendRecords", error, attempt, retryable)

    # ------------------------------------------------------------ Scores

    def get_score(self, uscc: str, as_of: Optional[Time] = None, tree_size: int = 0, purpose: Optional[str] = None) -> "pb.Score":
        """``Scores.GetScore``: the score now (or at ``as_of``, over the first ``tree_size`` entries)."""
        request = pb.GetScoreRequest(uscc=uscc, as_of=_timestamp(as_of, "as_of"), tree_size=tree_size)
        return self._unary("GetScore", self._scores.GetScore, request, purpose)

    def batch_get_scores(
        self,
        usccs: Iterable[str],
        as_of: Optional[Time] = None,
        chunk_size: int = _DEFAULT_CHUNK,
        purpose: Optional[str] = None,
    ) -> BatchScores:
        """``Scores.BatchGetScores`` over a portfolio of any size, in chunks of ``chunk_size`` (at most 10 000).

        Duplicates are asked once. Every chunk is evaluated at one instant:
        ``as_of`` if given, else the instant the server used for the first
        chunk that found a score.
        """
        if not 1 <= chunk_size <= MAX_BATCH:
            raise ValueError(f"chunk_size: must be 1 to {MAX_BATCH} (the server's limit per call)")
        unique = list(dict.fromkeys(usccs))
        pinned = _timestamp(as_of, "as_of")
        out = BatchScores(scores=[], not_found=[])
        for start in range(0, len(unique), chunk_size):
            request = pb.BatchGetScoresRequest(uscc=unique[start : start + chunk_size], as_of=pinned)
            answer = self._unary("BatchGetScores", self._scores.BatchGetScores, request, purpose)
            out.scores.extend(answer.scores)
            out.not_found.extend(answer.not_found)
            if pinned is None and answer.scores:
                pinned = answer.scores[0].as_of
        return out

    def list_scores(
        self,
        region_prefix: str = "",
        industry_prefix: str = "",
        codes: Iterable[Union[str, int]] = (),
        include_closed: bool = False,
        page_size: int = 0,
        **filters: Any,
    ) -> "Iterator[pb.Score]":
        """``Scores.ListScores``, every page: yields each ``Score`` in USCC order.

        ``codes`` are colours such as ``"RED"``; empty means all. Any other
        field of ``ListScoresRequest`` (a filter added to the proto later)
        can be given by name in ``filters``; enum values by name.
        """
        token = ""
        wanted = [_enum(pb.EcoCode, c) for c in codes]
        if "page_token" in filters:
            raise ValueError("page_token: list_scores walks every page itself")
        while True:
            request = pb.ListScoresRequest(
                region_prefix=region_prefix,
                industry_prefix=industry_prefix,
                codes=wanted,
                page_size=page_size,
                page_token=token,
                include_closed=include_closed,
                **filters,
            )
            page = self._unary("ListScores", self._scores.ListScores, request)
            yield from page.scores
            token = page.next_page_token
            if not token:
                return

    def get_score_history(
        self, uscc: str, from_: Optional[Time] = None, to: Optional[Time] = None, purpose: Optional[str] = None
    ) -> "List[pb.Score]":
        """``Scores.GetScoreHistory``: the score at ``from_`` and at each change up to ``to``."""
        # `from` is a Python keyword, hence the dict.
        request = pb.GetScoreHistoryRequest(**{"uscc": uscc, "from": _timestamp(from_, "from_"), "to": _timestamp(to, "to")})
        return list(self._unary("GetScoreHistory", self._scores.GetScoreHistory, request, purpose).points)

    def watch_codes(
        self, usccs: Iterable[str], purpose: Optional[str] = None, timeout: Optional[float] = None
    ) -> "Iterator[pb.CodeChange]":
        """``Scores.WatchCodes``: yields ``CodeChange`` messages until the caller stops iterating.

        First the current code of each enterprise (``previous`` unspecified),
        then every change of colour. An ``UNAVAILABLE`` after the first
        message (server shutdown) raises :class:`CallError`: watch again.
        With ``timeout`` the watch ends with ``DEADLINE_EXCEEDED`` after
        that many seconds; without, it runs until closed.
        """
        request = pb.WatchCodesRequest(uscc=list(usccs))
        if not 1 <= len(request.uscc) <= MAX_BATCH:
            raise ValueError(f"usccs: watch 1 to {MAX_BATCH} enterprises per call")
        return self._stream("WatchCodes", self._scores.WatchCodes, request, purpose, timeout)

    def get_attestation(self, uscc: str, as_of: Optional[Time] = None, tree_size: int = 0, purpose: Optional[str] = None) -> "pb.Attestation":
        """``Scores.GetAttestation``: the score with a signed note to file (verify it with ``verify.attestation``)."""
        request = pb.GetAttestationRequest(uscc=uscc, as_of=_timestamp(as_of, "as_of"), tree_size=tree_size)
        return self._unary("GetAttestation", self._scores.GetAttestation, request, purpose)

    def get_score_proof(
        self, uscc: str, tree_size: int = 0, as_of: Optional[Time] = None, purpose: Optional[str] = None
    ) -> bytes:
        """``Scores.GetScoreProof``: the score proof bundle (JSON bytes, ``"kind": "score"``), its chunks joined.

        Verify it with ``ecocode proof verify FILE --public-key KEY``, which
        recomputes the score; this client does not recompute scores itself.
        """
        request = pb.GetScoreProofRequest(uscc=uscc, tree_size=tree_size, as_of=_timestamp(as_of, "as_of"))
        return b"".join(chunk.bundle for chunk in self._stream("GetScoreProof", self._scores.GetScoreProof, request, purpose))

    def list_inquiries(
        self, uscc: str = "", from_: Optional[Time] = None, to: Optional[Time] = None, page_size: int = 0
    ) -> "Iterator[pb.Inquiry]":
        """``Scores.ListInquiries``, every page: who read whose score, newest first."""
        token = ""
        while True:
            fields = {"uscc": uscc, "from": _timestamp(from_, "from_"), "to": _timestamp(to, "to")}
            request = pb.ListInquiriesRequest(**fields, page_size=page_size, page_token=token)
            page = self._unary("ListInquiries", self._scores.ListInquiries, request)
            yield from page.inquiries
            token = page.next_page_token
            if not token:
                return

    # ------------------------------------------------------------ Consent

    def grant_access(
        self,
        uscc: str,
        lender: str,
        purpose: str,
        expires_at: Time,
        covers: Iterable[str] = ("details",),
        starts_at: Optional[Time] = None,
    ) -> "pb.Grant":
        """``Consent.GrantAccess`` (the enterprise itself): ``lender`` may read its details until ``expires_at``.

        The same grant sent again is the same ledger entry, so a retry is safe.
        """
        grant = pb.AccessGrant(
            uscc=uscc,
            lender=lender,
            purpose=purpose,
            covers=list(covers),
            starts_at=_timestamp(starts_at, "starts_at"),
            expires_at=_timestamp(expires_at, "expires_at"),
        )
        return self._unary("GrantAccess", self._consent.GrantAccess, pb.GrantAccessRequest(grant=grant))

    def revoke_access(self, uscc: str, grant_seq: int) -> "pb.Grant":
        """``Consent.RevokeAccess`` (the enterprise itself): ends grant ``grant_seq`` now."""
        request = pb.RevokeAccessRequest(uscc=uscc, grant_seq=grant_seq)
        return self._unary("RevokeAccess", self._consent.RevokeAccess, request, retryable=False)

    def list_grants(self, uscc: str = "") -> "List[pb.Grant]":
        """``Consent.ListGrants``: the grants the caller may see (a lender: those naming it), newest first."""
        return list(self._unary("ListGrants", self._consent.ListGrants, pb.ListGrantsRequest(uscc=uscc)).grants)

    # ------------------------------------------------------------ Ledger

    def get_checkpoint(self) -> "pb.Checkpoint":
        """``Ledger.GetCheckpoint``: the latest signed checkpoint (verify ``signed_note`` with ``verify.checkpoint``)."""
        return self._unary("GetCheckpoint", self._ledger.GetCheckpoint, pb.GetCheckpointRequest())

    def get_entry(self, seq: int) -> "pb.Entry":
        """``Ledger.GetEntry``: one entry; decode ``payload`` with ``LedgerEvent``."""
        return self._unary("GetEntry", self._ledger.GetEntry, pb.GetEntryRequest(seq=seq))

    def list_entries(self, from_seq: int = 0, to_seq: int = 0, timeout: Optional[float] = None) -> "Iterator[pb.Entry]":
        """``Ledger.ListEntries``: entries ``from_seq <= seq < to_seq`` (0: the current size), in order.

        No deadline unless ``timeout`` is given: a whole ledger may take a while.
        """
        request = pb.ListEntriesRequest(from_seq=from_seq, to_seq=to_seq)
        return self._stream("ListEntries", self._ledger.ListEntries, request, timeout=timeout)

    def get_inclusion_proof(self, seq: int, tree_size: int = 0) -> "pb.InclusionProof":
        """``Ledger.GetInclusionProof``: the audit path of entry ``seq`` in the tree of ``tree_size`` (0: current)."""
        request = pb.GetInclusionProofRequest(seq=seq, tree_size=tree_size)
        return self._unary("GetInclusionProof", self._ledger.GetInclusionProof, request)

    def get_consistency_proof(self, from_size: int, to_size: int = 0) -> "pb.ConsistencyProof":
        """``Ledger.GetConsistencyProof``: the tree of ``from_size`` is a prefix of the tree of ``to_size`` (0: current)."""
        request = pb.GetConsistencyProofRequest(from_size=from_size, to_size=to_size)
        return self._unary("GetConsistencyProof", self._ledger.GetConsistencyProof, request)

    # ------------------------------------------------------------ evidence files

    def checkpoint_covering(self, size: int, wait: float = 10.0) -> "pb.Checkpoint":
        """The latest signed checkpoint once it holds ``size`` entries.

        The server signs a new head at most once per interval (1 s by
        default), so a very new entry may need a moment; this asks again
        every quarter second for at most ``wait`` seconds.
        """
        give_up = time.monotonic() + wait
        while True:
            checkpoint = self.get_checkpoint()
            if checkpoint.tree_size >= size:
                return checkpoint
            if time.monotonic() >= give_up:
                raise CallError(
                    "GetCheckpoint",
                    grpc.StatusCode.UNAVAILABLE,
                    f"the latest signed checkpoint holds {checkpoint.tree_size} entries, not yet {size}; try again",
                )
            time.sleep(0.25)

    def inclusion_bundle(self, seq: int) -> str:
        """A proof bundle (JSON text, as ``ecocode proof inclusion`` writes it) for entry ``seq``.

        File it with the loan; :func:`ecocode_client.verify.bundle` checks it offline.
        """
        checkpoint = self.checkpoint_covering(seq + 1)
        entry = self.get_entry(seq)
        proof = self.get_inclusion_proof(seq, checkpoint.tree_size)
        recorded_at_ns = entry.recorded_at.seconds * 1_000_000_000 + entry.recorded_at.nanos
        return _bundle_json(
            {
                "kind": "inclusion",
                "checkpoint": checkpoint.signed_note,
                "seq": seq,
                "recorded_at_ns": recorded_at_ns,
                "payload": base64.b64encode(entry.payload).decode(),
                "hashes": [base64.b64encode(h).decode() for h in proof.hashes],
            }
        )

    def consistency_bundle(self, old_checkpoint_note: str) -> str:
        """A proof bundle (JSON text, as ``ecocode proof consistency`` writes it) from an older checkpoint to the latest."""
        lines = old_checkpoint_note.split("\n")
        if len(lines) < 2 or not lines[1].isdigit():
            raise ValueError("old_checkpoint_note: not a checkpoint note (its second line is the tree size)")
        checkpoint = self.get_checkpoint()
        proof = self.get_consistency_proof(int(lines[1]), checkpoint.tree_size)
        return _bundle_json(
            {
                "kind": "consistency",
                "old_checkpoint": old_checkpoint_note,
                "checkpoint": checkpoint.signed_note,
                "hashes": [base64.b64encode(h).decode() for h in proof.hashes],
            }
        )


def _bundle_json(bundle: Dict[str, Any]) -> str:
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"
