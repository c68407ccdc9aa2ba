"""Deployments: the list, one deployment (traffic split, load per version, a form to try a
prediction), and deploying a version."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ValidationError
from starlette.responses import Response

from modelyard.api.routes.deployments import predict
from modelyard.api.routes.openai.chat import create_chat_completion
from modelyard.api.routes.openai.protocol import ChatCompletionRequest
from modelyard.api.schemas.deployments import DeploymentCreate, PredictIn
from modelyard.errors import InvalidInput, ModelyardError, without_paths
from modelyard.ui.load import LoadTracker
from modelyard.ui.render import pager
from modelyard.ui.routing import Ui, UiDep, UiRoute, see_other
from modelyard.ui.sessions import PATH

router = APIRouter(prefix=f"{PATH}/deployments", route_class=UiRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10**9)]
Search = Annotated[str | None, Query(max_length=128)]


def _tracker(ui: Ui) -> LoadTracker:
    tracker: LoadTracker = ui.request.app.state.ui_load
    return tracker


def loads_of(ui: Ui, name: str) -> list[Any]:
    """The load of each version ``name`` serves on this server."""
    live = ui.platform.serving.status(name)
    versions = [str(served.number) for served, _ in live.routes] if live else []
    return _tracker(ui).of(name, versions)


@router.get("")
def deployments_page(ui: UiDep, q: Search = None, page: PageNo = 1, size: int = 25) -> Response:
    pages = pager(ui.request, page, size, q=q)
    items, total = ui.platform.deployment_facade.list(ui.caller, pages.size, pages.offset, q)
    return ui.page("deployments.html", deployments=items, pager=pages.with_total(total), q=q)


@router.post("")
async def deploy(ui: UiDep) -> Response:
    """Deploy a version, as the API does, with the signed-in caller."""
    form = await ui.form()
    body = {
        "name": str(form.get("name") or "").strip(),
        "model": str(form.get("model") or ""),
        "version": str(form.get("version") or "latest"),
    }
    try:
        create = DeploymentCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(str(exc.errors()[0].get("msg", "invalid deployment"))) from exc
    spec = {key: value for key, value in create.model_dump().items() if key != "name"}
    await ui.platform.deployment_facade.create(ui.caller, create.name, spec)
    return see_other(f"{PATH}/deployments/{create.name}")


def _deployment_context(ui: Ui, name: str) -> dict[str, Any]:
    row, live = ui.platform.deployment_facade.get(ui.caller, name)
    example = ""
    chat = False
    if live and live.routes:
        served = live.routes[0][0]
        chat = served.language_model is not None
        inputs = list(served.runtime.inputs)
        if len(inputs) == 1 and inputs[0].shape:
            width = [d if isinstance(d, int) and d > 0 else 1 for d in inputs[0].shape[1:]]
            example = json.dumps(_zeros(width))
    return {
        "deployment": row,
        "live": live,
        "loads": loads_of(ui, name),
        "example": example,
        "chat": chat,
        "conversation": [],
        "chat_error": None,
    }


def _zeros(shape: list[int]) -> Any:
    """One row of zeros of ``shape`` (a sample input for the form), kept small."""
    if not shape:
        return [0.0]
    if len(shape) == 1:
        return [[0.0] * min(shape[0], 1024)]
    return [_zeros(shape[1:])[0] for _ in range(min(shape[0], 64))]


@router.get("/{name}")
def deployment_page(ui: UiDep, name: str) -> Response:
    return ui.page(
        "deployment.html", inputs="", answer=None, error=None, **_deployment_context(ui, name)
    )


@router.get("/{name}/load")
def deployment_load(ui: UiDep, name: str) -> Response:
    """The per-version load table (htmx polls it)."""
    ui.platform.deployments.get(ui.caller, name)
    return ui.page("deployment_load.html", loads=loads_of(ui, name))


@router.post("/{name}/chat")
async def try_chat(ui: UiDep, name: str) -> Response:
    """Send the conversation so far and the new message to a language-model deployment:
    the API's own chat completion call, greedy (the same question gets the same answer) and
    answered in a few tokens."""
    form = await ui.form()
    conversation = _conversation(str(form.get("history") or "[]"))
    message = str(form.get("message") or "").strip()
    error: str | None = None
    if not message:
        error = "write a message first"
    else:
        conversation.append({"role": "user", "content": message})
        try:
            body = ChatCompletionRequest.model_validate(
                {
                    "model": name,
                    "messages": conversation,
                    "max_tokens": _room(ui, name, conversation),
                    "temperature": 0,
                }
            )
            reply = await create_chat_completion(body, ui.platform, ui.caller)
            answer = json.loads(bytes(reply.body))
            content = answer["choices"][0]["message"].get("content") or ""
            conversation.append({"role": "assistant", "content": content})
        except ModelyardError as exc:
            conversation.pop()
            error = without_paths(exc.detail, ui.platform.settings.private_roots())
        except ValidationError as exc:
            conversation.pop()
            error = str(exc.errors()[0].get("msg", "invalid message"))
    if ui.request.headers.get("hx-request"):
        return ui.page("chat_result.html", conversation=conversation, chat_error=error, name=name)
    context = _deployment_context(ui, name) | {"conversation": conversation, "chat_error": error}
    return ui.page("deployment.html", inputs="", answer=None, error=None, **context)


# New tokens of one answer in the dashboard's chat box (a look at the model, not a session).
CHAT_TOKENS = 128
# Turns of a conversation the chat box carries along.
CHAT_TURNS = 20


def _room(ui: Ui, name: str, conversation: list[dict[str, str]]) -> int:
    """New tokens for the answer: :data:`CHAT_TOKENS`, or what the model's context leaves."""
    live = ui.platform.serving.status(name)
    lm = live.routes[0][0].language_model if live and live.routes else None
    context = getattr(lm, "context_length", None)
    if lm is None or not isinstance(context, int):
        return CHAT_TOKENS
    try:
        prompt = len(lm.chat_prompt(conversation, None))
    except ModelyardError:
        return CHAT_TOKENS  # the chat call says what is wrong with the conversation
    return max(1, min(CHAT_TOKENS, context - prompt))


def _conversation(raw: str) -> list[dict[str, str]]:
    """The turns so far, from the form's hidden field (as the page wrote it); anything else
    starts a new conversation."""
    try:
        turns = json.loads(raw)
    except json.JSONDecodeError:
        return []
    if not isinstance(turns, list):
        return []
    kept = [
        {"role": t["role"], "content": t["content"]}
        for t in turns
        if isinstance(t, dict)
        and t.get("role") in ("user", "assistant")
        and isinstance(t.get("content"), str)
    ]
    return kept[-CHAT_TURNS:]


@router.post("/{name}/predict")
async def try_predict(ui: UiDep, name: str) -> Response:
    """Send the form's inputs to the deployment: the API's own predict call."""
    form = await ui.form()
    raw = str(form.get("inputs") or "")
    answer: Any = None
    error: str | None = None
    try:
        try:
            inputs = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"inputs: not valid JSON ({exc.msg} at position {exc.pos})") from exc
        try:
            body = PredictIn.model_validate({"inputs": inputs})
        except ValidationError as exc:
            raise InvalidInput("inputs: give a list of rows, or an object of named lists") from exc
        reply = await predict(name, body, ui.platform, ui.caller)
        answer = json.loads(bytes(reply.body))
    except ModelyardError as exc:
        error = without_paths(exc.detail, ui.platform.settings.private_roots())
    if ui.request.headers.get("hx-request"):
        return ui.page("predict_result.html", answer=answer, error=error)
    return ui.page(
        "deployment.html",
        inputs=raw,
        answer=answer,
        error=error,
        **_deployment_context(ui, name),
    )
