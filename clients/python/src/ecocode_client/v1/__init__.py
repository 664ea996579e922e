"""The generated messages and stubs of ``ecocode.v1``.

``ecocode_pb2`` (messages, enums) and ``ecocode_pb2_grpc`` (service stubs)
are generated from ``proto/ecocode/v1/ecocode.proto`` when the package is
built (``setup.py``), so they always match the proto the wheel was built
from; they are not in the repository.
"""

from . import ecocode_pb2, ecocode_pb2_grpc

__all__ = ["ecocode_pb2", "ecocode_pb2_grpc"]
