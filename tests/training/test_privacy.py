"""Differentially private training (DP-SGD with Opacus) in the training loop."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from modelyard.errors import InvalidInput
from modelyard.nn import build_model
from modelyard.training import (
    BaseCallbacks,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    parse_config,
    train,
)
from modelyard.training import privacy as privacy_module
from modelyard.training.privacy import (
    check_private_spec,
    plan_privacy,
    poisson_batch,
    private_layer_problems,
)

from .conftest import Split

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [64], "num_outputs": 10}
# Poisson batches of about 256 rows, Adam: what DP-SGD on 1437 digits needs to learn well.
PRIVATE: dict[str, Any] = {
    "device": "cpu",
    "epochs": 20,
    "batch_size": 256,
    "optimizer": {"name": "adam", "lr": 0.02},
    "preprocessing": {"scale": 1 / 16},
    "privacy": {"target_epsilon": 3.0, "target_delta": 1e-5, "max_grad_norm": 1.0},
}


def _accuracy(model: torch.nn.Module, split: Split) -> float:
    with torch.no_grad():
        logits = model(torch.as_tensor(split.x_test / 16, dtype=torch.float32))
    return float((logits.argmax(1).numpy() == split.y_test).mean())


def _opacus_epsilon(privacy: dict[str, Any]) -> float:
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    for _ in range(privacy["steps"]):
        accountant.step(
            noise_multiplier=privacy["noise_multiplier"], sample_rate=privacy["sample_rate"]
        )
    return float(accountant.get_epsilon(delta=privacy["delta"]))


class Events(BaseCallbacks):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def test_private_mlp_on_digits_reaches_85_percent_at_epsilon_3(digits: Split) -> None:
    events = Events()
    result = train(MLP, PRIVATE, digits.x_train, digits.y_train, callbacks=events)
    private = _accuracy(result.model, digits)
    plain = train(
        MLP,
        {k: v for k, v in PRIVATE.items() if k != "privacy"},
        digits.x_train,
        digits.y_train,
    )
    baseline = _accuracy(plain.model, digits)
    print(f"test accuracy: private (ε=3) {private:.3f}, non-private {baseline:.3f}")
    assert private >= 0.85
    assert result.privacy is not None
    spent = result.privacy
    assert spent["delta"] == 1e-5 and spent["accountant"] == "prv"
    assert spent["max_grad_norm"] == 1.0
    assert spent["steps"] == 20 * math.ceil(len(digits.x_train) / 256)
    assert spent["sample_rate"] == pytest.approx(1 / math.ceil(len(digits.x_train) / 256))
    assert spent["epsilon"] <= 3.0
    # What Opacus's own accountant says for the same noise, sampling rate and steps.
    assert spent["epsilon"] == pytest.approx(_opacus_epsilon(spent), rel=0.01)
    # ε spent so far rides on the events, growing with the steps.
    reported = [e["privacy"] for e in events.events if e["type"] == "epoch"]
    assert len(reported) == 20
    epsilons = [r["epsilon"] for r in reported]
    assert epsilons == sorted(epsilons) and 0 < epsilons[-1] <= spent["epsilon"]
    # The trained model is the catalog's own (no Opacus hooks), loadable as any version.
    fresh = build_model(MLP)
    fresh.load_state_dict(result.model.state_dict())
    assert not hasattr(result.model, "autograd_grad_sample_hooks")


def test_a_noise_multiplier_runs_as_given_with_rdp(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}
    config = {
        "device": "cpu",
        "epochs": 2,
        "batch_size": 16,
        "privacy": {"noise_multiplier": 1.2, "target_delta": 1e-3, "accountant": "rdp"},
    }
    result = train(spec, config, iris.x_train, iris.y_train)
    assert result.privacy is not None
    assert result.privacy["noise_multiplier"] == 1.2
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(1.2, result.privacy["sample_rate"], result.privacy["steps"])]
    assert result.privacy["epsilon"] == pytest.approx(accountant.get_epsilon(1e-3), rel=1e-9)


class Crash(Exception):
    pass


class CrashAfter(BaseCallbacks):
    """Keeps checkpoints as bytes (as the blob store does) and dies after ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.stored: list[bytes] = []

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.stored.append(checkpoint_to_bytes(state))

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "step" and event["step"] == self.step:
            raise Crash


def test_a_killed_private_run_resumes_to_the_same_epsilon_and_weights(
    digits: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both runs draw the same secret, so that their weights can be compared too.
    monkeypatch.setattr(privacy_module, "fresh_secret", lambda: 12345)
    config = {
        **PRIVATE,
        "epochs": 3,
        "checkpoint_every_steps": 4,
        "log_every_steps": 1,
        "privacy": {"noise_multiplier": 1.5, "target_delta": 1e-5},
    }
    whole = train(MLP, config, digits.x_train, digits.y_train)
    crash = CrashAfter(10)
    with pytest.raises(Crash):
        train(MLP, config, digits.x_train, digits.y_train, callbacks=crash)
    checkpoint = checkpoint_from_bytes(crash.stored[-1])
    assert checkpoint["global_step"] == 8
    # The accountant's state is plain JSON numbers in the checkpoint, not a pickle.
    assert checkpoint["privacy"]["history"] == [[1.5, pytest.approx(1 / 6), 8]]
    monkeypatch.setattr(privacy_module, "fresh_secret", lambda: 999)  # resuming draws none
    resumed = train(MLP, config, digits.x_train, digits.y_train, resume=checkpoint)
    assert whole.privacy is not None and resumed.privacy is not None
    assert resumed.privacy["steps"] == whole.privacy["steps"] == 18
    assert resumed.privacy["epsilon"] == whole.privacy["epsilon"]
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_the_secret_seed_not_the_config_seed_draws_the_noise(iris: Split) -> None:
    spec = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}
    config = {
        "device": "cpu",
        "epochs": 1,
        "batch_size": 32,
        "privacy": {"noise_multiplier": 1.0, "target_delta": 1e-3},
    }
    a = train(spec, config, iris.x_train, iris.y_train).model.state_dict()
    b = train(spec, config, iris.x_train, iris.y_train).model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_cells_train_privately_through_opacus_layers(cell: str) -> None:
    spec = {
        "arch": "rnn",
        "cell": cell,
        "input_shape": [6, 3],
        "hidden_size": 8,
        "num_outputs": 2,
    }
    check_private_spec(parse_spec_(spec))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, 3, generator=generator).numpy()
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    config = {
        "device": "cpu",
        "epochs": 2,
        "batch_size": 16,
        "privacy": {"noise_multiplier": 1.0, "target_delta": 1e-3},
    }
    result = train(spec, config, x, y)
    assert result.privacy is not None and result.privacy["epsilon"] > 0
    # The version's weights are PyTorch's own recurrent layer's.
    plain = build_model(spec)
    assert type(result.model.rnn) is type(plain.rnn)  # type: ignore[union-attr]
    plain.load_state_dict(result.model.state_dict())
    assert set(result.model.state_dict()) == set(plain.state_dict())


def parse_spec_(spec: dict[str, Any]) -> Any:
    from modelyard.nn.catalog import parse_spec

    return parse_spec(spec)


def test_layers_opacus_cannot_train_are_named() -> None:
    cnn = {
        "arch": "cnn",
        "input_shape": [1, 8, 8],
        "conv": [{"channels": 4, "batch_norm": True}],
        "num_outputs": 10,
    }
    with pytest.raises(InvalidInput, match=r"'features\.0\.norm' \(BatchNorm2d\)"):
        check_private_spec(parse_spec_(cnn))
    transformer = {
        "arch": "transformer",
        "input_shape": [4, 8],
        "d_model": 8,
        "num_heads": 2,
        "num_layers": 1,
        "num_outputs": 2,
    }
    problems = private_layer_problems(build_model(transformer, private=True))
    assert any("self_attn' (MultiheadAttention)" in p for p in problems)


def test_privacy_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="privacy: give target_epsilon or noise_multiplier"):
        parse_config({"privacy": {"target_delta": 1e-5}})
    with pytest.raises(InvalidInput, match=r"privacy\.target_epsilon"):
        parse_config({"privacy": {"target_epsilon": -1, "target_delta": 1e-5}})
    with pytest.raises(InvalidInput, match="grad_clip_norm"):
        parse_config(
            {"grad_clip_norm": 1.0, "privacy": {"target_epsilon": 1, "target_delta": 1e-5}}
        )
    with pytest.raises(InvalidInput, match=r"preprocessing\.standardize"):
        parse_config(
            {
                "preprocessing": {"standardize": True},
                "privacy": {"target_epsilon": 1, "target_delta": 1e-5},
            }
        )
    # Regression targets are not standardized by a private run (they would be by default).
    config = parse_config({"privacy": {"noise_multiplier": 1, "target_delta": 1e-5}})
    assert config.preprocessing.standardize_target is False
    privacy = parse_config({"privacy": {"target_epsilon": 1, "target_delta": 0.01}}).privacy
    assert privacy is not None
    with pytest.raises(InvalidInput, match=r"privacy.target_delta: must be below 1/rows"):
        plan_privacy(privacy, rows=1000, batch_size=100, epochs=1)
    tiny = parse_config({"privacy": {"target_epsilon": 1e-6, "target_delta": 1e-6}}).privacy
    assert tiny is not None
    with pytest.raises(InvalidInput, match=r"privacy\.target_epsilon"):
        plan_privacy(tiny, rows=1000, batch_size=1000, epochs=1000)


def test_poisson_sampling_takes_each_row_with_the_sample_rate() -> None:
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(500)
    sizes = []
    for _ in range(400):
        rows = poisson_batch(generator, 500, 0.1)
        assert torch.equal(rows, torch.unique(rows)) and (rows < 500).all()
        counts[rows] += 1
        sizes.append(len(rows))
    assert np.mean(sizes) == pytest.approx(50, rel=0.05)
    assert float(counts.mean()) / 400 == pytest.approx(0.1, rel=0.05)
    assert torch.equal(poisson_batch(generator, 7, 1.0), torch.arange(7))
