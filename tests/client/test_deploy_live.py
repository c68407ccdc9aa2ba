"""Deployments through the SDK against a real server: deploy, predict (JSON and binary
tensors) equal to the model computed in process, hot swap, canaries, sharing, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modelyard.client import (
    Client,
    ConflictError,
    Grant,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from modelyard.client._inference import BINARY_THRESHOLD
from tests.client.served import forward, push_mlp, rows


def test_predictions_equal_the_model_computed_in_process(admin: Client, tmp_path: Path) -> None:
    model = push_mlp(admin, "digits-mlp", tmp_path, seed=0)
    deployment = admin.deploy("digits", "digits-mlp@1", max_batch_size=16)
    assert (deployment.name, deployment.status, deployment.model) == (
        "digits",
        "ready",
        "digits-mlp",
    )
    [served] = deployment.versions
    assert served.version == 1
    assert [(t.name, t.datatype, t.shape) for t in served.inputs] == [("input", "FP32", (-1, 64))]
    assert deployment.spec["max_batch_size"] == 16

    small = rows(5)
    for binary in (None, False, True):
        out = deployment.predict(small, binary=binary)
        assert isinstance(out, np.ndarray)
        assert (out.shape, out.dtype) == ((5, 10), np.float32)
        np.testing.assert_allclose(out, forward(model, small), atol=1e-5)

    # A batch far over the binary threshold and over max_batch_size, as float64.
    large = rows(3000, seed=1)
    assert large.nbytes > BINARY_THRESHOLD
    out = deployment.predict(large.astype(np.float64))
    assert isinstance(out, np.ndarray)
    assert (out.shape, out.dtype) == ((3000, 10), np.float32)
    np.testing.assert_allclose(out, forward(model, large), atol=1e-5)

    named = deployment.predict({"input": small})
    assert isinstance(named, dict)
    np.testing.assert_allclose(named["output"], forward(model, small), atol=1e-5)

    assert [d.name for d in admin.deployments.list()] == ["digits"]
    assert admin.deployments.get("digits").versions == deployment.versions


def test_hot_swap_canary_and_delete(admin: Client, tmp_path: Path) -> None:
    first = push_mlp(admin, "m", tmp_path, seed=0)
    second = push_mlp(admin, "m", tmp_path, seed=1)
    x = rows(4)
    deployment = admin.deploy("m", "m", version=1)
    np.testing.assert_allclose(deployment.predict(x), forward(first, x), atol=1e-5)

    # The swap is done when PATCH answers: v2 serves from then on.
    deployment.update(version=2)
    assert [v.version for v in deployment.versions] == [2]
    for binary in (False, True):
        np.testing.assert_allclose(
            deployment.predict(x, binary=binary), forward(second, x), atol=1e-5
        )

    # A canary split serves both; pinning a version picks it, either way of sending.
    deployment.update(traffic={1: 90, 2: 10})
    assert sorted((v.version, v.weight) for v in deployment.versions) == [(1, 90.0), (2, 10.0)]
    for version, model in ((1, first), (2, second)):
        for binary in (False, True):
            out = deployment.predict(x, version=version, binary=binary)
            np.testing.assert_allclose(out, forward(model, x), atol=1e-5)
    with pytest.raises(NotFoundError):
        deployment.predict(x, version=7)

    # Ending the split goes back to one version.
    deployment.update(version=1, traffic=None)
    assert [v.version for v in deployment.refresh().versions] == [1]

    deployment.delete()
    with pytest.raises(NotFoundError):
        admin.deployments.get("m")
    with pytest.raises(NotFoundError):
        deployment.predict(x)
    assert admin.models.get("m").latest_version == 2  # the model stays


def test_postprocessing_gives_named_outputs(admin: Client, tmp_path: Path) -> None:
    model = push_mlp(admin, "m", tmp_path, seed=0)
    deployment = admin.deploy("m", "m", postprocess={"softmax": True, "top_k": 3})
    x = rows(6)
    for binary in (False, True):
        out = deployment.predict(x, binary=binary)
        assert isinstance(out, dict)
        logits = forward(model, x)
        np.testing.assert_allclose(out["output"], logits, atol=1e-5)
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
        assert out["top_k_indices"][:, 0].tolist() == logits.argmax(axis=1).tolist()


def test_refusals_map_to_the_exception_tree(
    admin: Client, make_user: Callable[..., Client], tmp_path: Path
) -> None:
    push_mlp(admin, "m", tmp_path, seed=0)
    deployment = admin.deploy("m", "m")
    with pytest.raises(ConflictError):
        admin.deploy("m", "m")
    with pytest.raises(ValidationError, match="model"):
        admin.deploy("other", "m@9")
    with pytest.raises(ValidationError, match="device"):
        admin.deploy("other", "m", device="tpu")
    for binary in (False, True):
        with pytest.raises(ValidationError, match="input"):
            deployment.predict(np.zeros((2, 5), np.float32), binary=binary)

    # Predictions need the infer scope, and read access to the deployment.
    reader = make_user("rita", ("read",))
    with pytest.raises(NotFoundError):
        reader.deployments.get("m")
    admin.deployments.set_acl("m", grants=[Grant(principal="rita")])
    shared = reader.deployments.get("m")
    with pytest.raises(PermissionDeniedError):
        shared.predict(rows(1))
    caller = make_user("ivan", ("read", "infer"))
    with pytest.raises(NotFoundError):
        caller.deployments.get("m")
    admin.deployments.set_acl("m", grants=[Grant(principal="rita"), Grant(principal="ivan")])
    assert {g.principal for g in admin.deployments.get_acl("m").grants} == {"rita", "ivan"}
    out = caller.deployments.get("m").predict(rows(2))
    assert isinstance(out, np.ndarray) and out.shape == (2, 10)
    with pytest.raises(PermissionDeniedError):
        caller.deployments.delete("m")
