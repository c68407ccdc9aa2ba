"""The dashboard's chat box on a language-model deployment: the API's own chat completion,
one conversation carried from turn to turn, errors shown on the page."""

from __future__ import annotations

import html
import json
import re

import httpx

from tests.support.server import LiveServer
from tests.ui.conftest import csrf_of, new_user, signed_in

_HISTORY = re.compile(r'id="chat-history" value="([^"]*)"')


def _history(page: str) -> list[dict[str, str]]:
    found = _HISTORY.search(page)
    assert found is not None, page
    turns: list[dict[str, str]] = json.loads(html.unescape(found.group(1)))
    return turns


def test_a_language_model_deployment_page_has_a_chat_box(
    llm_server: LiveServer, admin: httpx.Client, tools_deployed: str
) -> None:
    key = new_user(admin, "chatter", ["read", "infer"])
    assert admin.put(
        f"/api/v1/deployments/{tools_deployed}/acl",
        json={"public": False, "grants": [{"principal": "chatter", "permission": "read"}]},
    ).is_success
    with signed_in(llm_server.url, key) as client:
        page = client.get(f"/ui/deployments/{tools_deployed}").text
        assert 'name="message"' in page and 'name="inputs"' not in page
        token = csrf_of(page)
        first = client.post(
            f"/ui/deployments/{tools_deployed}/chat",
            data={"csrf": token, "message": "<b>hello</b>", "history": "[]"},
        )
        assert first.status_code == 200, first.text
        turns = _history(first.text)
        assert [t["role"] for t in turns] == ["user", "assistant"], first.text[
            first.text.find("chat-log") - 20 : first.text.find("chat-log") + 900
        ]
        assert turns[0]["content"] == "<b>hello</b>"
        assert "<b>hello</b>" not in first.text  # shown as text
        # The answer is the deployment's own: the same as the API gives for the same turn.
        api = httpx.post(
            f"{llm_server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": tools_deployed,
                "messages": turns[:1],
                "temperature": 0,
                "max_tokens": 128,
            },
            timeout=120,
        ).json()
        assert api["choices"][0]["message"]["content"] == turns[1]["content"]
        # The next turn carries the conversation along (through htmx, the fragment alone).
        second = client.post(
            f"/ui/deployments/{tools_deployed}/chat",
            data={"csrf": token, "message": "again", "history": json.dumps(turns)},
            headers={"HX-Request": "true"},
        )
        assert second.status_code == 200
        assert "<html" not in second.text
        assert [t["role"] for t in _history(second.text)] == ["user", "assistant"] * 2
        # An empty message and a refusal by the model's limits are shown, not raised.
        empty = client.post(
            f"/ui/deployments/{tools_deployed}/chat", data={"csrf": token, "message": " "}
        )
        assert "write a message first" in empty.text
        long = client.post(
            f"/ui/deployments/{tools_deployed}/chat",
            data={"csrf": token, "message": "x" * 5000, "history": "[]"},
        )
        assert long.status_code == 200 and 'id="chat-error"' in long.text
        assert _history(long.text) == []
        # Without its CSRF token the form is refused.
        refused = client.post(f"/ui/deployments/{tools_deployed}/chat", data={"message": "hi"})
        assert refused.status_code == 403
