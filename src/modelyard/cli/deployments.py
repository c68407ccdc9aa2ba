"""``modelyard deploy`` and ``modelyard deployments``: serve model versions under a name."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from modelyard.cli._acl import acl_command
from modelyard.cli._context import connect
from modelyard.cli._output import (
    JsonFlag,
    details,
    print_error,
    print_json,
    print_note,
    show,
    table,
)
from modelyard.client import Deployment, TensorInfo
from modelyard.serving import defaults

app = typer.Typer(
    help="List, inspect, change (hot swap) and remove deployments.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The deployment's name.")]
CanaryOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="VERSION:WEIGHT",
        help="Send WEIGHT percent of the requests to VERSION (repeatable); the main version "
        "gets the rest, e.g. --canary 3:10.",
        show_default=False,
    ),
]
RUNTIMES = (
    "auto, or the version's engine: torch or onnxruntime (a catalog version), torchscript, "
    "torch_export, onnxruntime (ONNX) or keras"
)
# Unset options are not sent, so the server's defaults (shown in brackets) apply.
RuntimeOption = Annotated[
    str | None,
    typer.Option(help=f"{RUNTIMES} [server default: auto].", show_default=False),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Swap even to versions that take or return other tensors than the deployment "
        "serves (running clients may break).",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(help="auto, cpu or cuda[:N] [server default: auto].", show_default=False),
]
ReplicasOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=f"Batches computed at once [server default: {defaults.REPLICAS}].",
        show_default=False,
    ),
]
BatchOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=f"Most rows in one batch [server default: {defaults.MAX_BATCH_SIZE}].",
        show_default=False,
    ),
]
DelayOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Longest wait (ms) for a batch to fill while another computes "
        f"[server default: {defaults.MAX_BATCH_DELAY_MS:g}].",
        show_default=False,
    ),
]
QueueOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Requests that may wait; more are refused (429) "
        f"[server default: {defaults.MAX_QUEUE}].",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        min=1.0,
        help="A request not computed within this many ms fails (504) "
        f"[server default: {defaults.TIMEOUT_MS:g}].",
        show_default=False,
    ),
]


def deploy(
    ctx: typer.Context,
    name: NameArg,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="The model to serve: name, name@alias or name@N (default: its latest version).",
            show_default=False,
        ),
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(
            metavar="A,B,...",
            help="Chain these deployments instead of serving a model.",
            show_default=False,
        ),
    ] = None,
    canary: CanaryOption = None,
    base: Annotated[
        str | None,
        typer.Option(
            help="For a LoRA adapter version: the deployment serving its base model version, "
            "whose loaded model the adapter runs on.",
            show_default=False,
        ),
    ] = None,
    runtime: RuntimeOption = None,
    device: DeviceOption = None,
    replicas: ReplicasOption = None,
    max_batch_size: BatchOption = None,
    max_batch_delay_ms: DelayOption = None,
    max_queue: QueueOption = None,
    timeout_ms: TimeoutOption = None,
    softmax: Annotated[bool, typer.Option(help="Add class probabilities to the outputs.")] = False,
    top_k: Annotated[
        int | None, typer.Option(min=1, help="Add the K best classes to the outputs.")
    ] = None,
    force: ForceOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Serve a model version (or a pipeline) under NAME; returns once it is warmed up.

    A deployment that cannot load is refused (nothing is deployed) and the command exits 1.
    """
    if (model is None) == (pipeline is None):
        raise typer.BadParameter("give --model or --pipeline (one of them)", param_hint="--model")
    traffic = None
    if canary:
        if model is None:
            raise typer.BadParameter("a canary needs --model", param_hint="--canary")
        traffic = canary_split(model.partition("@")[2] or "latest", canary)
    postprocess: dict[str, Any] = {}
    if softmax:
        postprocess["softmax"] = True
    if top_k is not None:
        postprocess["top_k"] = top_k
    with connect(ctx) as client:
        deployment = client.deploy(
            name,
            model,
            runtime=runtime,
            device=device,
            replicas=replicas,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            max_queue=max_queue,
            timeout_ms=timeout_ms,
            traffic=traffic,
            pipeline=pipeline.split(",") if pipeline else None,
            postprocess=postprocess or None,
            force=force,
            base=base,
        )
    report(deployment, "Deployed", as_json)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the deployments you may read."""
    with connect(ctx) as client:
        deployments = client.deployments.list()
    if as_json:
        print_json([d.raw for d in deployments])
        return
    columns = ("Name", "Model", "Serving", "Status", "Owner", "Public", "Created")
    rows = [
        (d.name, d.model, serving_label(d), d.status, d.owner, d.public, d.created_at)
        for d in deployments
    ]
    show(table("Deployments", columns, rows))


@app.command("show")
def show_(ctx: typer.Context, name: NameArg, as_json: JsonFlag = False) -> None:
    """Show a deployment: what it serves, how it batches, its inputs and outputs."""
    with connect(ctx) as client:
        deployment = client.deployments.get(name)
    if as_json:
        print_json(deployment.raw)
        return
    show(*deployment_tables(deployment))


@app.command("update")
def update(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[
        str | None,
        typer.Option(
            help="Serve this version or alias (ends a canary split unless --canary is given).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Serve another model: name, name@alias or name@N.", show_default=False),
    ] = None,
    canary: CanaryOption = None,
    runtime: Annotated[str | None, typer.Option(help=f"{RUNTIMES}.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N].")] = None,
    replicas: Annotated[int | None, typer.Option(min=1, help="Batches computed at once.")] = None,
    max_batch_size: Annotated[int | None, typer.Option(min=1, help="Most rows in a batch.")] = None,
    max_batch_delay_ms: Annotated[
        float | None, typer.Option(min=0.0, help="Longest wait (ms) for a batch to fill.")
    ] = None,
    max_queue: Annotated[int | None, typer.Option(min=1, help="Requests that may wait.")] = None,
    timeout_ms: Annotated[
        float | None, typer.Option(min=1.0, help="Request deadline (ms).")
    ] = None,
    force: ForceOption = False,
    as_json: JsonFlag = False,
) -> None:
    """Change a deployment; a new version is warmed up before requests move to it.

    A change that does not load, or (without --force) a swap to versions that take or
    return other tensors, is refused: the deployment goes on as it was and the command
    exits 1. --force alone takes a version an alias moved to but that was held back.
    """
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "model": model,
            "version": version,
            "runtime": runtime,
            "device": device,
            "replicas": replicas,
            "max_batch_size": max_batch_size,
            "max_batch_delay_ms": max_batch_delay_ms,
            "max_queue": max_queue,
            "timeout_ms": timeout_ms,
        }.items()
        if value is not None
    }
    if version is not None or (model is not None and "@" in model):
        # A split would go on deciding which versions serve; the new version is meant to.
        changes["traffic"] = None
    if not changes and not canary and not force:
        raise typer.BadParameter("nothing to change: give --version, --canary, ...")
    with connect(ctx) as client:
        if canary:
            main = version or (model.partition("@")[2] if model else "")
            if not main:
                main = str(client.deployments.get(name).spec.get("version") or "latest")
            changes["traffic"] = canary_split(main, canary)
        deployment = client.deployments.update(name, force=force, **changes)
    report(deployment, "Updated", as_json)


@app.command("rm")
def rm(ctx: typer.Context, name: NameArg) -> None:
    """Stop serving and remove a deployment (the model stays in the registry)."""
    with connect(ctx) as client:
        client.deployments.delete(name)
    print_note(f"Deleted deployment {name}")


app.command("acl")(acl_command("deployment", lambda client: client.deployments))


def report(deployment: Deployment, done: str, as_json: bool) -> None:
    """Print what was deployed; exit 1 if it is not serving as asked (failed to load, or
    still on an earlier version and saying why)."""
    if as_json:
        print_json(deployment.raw)
    failed = deployment.status == "failed" or bool(deployment.error)
    if failed:
        print_error(
            f"Error: deployment {deployment.name} is {deployment.status}: "
            f"{deployment.error or 'no reason given'}"
        )
        raise typer.Exit(1)
    if not as_json:
        print_note(f"[green]{done}[/] {deployment.name}: {serving_label(deployment)}")
        show(*deployment_tables(deployment))


def canary_split(main: str, canary: list[str]) -> list[tuple[str, float]]:
    """``main`` with the rest of 100 percent, then each ``VERSION:WEIGHT`` of ``--canary``."""
    split: list[tuple[str, float]] = []
    for value in canary:
        version, sep, weight = value.rpartition(":")
        try:
            share = float(weight)
        except ValueError:
            share = -1.0
        if not sep or not version or not 0 < share < 100:
            raise typer.BadParameter(
                f"{value!r}: expected VERSION:WEIGHT with a weight between 0 and 100, e.g. 3:10",
                param_hint="--canary",
            )
        split.append((version, share))
    rest = 100 - sum(share for _, share in split)
    if rest <= 0:
        raise typer.BadParameter(
            "the canary weights add up to 100 or more; the main version needs a share",
            param_hint="--canary",
        )
    return [(main, rest), *split]


def serving_label(d: Deployment) -> str:
    """What a deployment serves, in a few words: ``v2 (90%), v3 (10%)`` or ``a → b``."""
    if d.pipeline is not None:
        return " → ".join(d.pipeline)
    total = sum(v.weight for v in d.versions)
    if len(d.versions) == 1:
        return f"{d.model} v{d.versions[0].version}"
    if d.versions and total > 0:
        return ", ".join(f"v{v.version} ({v.weight / total:.0%})" for v in d.versions)
    return f"{d.model}@{d.spec.get('version', 'latest')} ({d.status})"


def deployment_tables(d: Deployment) -> list[Table]:
    """A deployment's details, then the versions it serves with their tensors."""
    spec = d.spec
    post = spec.get("postprocess") or {}
    timeout = spec.get("timeout_ms")
    tables = [
        details(
            {
                "Name": d.name,
                "ID": d.id,
                "Status": d.status,
                "Error": d.error,
                "Model": d.model,
                "Version": spec.get("version") if d.model else None,
                "Traffic": _traffic(spec.get("traffic")),
                "Pipeline": " → ".join(d.pipeline) if d.pipeline else None,
                "Runtime": spec.get("runtime"),
                "Device": spec.get("device"),
                "Replicas": spec.get("replicas"),
                "Batching": _batching(spec),
                "Queue": spec.get("max_queue"),
                "Timeout": None if timeout is None else f"{float(timeout) / 1000:g} s",
                "Postprocess": {k: v for k, v in post.items() if v not in (None, False)} or None,
                "Owner": d.owner,
                "Public": d.public,
                "Created": d.created_at,
                "Updated": d.updated_at,
            }
        )
    ]
    if d.versions:
        total = sum(v.weight for v in d.versions) or 1.0
        rows = [
            (
                f"v{v.version}",
                f"{v.weight / total:.0%}",
                v.runtime,
                _tensors(v.inputs),
                _tensors(v.outputs),
            )
            for v in d.versions
        ]
        columns = ("Version", "Traffic", "Runtime", "Inputs", "Outputs")
        tables.append(table("Serving", columns, rows))
    return tables


def _traffic(traffic: Any) -> str | None:
    if not traffic:
        return None
    return ", ".join(f"{t.get('version')}: {t.get('weight'):g}" for t in traffic)


def _batching(spec: dict[str, Any]) -> str | None:
    size, delay = spec.get("max_batch_size"), spec.get("max_batch_delay_ms")
    if size is None:
        return None
    return f"up to {size} rows, waiting up to {float(delay or 0):g} ms"


def _tensors(tensors: tuple[TensorInfo, ...]) -> str:
    parts = []
    for t in tensors:
        shape = "?" if t.shape is None else "[" + ", ".join(str(d) for d in t.shape) + "]"
        parts.append(f"{t.name} {t.datatype or 'any'} {shape}")
    return "; ".join(parts) or "-"
