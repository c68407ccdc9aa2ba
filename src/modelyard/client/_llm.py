"""Language models: pushing Hugging Face folders and calling the OpenAI-compatible ``/v1`` API.

``client.models.push_hf`` packs a ``save_pretrained`` folder into a tar and uploads it as a
version of format ``hf``. ``client.llm`` streams chat and completion tokens and computes
embeddings over plain HTTP; ``client.openai()`` returns the official ``openai`` client
pointed at the same server (``openai`` is imported only then).
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from modelyard.client._exceptions import (
    APIError,
    ConflictError,
    ModelyardError,
    NotFoundError,
    TransportError,
    error_from_response,
)
from modelyard.client._http import HTTP
from modelyard.client._resources.models import Models
from modelyard.client._sse import iter_sse
from modelyard.client._transfer import ProgressCallback, StrPath
from modelyard.client._types import ModelVersion

if TYPE_CHECKING:
    import openai

HF_FORMAT = "hf"
HF_WEIGHT_SUFFIXES = (".safetensors",)
HF_DATA_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")
"""Configuration and tokenizer files: ``config.json``, ``tokenizer.json``, ``vocab.txt``,
``merges.txt``, ``tokenizer.model``, ``chat_template.jinja``, …"""
HF_OTHER_NAMES = ("README.md",)

Message = Mapping[str, str]
"""A chat message: ``{"role": "user", "content": "hello"}``."""


def hf_folder_files(folder: StrPath) -> list[tuple[Path, str]]:
    """The files of a Hugging Face folder to upload, as ``(path, name in the archive)``.

    Only ``config.json`` and other JSON, tokenizer files (``*.txt``, ``*.model``,
    ``*.jinja``, ``*.tiktoken``), ``*.safetensors`` weights and ``README.md`` are taken;
    hidden files and folders (``.git``, ``.cache``) are skipped. Anything else (pickled
    ``*.bin`` weights, ``*.py`` code, …) is refused before anything is sent.

    Raises:
        ValueError: ``folder`` is not a folder, lacks ``config.json`` or safetensors
            weights, or holds a file that may not be uploaded.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder (expected a save_pretrained folder)")
    files: list[tuple[Path, str]] = []
    refused: list[str] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        name = relative.as_posix()
        lower = path.name.lower()
        if lower.endswith(HF_WEIGHT_SUFFIXES + HF_DATA_SUFFIXES) or path.name in HF_OTHER_NAMES:
            files.append((path, name))
        else:
            refused.append(name)
    if refused:
        raise ValueError(
            f"{root} holds files that cannot be uploaded: {', '.join(refused)}; only "
            "config.json, tokenizer files and *.safetensors weights are accepted (save with "
            "save_pretrained(..., safe_serialization=True); custom code is never run)"
        )
    names = {name for _, name in files}
    if "config.json" not in names:
        raise ValueError(f"{root} has no config.json (not a save_pretrained folder)")
    if not any(name.endswith(HF_WEIGHT_SUFFIXES) for name in names):
        raise ValueError(f"{root} has no *.safetensors weights")
    return files


def pack_hf_folder(folder: StrPath, dest: Path) -> Path:
    """Write the folder's uploadable files (see :func:`hf_folder_files`) to the tar ``dest``."""
    files = hf_folder_files(folder)
    with tarfile.open(dest, mode="w") as tar:
        for path, name in files:
            tar.add(path, arcname=name, recursive=False)
    return dest


class LLMModels(Models):
    """The model registry, with Hugging Face folders as versions (format ``hf``)."""

    def push_hf(
        self,
        name: str,
        folder: StrPath,
        *,
        description: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> ModelVersion:
        """Upload a ``save_pretrained`` folder as the model's next version (format ``hf``).

        The model is registered first if it does not exist yet. The folder's
        ``config.json``, tokenizer files and ``*.safetensors`` weights are packed into a tar
        and streamed; ``progress(done, total)`` follows the upload. A folder holding
        anything else (``*.bin``, ``*.py``, …) raises :class:`ValueError` before anything
        is sent. The version's ``spec`` says what the server found (``kind``,
        ``context_length``, ``chat_template``, …).

        Example::

            model.save_pretrained("tiny"); tokenizer.save_pretrained("tiny")
            v = client.models.push_hf("tiny", "tiny")
            client.deploy("tiny", f"tiny@{v.version}")
        """
        root = Path(folder)
        hf_folder_files(root)
        try:
            self.get(name)
        except NotFoundError:
            with contextlib.suppress(ConflictError):
                self.create(name, description=description)
        with tempfile.TemporaryDirectory(prefix="modelyard-hf-") as tmp:
            archive = pack_hf_folder(root, Path(tmp) / f"{root.resolve().name or 'model'}.tar")
            return self.push(
                name, archive, format=HF_FORMAT, description=description, progress=progress
            )


class LLM:
    """The OpenAI-compatible ``/v1`` endpoints of deployed language and embedding models."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def chat_stream(
        self,
        model: str,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as the deployment ``model`` generates it.

        ``messages`` go through the model's chat template; ``temperature`` 0 is greedy.

        Example::

            for piece in client.llm.chat_stream("tiny", [{"role": "user", "content": "hi"}]):
                print(piece, end="", flush=True)
        """
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        body.update(_sampling(max_tokens, temperature))
        for chunk in self._stream("/v1/chat/completions", body):
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield str(content)

    def complete_stream(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """Yield the continuation of ``prompt`` piece by piece (``/v1/completions``)."""
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        body.update(_sampling(max_tokens, temperature))
        for chunk in self._stream("/v1/completions", body):
            for choice in chunk.get("choices") or []:
                text = choice.get("text")
                if text:
                    yield str(text)

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One embedding per text, from the embedding deployment ``model``."""
        body = {"model": model, "input": list(texts), "encoding_format": "float"}
        answer = self._post("/v1/embeddings", body)
        rows = sorted(answer.get("data") or [], key=lambda row: int(row.get("index", 0)))
        return [[float(v) for v in row["embedding"]] for row in rows]

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.client.post(path, json=body)
        except httpx.RequestError as exc:
            raise TransportError(f"POST {exc.request.url}: {exc}") from exc
        if response.is_error:
            raise _openai_error(response)
        answer = response.json()
        if not isinstance(answer, dict):
            raise ModelyardError(f"POST {path}: expected a JSON object, got {answer!r:.200}")
        return answer

    def _stream(self, path: str, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        headers = {"Accept": "text/event-stream"}
        try:
            with self._http.client.stream(
                "POST", path, json={**body, "stream": True}, headers=headers
            ) as response:
                if response.is_error:
                    response.read()
                    raise _openai_error(response)
                for message in iter_sse(response.iter_lines()):
                    if message.data is None:
                        continue
                    if message.data.strip() == "[DONE]":
                        return
                    chunk = json.loads(message.data)
                    if not isinstance(chunk, dict):
                        continue
                    if isinstance(chunk.get("error"), dict):
                        raise ModelyardError(
                            f"POST {path}: {chunk['error'].get('message') or chunk['error']}"
                        )
                    yield chunk
        except httpx.RequestError as exc:
            raise TransportError(f"POST {exc.request.url}: {exc}") from exc


def _sampling(max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
    fields = {"max_tokens": max_tokens, "temperature": temperature}
    return {k: v for k, v in fields.items() if v is not None}


def _openai_error(response: httpx.Response) -> APIError:
    """The SDK's error for an answer in OpenAI's ``{"error": {"message", ...}}`` form."""
    error = error_from_response(response)
    body = error.body
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and inner.get("message"):
        error.detail = str(inner["message"])
        error.args = (f"{error.status} {error.title}: {error.detail}",)
    return error


def openai_client(http: HTTP) -> openai.OpenAI:
    """The official ``openai`` client for ``<base_url>/v1`` with ``http``'s API key."""
    try:
        import openai  # an optional dependency, needed only here
    except ImportError as exc:
        raise ModelyardError("the openai package is not installed: pip install openai") from exc
    auth = http.client.headers.get("Authorization", "")
    key = auth.removeprefix("Bearer ").strip() or "none"
    base = str(http.client.base_url).rstrip("/") + "/v1"
    if http.verify is True:
        return openai.OpenAI(base_url=base, api_key=key)
    # The same trust as the SDK's own requests (a CA bundle, or none for tests).
    client = openai.DefaultHttpxClient(verify=http.verify)
    return openai.OpenAI(base_url=base, api_key=key, http_client=client)
