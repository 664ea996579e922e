"""The exceptions of ecocode_client: what a verification or a call can fail with."""

from __future__ import annotations

import grpc


class VerificationError(ValueError):
    """A checkpoint, attestation, key or proof bundle is malformed or does not verify.

    The message names what is wrong (which note, which line, which field, which
    proof), never only "invalid".
    """


class CallError(grpc.RpcError):
    """A call to the service failed with a gRPC status.

    ``status`` is the ``grpc.StatusCode`` (``PERMISSION_DENIED``,
    ``NOT_FOUND``, ...; docs/api.md lists when each is answered), ``message``
    the server's message and ``attempts`` how many times the call was tried
    (more than one when ``UNAVAILABLE`` was retried). ``code()`` and
    ``details()`` answer as on grpc's own errors, so ``except grpc.RpcError``
    catches it too.
    """

    def __init__(self, method: str, status: grpc.StatusCode, message: str, attempts: int = 1) -> None:
        self.method = method
        self.status = status
        self.message = message
        self.attempts = attempts
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{method}: {status.name}: {message}{tried}")

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.message
