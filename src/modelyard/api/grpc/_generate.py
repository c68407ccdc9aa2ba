"""Regenerate ``grpc_service_pb2.py`` and ``grpc_service_pb2.pyi`` from ``grpc_service.proto``.

Not needed at run time; run it after changing the ``.proto`` file, with ``grpcio-tools``
installed somewhere outside the project's dependencies::

    pip install --target /tmp/grpc-tools --no-deps grpcio-tools==1.64.1
    PYTHONPATH=/tmp/grpc-tools python src/modelyard/api/grpc/_generate.py

grpcio-tools 1.64.1 writes protobuf 5.26.1 gencode, which imports on every protobuf runtime
from 5.26.1 on (6.x included) without a version check; newer grpcio-tools releases write
gencode that refuses any older runtime. Only the messages are generated: the service's
handlers are registered by hand in :mod:`modelyard.api.grpc.service`, so no generated code
pins a grpcio version either.

The generated module is changed in one place: it adds its file to a descriptor pool of its
own instead of protobuf's default pool. tritonclient (and any other Triton or KServe
client) registers the same ``inference.*`` message names in the default pool, and protobuf
refuses a second definition of a name there, so without this the server's messages and a
client's could not be imported into one process (a test, a benchmark, an embedding app).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "grpc_service.proto"
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def main() -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{HERE}",
            f"--python_out={HERE}",
            f"--pyi_out={HERE}",
            str(HERE / PROTO),
        ],
        check=True,
    )
    module = HERE / "grpc_service_pb2.py"
    code = module.read_text()
    if code.count(DEFAULT_POOL) != 1:
        raise SystemExit(f"{module.name}: expected one {DEFAULT_POOL!r}; check the gencode")
    module.write_text(code.replace(DEFAULT_POOL, PRIVATE_POOL))
    print(f"wrote {module.name} and {module.with_suffix('.pyi').name}")


if __name__ == "__main__":
    main()
