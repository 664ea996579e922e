"""Fixtures: a real ``ecocode serve`` process on 127.0.0.1:0 over a temporary data directory.

The binary is ``$ECOCODE_BIN`` or ``target/debug/ecocode`` of the repository
(``cargo build --bin ecocode``; CI builds it before running these tests). A
missing binary fails the tests: it never skips them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def ecocode_bin() -> str:
    path = Path(os.environ.get("ECOCODE_BIN", REPO / "target" / "debug" / "ecocode"))
    if not path.is_file():
        pytest.fail(f"no ecocode binary at {path}: run `cargo build --bin ecocode` or set ECOCODE_BIN", pytrace=False)
    return str(path)


def uscc(body17: str) -> str:
    """A valid USCC: ``body17`` plus its GB 32100 check character (as the server computes it)."""
    weight, total = 1, 0
    for ch in body17:
        total += ALPHABET.index(ch) * weight
        weight = weight * 3 % 31
    return body17 + ALPHABET[(31 - total % 31) % 31]


def cli(*args: str) -> str:
    """Runs an ``ecocode`` command to completion and returns its stdout."""
    done = subprocess.run([ecocode_bin(), *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"ecocode {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@dataclass
class Server:
    """A running ``ecocode serve`` with its data directory, tokens and verifier key."""

    data: Path
    process: subprocess.Popen
    address: str
    tokens: Dict[str, str] = field(default_factory=dict)
    stderr: List[str] = field(default_factory=list)
    http_address: Optional[str] = None

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.process.args else "http"
        return f"{scheme}://{self.address}"

    def public_key(self) -> str:
        return cli("key", "show", "--data", str(self.data)).strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def add_principal(data: Path, name: str, role: str, scope: Optional[str] = None) -> str:
    args = ["principal", "add", "--data", str(data), "--name", name, "--role", role]
    if scope:
        args += ["--scope", scope]
    return cli(*args).strip().splitlines()[-1]


def start_server(data: Path, listen: str = "127.0.0.1:0", extra: tuple = (), http: bool = False) -> Server:
    """Starts ``ecocode serve`` and returns once it prints the address it listens on.

    With ``http`` the web page listens too, on a free port of 127.0.0.1
    (``Server.http_address``); otherwise it is off. These tests are about the
    client's reads, not about lender access grants (``test_consent.py`` and
    ``tests/it/consent.rs`` test them), so the lender
    reads under ``--lender-access open`` unless ``extra`` says otherwise
    (``test_consent.py`` runs ``granted``).
    """
    data.mkdir(parents=True, exist_ok=True)
    args = [
        ecocode_bin(),
        "serve",
        "--data",
        str(data),
        "--listen",
        listen,
        "--http-listen",
        "127.0.0.1:0" if http else "off",
        "--checkpoint-interval-ms",
        "50",
        *(() if "--lender-access" in extra else ("--lender-access", "open")),
        *extra,
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: List[str] = []
    address = None
    http_address = None
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        if line.startswith("web page on http://"):
            http_address = line[len("web page on http://") :].split("/", 1)[0]
        if line.startswith("ecocode listening on "):
            address = line[len("ecocode listening on ") :].split()[0]
            break
    if address is None:
        process.wait(timeout=30)
        raise AssertionError("ecocode serve exited before listening:\n" + "".join(lines))
    server = Server(data=data, process=process, address=address, stderr=lines, http_address=http_address)
    # Keep reading stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    return server


def with_principals(data: Path) -> Dict[str, str]:
    return {
        "admin": add_principal(data, "ops", "admin"),
        "regulator": add_principal(data, "beilun-epb", "regulator", "330206"),
        "lender": add_principal(data, "bank-a", "lender"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One server per test module, with an admin, a regulator (330206) and a lender."""
    data = tmp_path_factory.mktemp("ecocode-data")
    tokens = with_principals(data)
    running = start_server(data)
    running.tokens = tokens
    yield running
    running.stop()
