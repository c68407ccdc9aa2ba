"""The ``modelyard`` command: global options and the command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli import datasets, deployments, jobs, keys, llm, models, principals, projects
from modelyard.cli._context import CLIState
from modelyard.cli.compress import compress, distill
from modelyard.cli.demo import demo
from modelyard.cli.examples import examples
from modelyard.cli.explain import explain
from modelyard.cli.predict import predict
from modelyard.cli.serve import serve
from modelyard.cli.train import train
from modelyard.cli.usage import usage

app = typer.Typer(
    name="modelyard",
    help="Modelyard: data sets, training jobs, models, deployments and API keys on a Modelyard "
    "server.",
    no_args_is_help=True,
)
app.add_typer(keys.app, name="keys")
app.add_typer(principals.app, name="principals")
app.add_typer(projects.app, name="projects")
app.add_typer(datasets.app, name="datasets")
app.add_typer(models.app, name="models")
app.add_typer(jobs.app, name="jobs")
app.add_typer(deployments.app, name="deployments")
app.add_typer(llm.app, name="llm")
app.command("train")(train)
app.command("compress")(compress)
app.command("distill")(distill)
app.command("deploy")(deployments.deploy)
app.command("predict")(predict)
app.command("explain")(explain)
app.command("chat")(llm.chat)
app.command("complete")(llm.complete)
app.command("embed")(llm.embed)
app.command("demo")(demo)
app.command("examples")(examples)
app.command("serve")(serve)
app.command("usage")(usage)


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="MODELYARD_URL", help="The server's address.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="MODELYARD_API_KEY", help="Your API key.", show_default=False
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            envvar="MODELYARD_CA_BUNDLE",
            exists=True,
            dir_okay=False,
            help="PEM file of the CA(s) that signed an https:// server's certificate "
            "(a self-signed one, say).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = CLIState(url=url, api_key=api_key, ca_bundle=ca_bundle)


def main() -> None:
    """Run the command line (the ``modelyard`` console script)."""
    app()
