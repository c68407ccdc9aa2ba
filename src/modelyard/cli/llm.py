"""``modelyard llm push``, ``chat``, ``complete`` and ``embed``: language models from the CLI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli._context import connect
from modelyard.cli._output import (
    JsonFlag,
    human_size,
    print_json,
    print_note,
    stderr,
    transfer_progress,
)

app = typer.Typer(
    help="Language models: push Hugging Face folders (chat with 'modelyard chat').",
    no_args_is_help=True,
)

DeploymentArg = Annotated[str, typer.Argument(help="The deployment (its OpenAI model id).")]
MaxTokensOpt = Annotated[
    int | None, typer.Option("--max-tokens", min=1, help="At most this many new tokens.")
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option("--temperature", min=0.0, help="Sampling temperature; 0 is greedy."),
]

EXIT_COMMAND = "/exit"


@app.command("push")
def push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name (created if missing).")],
    folder: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            help="A save_pretrained folder: config.json, tokenizer files, *.safetensors.",
        ),
    ],
    description: Annotated[str | None, typer.Option(help="What this version is.")] = None,
) -> None:
    """Upload a Hugging Face model folder as the model's next version (format hf)."""
    with connect(ctx) as client, transfer_progress(f"Uploading {folder.name}") as progress:
        try:
            version = client.models.push_hf(
                name, folder, description=description, progress=progress
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="FOLDER") from None
    spec = version.spec or {}
    kind = spec.get("kind") or version.format
    print_note(f"[green]Pushed[/] {name} v{version.version} ({kind}, {human_size(version.size)})")
    typer.echo(f"{name}@{version.version}")


def chat(
    ctx: typer.Context,
    deployment: DeploymentArg,
    system: Annotated[
        str | None, typer.Option("--system", help="A system message opening the conversation.")
    ] = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
) -> None:
    """Chat with a deployed language model; answers stream as they are generated.

    Each line read from standard input is a user message; the whole conversation is sent
    every turn. End with /exit or end of input (Ctrl-D).
    """
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    interactive = sys.stdin.isatty()
    if interactive:
        print_note(f"Chatting with {deployment}; /exit or Ctrl-D to end.")
    with connect(ctx) as client:
        for line in _lines(interactive):
            text = line.strip()
            if text == EXIT_COMMAND:
                break
            if not text:
                continue
            messages.append({"role": "user", "content": text})
            pieces = client.llm.chat_stream(
                deployment, messages, max_tokens=max_tokens, temperature=temperature
            )
            answer = _echo_stream(pieces)
            messages.append({"role": "assistant", "content": answer})


def complete(
    ctx: typer.Context,
    deployment: DeploymentArg,
    prompt: Annotated[str, typer.Argument(help="The text to continue.")],
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
) -> None:
    """Continue a prompt with a deployed language model, streaming the text."""
    with connect(ctx) as client:
        pieces = client.llm.complete_stream(
            deployment, prompt, max_tokens=max_tokens, temperature=temperature
        )
        _echo_stream(pieces)


def embed(
    ctx: typer.Context,
    deployment: DeploymentArg,
    texts: Annotated[list[str], typer.Argument(help="One or more texts.")],
    as_json: JsonFlag = False,
    show: Annotated[int, typer.Option("--show", min=0, help="Values printed per vector.")] = 5,
) -> None:
    """Embed texts with a deployed embedding model."""
    with connect(ctx) as client:
        vectors = client.llm.embed(deployment, texts)
    if as_json:
        print_json([{"text": t, "embedding": v} for t, v in zip(texts, vectors, strict=True)])
        return
    for text, vector in zip(texts, vectors, strict=True):
        head = ", ".join(f"{v:.4f}" for v in vector[:show])
        more = ", …" if len(vector) > show else ""
        typer.echo(f"{text!r}: dim {len(vector)} [{head}{more}]")


def _lines(interactive: bool) -> Iterator[str]:
    """User lines from standard input, with a prompt on stderr at a terminal."""
    console = stderr()
    while True:
        if interactive:
            console.print("[bold]you>[/] ", end="")
        line = sys.stdin.readline()
        if not line:
            return
        yield line


def _echo_stream(pieces: Iterator[str]) -> str:
    """Print text pieces on stdout as they come; return the whole text."""
    parts: list[str] = []
    for piece in pieces:
        parts.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)
