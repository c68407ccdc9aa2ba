"""``modelyard demo``: the whole user story on real data, end to end through the API.

scikit-learn's handwritten digits (1,797 8x8 images, 10 classes) are split 80/20 and
pushed as two data sets; an MLP and a CNN are trained by jobs that validate on the held-out
split, so their validation accuracy is the test accuracy; each job registers a model
version. The MLP's version is then deployed and the held-out split sent through the
deployment: the accuracy of what it serves must equal the job's. By default the demo runs
its own throwaway server; with ``--url`` it uses yours.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from modelyard.cli import _context
from modelyard.cli._context import CLIState, reporting_errors
from modelyard.cli._output import human_size, print_error, print_json, print_note, show, table
from modelyard.client import Client, Deployment, Job, ModelVersion, ModelyardError, NotFoundError

SEED = 0
TEST_FRACTION = 0.2
SCALE = 1 / 16  # pixel values are 0..16
SPECS: dict[str, dict[str, Any]] = {
    "mlp": {
        "arch": "mlp",
        "input_shape": [64],
        "hidden": [128, 64],
        "dropout": 0.1,
        "num_outputs": 10,
    },
    "cnn": {
        "arch": "cnn",
        "input_shape": [1, 8, 8],
        "conv": [{"channels": 32}, {"channels": 64}],
        "hidden": [64],
        "num_outputs": 10,
    },
}
# Chosen so each model reaches ≥ 0.96 test accuracy for any seed, in seconds on a CPU.
EPOCHS = {"mlp": 25, "cnn": 15}
# The architecture whose version is deployed and called.
SERVED = "mlp"
TRAINING: dict[str, Any] = {
    "optimizer": {"name": "adam", "lr": 0.002},
    "schedule": {"name": "cosine"},
    "batch_size": 32,
    "seed": SEED,
    "metrics": ["accuracy"],
    "preprocessing": {"scale": SCALE},
}


def demo(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Run against this server and keep what the demo makes there.",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="Your API key on that server.", show_default=False),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable summary.")
    ] = False,
) -> None:
    """Train an MLP and a CNN on handwritten digits, deploy the MLP and call it, end to end.

    Without --url a throwaway server is started, used and removed.
    """
    target = _target(ctx, url, api_key)
    with _server(target) as (server_url, key), reporting_errors(server_url, key):
        if target is None:
            print_note(f"Started a throwaway server at {server_url}")
        with _context.make_client(server_url, key) as client:
            summary = run(client, progress=not as_json)
        # A throwaway server is gone by the time anyone reads the summary.
        summary["server"] = server_url if target is not None else None
    if as_json:
        print_json(summary)
        return
    _print_summary(summary, kept=target is not None)


def run(client: Client, *, progress: bool = False) -> dict[str, Any]:
    """The story on ``client``'s server; returns what it made and measured."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    names = _free_names(client)
    pushed = [
        client.datasets.push_arrays(
            names["train"], x=x_train, y=y_train, label="y", description="digits, 80% split"
        ),
        client.datasets.push_arrays(
            names["test"], x=x_test, y=y_test, label="y", description="digits, 20% split"
        ),
    ]
    if progress:
        print_note(
            f"Pushed {pushed[0].name} ({pushed[0].num_rows} rows) and "
            f"{pushed[1].name} ({pushed[1].num_rows} rows)"
        )
    # Both jobs are queued at once; the server runs them side by side.
    jobs = {arch: client.jobs.create(_train_spec(arch, names)) for arch in SPECS}
    for job in jobs.values():
        job.wait(progress=progress)
    versions = {
        arch: client.models.version(job.result["model"], job.result["version"])
        for arch, job in jobs.items()
    }
    served = versions[SERVED]
    deployment = client.deploy(names["deployment"], f"{served.model}@{served.version}")
    # The held-out split, raw as it was pushed: the deployment applies the version's
    # recorded preprocessing itself.
    logits = deployment.predict(x_test)
    if isinstance(logits, dict):
        raise ModelyardError(f"deployment {deployment.name} answered several outputs")
    served_accuracy = float((logits.argmax(axis=1) == y_test).mean())
    if progress:
        print_note(
            f"Deployed {served.model} v{served.version} as {deployment.name}; "
            f"it classified {len(x_test)} held-out digits"
        )
    return {
        "datasets": [{"name": d.name, "num_rows": d.num_rows, "schema": d.schema} for d in pushed],
        "jobs": [_job_summary(arch, job) for arch, job in jobs.items()],
        "versions": [_version_summary(arch, v) for arch, v in versions.items()],
        "deployments": [_deployment_summary(deployment, served, served_accuracy)],
        "metrics": {
            **{
                arch: {
                    "test_accuracy": v.metrics.get("val_accuracy"),
                    "test_loss": v.metrics.get("val_loss"),
                }
                for arch, v in versions.items()
            },
            "served_accuracy": served_accuracy,
        },
    }


def _target(ctx: typer.Context, url: str | None, api_key: str | None) -> tuple[str, str] | None:
    """The server to use, or None for a throwaway one.

    ``--url`` given here or before ``demo`` (not one from the environment) picks a server.
    """
    state = ctx.find_object(CLIState)
    source = ctx.find_root().get_parameter_source("url")
    if url is None and state is not None and source is not None and source.name == "COMMANDLINE":
        url = state.url
    if url is None:
        return None
    key = api_key or (state.api_key if state else None)
    if not key:
        raise typer.BadParameter("a server needs an API key: add --api-key", param_hint="--url")
    return url, key


@contextmanager
def _server(target: tuple[str, str] | None) -> Iterator[tuple[str, str]]:
    if target is not None:
        yield target
        return
    from modelyard.cli._local_server import ServerStartError, local_server

    try:
        with local_server() as server:
            yield server.url, server.api_key
    except ServerStartError as exc:
        print_error(f"Error: {exc}")
        raise typer.Exit(1) from None


def _free_names(client: Client) -> dict[str, str]:
    """``digits-train``, ``digits-test``, ``digits-mlp``, ``digits-cnn`` and the deployment
    ``digits-demo``, with one random suffix for all when any of them is taken."""
    names = {"train": "digits-train", "test": "digits-test", "deployment": "digits-demo"}
    names.update({arch: f"digits-{arch}" for arch in SPECS})
    if not any(_exists(client, kind, name) for kind, name in names.items()):
        return names
    suffix = secrets.token_hex(3)
    return {kind: f"{name}-{suffix}" for kind, name in names.items()}


def _exists(client: Client, kind: str, name: str) -> bool:
    try:
        if kind in SPECS:
            client.models.get(name)
        elif kind == "deployment":
            client.deployments.get(name)
        else:
            client.datasets.get(name)
    except NotFoundError:
        return False
    return True


def _train_spec(arch: str, names: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "train",
        "model": {"spec": SPECS[arch]},
        "dataset": names["train"],
        "validation_dataset": names["test"],
        "label": "y",
        "output_model": names[arch],
        "epochs": EPOCHS[arch],
        **TRAINING,
    }


def _job_summary(arch: str, job: Job) -> dict[str, Any]:
    duration = None
    if job.started_at and job.finished_at:
        duration = round((job.finished_at - job.started_at).total_seconds(), 2)
    return {
        "id": job.id,
        "arch": arch,
        "status": job.status,
        "model": job.result.get("model"),
        "version": job.result.get("version"),
        "epochs_run": job.result.get("epochs_run"),
        "duration_s": duration,
    }


def _version_summary(arch: str, version: ModelVersion) -> dict[str, Any]:
    return {
        "arch": arch,
        "model": version.model,
        "version": version.version,
        "format": version.format,
        "size": version.size,
        "sha256": version.sha256,
        "test_accuracy": version.metrics.get("val_accuracy"),
        "job": version.lineage.job,
    }


def _deployment_summary(
    deployment: Deployment, version: ModelVersion, served_accuracy: float
) -> dict[str, Any]:
    return {
        "name": deployment.name,
        "model": version.model,
        "version": version.version,
        "status": deployment.status,
        "runtime": deployment.versions[0].runtime if deployment.versions else None,
        "served_accuracy": served_accuracy,
        "test_accuracy": version.metrics.get("val_accuracy"),
    }


def _print_summary(summary: dict[str, Any], *, kept: bool) -> None:
    datasets = [
        (d["name"], d["num_rows"], _shape(d["schema"], "x"), _shape(d["schema"], "y"))
        for d in summary["datasets"]
    ]
    jobs = [
        (j["id"], j["arch"], j["status"], j["epochs_run"], _seconds(j["duration_s"]))
        for j in summary["jobs"]
    ]
    versions = [
        (
            v["model"],
            f"v{v['version']}",
            v["format"],
            human_size(v["size"]),
            _percent(v["test_accuracy"]),
        )
        for v in summary["versions"]
    ]
    deployments = [
        (
            d["name"],
            f"{d['model']} v{d['version']}",
            d["status"],
            _percent(d["served_accuracy"]),
            _percent(d["test_accuracy"]),
        )
        for d in summary["deployments"]
    ]
    show(
        table("Data sets", ("Name", "Rows", "x", "y"), datasets),
        table("Jobs", ("ID", "Model", "Status", "Epochs", "Time"), jobs),
        table("Versions", ("Model", "Version", "Format", "Size", "Test accuracy"), versions),
        table(
            "Deployments",
            ("Name", "Serves", "Status", "Served accuracy", "Job's test accuracy"),
            deployments,
        ),
    )
    for d in summary["deployments"]:
        # Both count the same 360 digits; only float rounding may tell them apart.
        if d["test_accuracy"] is None or abs(d["served_accuracy"] - d["test_accuracy"]) > 1e-6:
            print_error(
                f"{d['name']} served {_percent(d['served_accuracy'])} accuracy, but its job "
                f"measured {_percent(d['test_accuracy'])} on the same digits"
            )
    if kept:
        names = " and ".join(v["model"] for v in summary["versions"])
        print_note(f"\nKept on the server: see `modelyard models show` for {names}.")
        for d in summary["deployments"]:
            print_note(
                f"{d['name']} keeps serving: `modelyard predict {d['name']} --input x.npy` "
                "classifies rows of 64 pixel values (0 to 16)."
            )
    else:
        print_note(
            "\nThe throwaway server is gone. To keep what the demo makes, start one with "
            "`modelyard serve` and run `modelyard demo --url URL --api-key KEY`."
        )


def _shape(schema: dict[str, Any], array: str) -> str:
    shape = (schema.get("arrays") or {}).get(array, {}).get("shape")
    return "x".join(str(n) for n in shape) if isinstance(shape, list) else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
