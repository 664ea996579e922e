"""Builds the gRPC stubs of ``ecocode.v1`` from the ``.proto`` files at package build time.

The stubs are never committed, so they cannot drift from ``proto/``: every
wheel is generated from the ``.proto`` files it was built with. A build from
the repository (``pip install ./clients/python``) reads ``../../proto``; an
sdist carries a copy in ``proto/`` (written into the release tree only, never
into the source tree), which a build from the sdist then reads.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO_FILE = "ecocode/v1/ecocode.proto"


def proto_root() -> Path:
    """The directory holding ``ecocode/v1/ecocode.proto``: the sdist's copy, else the repository's."""
    for candidate in (HERE / "proto", HERE.parent.parent / "proto"):
        if (candidate / PROTO_FILE).is_file():
            return candidate
    raise SystemExit(
        f"ecocode-client: cannot find {PROTO_FILE} in {HERE / 'proto'} or {HERE.parent.parent / 'proto'}; "
        "build from the ecocode repository (pip install ./clients/python) or from an sdist made there"
    )


def generate(out_dir: Path) -> None:
    """Runs protoc (from grpcio-tools) on the proto into ``out_dir/ecocode_client/v1``."""
    from grpc_tools import protoc  # a build requirement (pyproject.toml)
    import grpc_tools

    root = proto_root()
    with_includes = Path(grpc_tools.__file__).resolve().parent / "_proto"
    staging = out_dir / "_ecocode_protoc"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{with_includes}",
        f"--python_out={staging}",
        f"--pyi_out={staging}",
        f"--grpc_python_out={staging}",
        PROTO_FILE,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"ecocode-client: protoc failed on {root / PROTO_FILE}")
    target = out_dir / "ecocode_client" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    generated = staging / "ecocode" / "v1"
    for name in ("ecocode_pb2.py", "ecocode_pb2.pyi", "ecocode_pb2_grpc.py"):
        text = (generated / name).read_text(encoding="utf-8")
        # The descriptor keeps its name ecocode/v1/ecocode.proto (what server
        # reflection and other languages use); only the Python import of the
        # messages module becomes relative, so no top-level `ecocode` package
        # is installed beside ecocode_client.
        text = re.sub(
            r"^from ecocode\.v1 import ecocode_pb2 as", "from . import ecocode_pb2 as", text, flags=re.M
        )
        (target / name).write_text(text, encoding="utf-8")
    shutil.rmtree(staging)


class BuildPyWithStubs(build_py):
    """``build_py`` that first generates the stubs into the build directory (or, editable, the source tree)."""

    def run(self) -> None:
        out = HERE / "src" if getattr(self, "editable_mode", False) else Path(self.build_lib)
        generate(out)
        super().run()


class SdistWithProto(sdist):
    """``sdist`` that carries the ``.proto`` files, so a wheel can be built from it elsewhere."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        root = proto_root()
        dest = Path(base_dir) / "proto" / os.path.dirname(PROTO_FILE)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / PROTO_FILE, dest / os.path.basename(PROTO_FILE))


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto})
