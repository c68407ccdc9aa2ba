"""Differentially private training on scikit-learn's digits: ε against test accuracy.

Trains the catalog MLP (64-64-10) on 80 % of the digits with DP-SGD (Opacus, through the
same loop train jobs run: per-example clipping at C = 1, Poisson batches of about 256 rows,
20 epochs, Adam) at ε ∈ {0.5, 1, 3, 8} and δ = 1e-5 under the PRV accountant, and once
without privacy (ε = ∞), and evaluates each on the held-out 20 %. Each private row shows
the noise multiplier chosen for its target and the ε the run spent; accuracy is the mean
of ``SEEDS`` runs (the noise differs in each: it comes from a secret seed).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

THREADS = 1
SEEDS = 3
TARGETS = (0.5, 1.0, 3.0, 8.0, math.inf)
MLP = {"arch": "mlp", "input_shape": [64], "hidden": [64], "num_outputs": 10}
CONFIG: dict[str, Any] = {
    "device": "cpu",
    "epochs": 20,
    "batch_size": 256,
    "optimizer": {"name": "adam", "lr": 0.02},
    "preprocessing": {"scale": 1 / 16},
    "log_every_steps": 1000,
}
DELTA = 1e-5


def main() -> None:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from modelyard.training import train

    torch.set_num_threads(THREADS)
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y, test_size=0.2, random_state=0, stratify=y
    )
    test = torch.as_tensor(x_test / 16, dtype=torch.float32)
    print(
        f"digits: {len(x_train)} training rows, {len(x_test)} test rows; MLP 64-64-10, "
        f"{CONFIG['epochs']} epochs, batch {CONFIG['batch_size']}, δ={DELTA}, PRV accountant, "
        f"mean of {SEEDS} runs"
    )
    print(f"{'target ε':>9} {'spent ε':>8} {'noise σ':>8} {'accuracy':>9} {'± sd':>6} {'s/run':>6}")
    for target in TARGETS:
        config = dict(CONFIG)
        if math.isfinite(target):
            config["privacy"] = {"target_epsilon": target, "target_delta": DELTA}
        accuracies, spent, noise = [], math.inf, 0.0
        started = time.perf_counter()
        for seed in range(SEEDS):
            result = train(MLP, {**config, "seed": seed}, x_train, y_train)
            with torch.no_grad():
                predicted = result.model(test).argmax(1).numpy()
            accuracies.append(float((predicted == y_test).mean()))
            if result.privacy is not None:
                spent, noise = result.privacy["epsilon"], result.privacy["noise_multiplier"]
        per_run = (time.perf_counter() - started) / SEEDS
        shown = "∞" if math.isinf(target) else f"{target:g}"
        print(
            f"{shown:>9} {spent:>8.3f} {noise:>8.3f} {np.mean(accuracies):>9.3f} "
            f"{np.std(accuracies):>6.3f} {per_run:>6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
