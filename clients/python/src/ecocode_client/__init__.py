"""ecocode_client: call ecocode from Python and verify what it signed, offline.

* :class:`Client` - one method per RPC of ``ecocode.v1`` (``get_score``,
  ``batch_get_scores``, ``list_scores``, ``get_checkpoint``, ...), with
  token, TLS and mutual TLS, deadlines and bounded retries;
* :mod:`ecocode_client.verify` - checkpoints, score attestations (also the
  QR code's text) and proof bundles, checked against the service's verifier
  key without a server;
* :mod:`ecocode_client.pb` - the generated ``ecocode.v1`` messages and enums
  (``pb.Score``, ``pb.EcoCode.Name(...)``).
"""

from . import verify
from .client import MAX_BATCH, BatchScores, Client, RetryEvent
from .errors import CallError, VerificationError
from .v1 import ecocode_pb2 as pb

__all__ = [
    "MAX_BATCH",
    "BatchScores",
    "CallError",
    "Client",
    "RetryEvent",
    "VerificationError",
    "pb",
    "verify",
]
__version__ = "0.1.0"
