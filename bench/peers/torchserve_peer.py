"""How the serving benchmark starts TorchServe 0.12 on its model (run from the project's venv).

    command, env = torchserve_command(python, weights, workdir, ports, batch_size=32, ...)

The model is archived with ``torch-model-archiver`` from ``bench/peers/torchserve_handler.py``
and the weights (as ``model.safetensors``), into a model store in ``workdir``; TorchServe
runs in the foreground (so the benchmark can end its process group) with a private temp dir
(TorchServe keeps its pid file there, and refuses to start while another instance's file is
found), private ports and logs, no config snapshots (``--ncs``), no token authorization, no
per-model pip installs, and one worker with ``batchSize`` / ``maxBatchDelay`` set in
``config.properties``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.peers.venvs import ROOT, PeerUnavailable

HANDLER = Path(__file__).with_name("torchserve_handler.py")


def config_properties(
    name: str, store: Path, ports: tuple[int, int, int], *, batch_size: int, delay_ms: int
) -> str:
    """TorchServe's ``config.properties`` serving ``name.mar`` with one batching worker."""
    inference, management, metrics = ports
    models = {
        name: {
            "1.0": {
                "defaultVersion": True,
                "marName": f"{name}.mar",
                "minWorkers": 1,
                "maxWorkers": 1,
                "batchSize": batch_size,
                "maxBatchDelay": delay_ms,
                "responseTimeout": 120,
            }
        }
    }
    lines = [
        f"inference_address=http://127.0.0.1:{inference}",
        f"management_address=http://127.0.0.1:{management}",
        f"metrics_address=http://127.0.0.1:{metrics}",
        f"model_store={store}",
        f"load_models={name}.mar",
        "default_workers_per_model=1",
        "install_py_dep_per_model=false",
        "disable_token_authorization=true",
        "enable_envvars_config=false",
        f"models={json.dumps(models)}",
    ]
    return "\n".join(lines) + "\n"


def torchserve_command(
    python: Path,
    name: str,
    weights: Path,
    workdir: Path,
    ports: tuple[int, int, int],
    *,
    batch_size: int,
    delay_ms: int,
    threads: int,
) -> tuple[list[str], dict[str, str]]:
    """Archive the model into ``workdir`` and return TorchServe's command and environment."""
    bin_dir = python.parent
    store, tmp, logs = workdir / "store", workdir / "tmp", workdir / "logs"
    for folder in (store, tmp, logs):
        folder.mkdir(parents=True, exist_ok=True)
    staged = workdir / "model.safetensors"
    shutil.copyfile(weights, staged)
    archive = [
        str(bin_dir / "torch-model-archiver"),
        "--model-name",
        name,
        "--version",
        "1.0",
        "--handler",
        str(HANDLER),
        "--extra-files",
        str(staged),
        "--export-path",
        str(store),
        "--force",
    ]
    done = subprocess.run(archive, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise PeerUnavailable(f"torch-model-archiver failed: {' '.join(last)[:160]}")
    config = workdir / "config.properties"
    config.write_text(
        config_properties(name, store, ports, batch_size=batch_size, delay_ms=delay_ms)
    )
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(python.parent.parent),
        PYTHONPATH=str(ROOT / "src"),
        TMPDIR=str(tmp),
        LOG_LOCATION=str(logs),
        METRICS_LOCATION=str(logs),
        BENCH_TORCH_THREADS=str(threads),
    )
    command = [
        str(bin_dir / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--model-store",
        str(store),
        "--ts-config",
        str(config),
    ]
    return command, env
