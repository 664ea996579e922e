"""Connections: retries of UNAVAILABLE (bounded), TLS with a private CA, and mutual TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ecocode_client import CallError, Client
from conftest import add_principal, start_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_call_to_a_server_not_yet_listening_is_retried_until_it_listens(tmp_path):
    data = tmp_path / "data"
    token = add_principal(data, "ops", "admin")
    port = free_port()
    retried, servers = [], []

    def start_on_first_retry(event):
        retried.append(event)
        if not servers:
            # The first attempt found nothing listening; start the server on
            # that port now. The client's next attempts must find it.
            servers.append(start_server(data, listen=f"127.0.0.1:{port}"))

    try:
        with Client(f"127.0.0.1:{port}", token=token, retries=50, backoff=0.05, max_backoff=0.2,
                    on_retry=start_on_first_retry) as client:
            checkpoint = client.get_checkpoint()
    finally:
        for server in servers:
            server.stop()
    # Answered (its size depends on whether the timer sealed the model entry yet).
    assert servers and len(checkpoint.public_key) == 32
    assert retried[0].status == grpc.StatusCode.UNAVAILABLE and retried[0].method == "GetCheckpoint"
    assert [e.attempt for e in retried] == list(range(1, len(retried) + 1))


def test_retries_are_bounded_and_back_off(tmp_path):
    retried = []
    with Client(f"http://127.0.0.1:{free_port()}", token="eco_x", retries=3, backoff=0.01, max_backoff=0.04,
                on_retry=retried.append) as client:
        with pytest.raises(CallError) as gave_up:
            client.get_score("91330206739237858W")
    assert gave_up.value.code() == grpc.StatusCode.UNAVAILABLE and gave_up.value.attempts == 4
    assert [e.attempt for e in retried] == [1, 2, 3]
    assert all(0.005 <= e.delay <= 0.04 for e in retried)
    assert "after 4 attempts" in str(gave_up.value)
    # A stream that never delivered a message is retried the same way.
    retried.clear()
    with Client(f"http://127.0.0.1:{free_port()}", token="eco_x", retries=2, backoff=0.01, max_backoff=0.02,
                on_retry=retried.append) as client:
        with pytest.raises(CallError) as stream_gave_up:
            list(client.list_entries())
    assert stream_gave_up.value.attempts == 3 and [e.method for e in retried] == ["ListEntries"] * 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(server="http://h:1", ca=b"pem"), "need an https:// server"),
        (dict(server="https://h:1", cert=b"pem"), "needs both"),
        (dict(server="ftp://h:1"), "expected http://"),
        (dict(server="http://h:1/path"), "without a path"),
        (dict(server="h:1", token=""), "token"),
    ],
)
def test_connection_options_are_checked_before_connecting(kwargs, message):
    kwargs.setdefault("token", "eco_x")
    with pytest.raises(ValueError, match=message):
        Client(**kwargs)


class Authority:
    """A private CA that issues server and client certificates (P-256)."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(subject, subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @staticmethod
    def _builder(subject, issuer, public_key):
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    def issue(self, tmp, name: str, server: bool):
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return cert_path, key_path

    def write(self, path):
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


def test_tls_with_a_private_ca_and_mutual_tls(tmp_path):
    servers_ca, clients_ca, stranger_ca = Authority("servers"), Authority("clients"), Authority("stranger")
    server_cert, server_key = servers_ca.issue(tmp_path, "server", server=True)
    client_cert, client_key = clients_ca.issue(tmp_path, "bank-a", server=False)
    ca = servers_ca.write(tmp_path / "servers-ca.pem")
    data = tmp_path / "data"
    token = add_principal(data, "bank-a", "lender")
    extra = ("--tls-cert", str(server_cert), "--tls-key", str(server_key),
             "--client-ca", str(clients_ca.write(tmp_path / "clients-ca.pem")))
    server = start_server(data, extra=extra)
    try:
        assert server.url.startswith("https://")
        with Client(server.url, token=token, ca=ca, cert=client_cert, key=client_key) as client:
            assert len(client.get_checkpoint().public_key) == 32
        # The same with PEM bytes instead of paths.
        with Client(server.url, token=token, ca=ca.read_bytes(), cert=client_cert.read_bytes(),
                    key=client_key.read_bytes()) as client:
            assert len(client.get_checkpoint().public_key) == 32
        # Without a client certificate the handshake is refused.
        with Client(server.url, token=token, ca=ca, retries=0) as client:
            with pytest.raises(CallError) as refused:
                client.get_checkpoint()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # A server certificate of another CA is not trusted.
        with Client(server.url, token=token, ca=stranger_ca.write(tmp_path / "stranger.pem"), cert=client_cert,
                    key=client_key, retries=0) as client:
            with pytest.raises(CallError) as untrusted:
                client.get_checkpoint()
            assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
