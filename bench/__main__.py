"""Run every benchmark in turn and print its table."""

from __future__ import annotations

import argparse

from bench import (
    compression,
    distributed,
    grpc_oip,
    llm,
    privacy,
    serving,
    training,
    transfer,
    usage,
)

SUITES = {
    "transfer": transfer.main,
    "training": training.main,
    "compression": compression.main,
    "llm": llm.main,
    "serving": serving.main,
    "grpc": grpc_oip.main,
    "distributed": distributed.main,
    "privacy": privacy.main,
    "usage": usage.main,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Modelyard benchmarks")
    parser.add_argument("suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    args = parser.parse_args()
    for name in args.suites:
        print(f"\n=== {name} ===", flush=True)
        SUITES[name]()


if __name__ == "__main__":
    main()
