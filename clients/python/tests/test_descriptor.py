"""The installed stubs are generated from proto/ as it is now: a stale package fails here."""

from __future__ import annotations

from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

import ecocode_client
from ecocode_client.v1 import ecocode_pb2, ecocode_pb2_grpc
from conftest import REPO

PROTO_ROOT = REPO / "proto"
PROTO_FILE = "ecocode/v1/ecocode.proto"


def descriptor_from_proto(tmp: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp / "ecocode.binpb"
    includes = Path(grpc_tools.__file__).resolve().parent / "_proto"
    status = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{includes}", f"--descriptor_set_out={out}", PROTO_FILE])
    assert status == 0, "protoc failed on proto/ecocode/v1/ecocode.proto"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def walk(messages):
    for message in messages:
        yield message
        yield from walk(message.nested_type)


def test_the_installed_descriptor_equals_proto_byte_for_byte(tmp_path):
    fresh = descriptor_from_proto(tmp_path)
    (file,) = fresh.file
    assert file.name == PROTO_FILE
    # protoc fills in each field's json_name in a descriptor set; the Python
    # generator embeds the descriptor without them (FileDescriptor::CopyTo).
    for message in walk(file.message_type):
        for field in message.field:
            field.ClearField("json_name")
    # serialized_pb is the FileDescriptorProto the package was generated
    # from; any change to proto/ since the package was built shows here.
    assert ecocode_pb2.DESCRIPTOR.serialized_pb == file.SerializeToString(), (
        "the installed ecocode_client was built from another proto/ecocode/v1/ecocode.proto: "
        "reinstall it (pip install ./clients/python)"
    )


def test_every_service_method_of_the_proto_has_a_client_method():
    missing = []
    for service in ecocode_pb2.DESCRIPTOR.services_by_name.values():
        assert hasattr(ecocode_pb2_grpc, f"{service.name}Stub")
        for method in service.methods:
            snake = "".join("_" + c.lower() if c.isupper() else c for c in method.name).lstrip("_")
            if not callable(getattr(ecocode_client.Client, snake, None)):
                missing.append(f"{service.name}.{method.name} -> Client.{snake}")
    assert not missing, f"RPCs without a client method: {missing}"
