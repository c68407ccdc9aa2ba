"""Training: configs, data loading, preprocessing, the loop, checkpoints, evaluation.

::

    from modelyard.training import BaseCallbacks, load_xy, train

    x, y = load_xy({"data.parquet": path}, "table", label="target", features=None)
    result = train(spec, {"epochs": 10, "optimizer": {"name": "adam", "lr": 1e-3}}, x, y)
    result.metrics["train"]["accuracy"]

A checkpoint is a plain dict (see :class:`TrainCallbacks`); :func:`checkpoint_to_bytes`
stores it without pickle, and passing it back as ``train(..., resume=...)`` continues the
run so that it ends with exactly the weights of an uninterrupted run.
"""

from typing import TYPE_CHECKING

from modelyard.lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.training.callbacks import BaseCallbacks, TrainCallbacks
    from modelyard.training.checkpoint import checkpoint_from_bytes, checkpoint_to_bytes
    from modelyard.training.config import (
        EarlyStoppingConfig,
        LossConfig,
        OptimizerConfig,
        PreprocessingConfig,
        ScheduleConfig,
        TrainConfig,
        ValidationConfig,
        parse_config,
    )
    from modelyard.training.data import check_fit, load_xy
    from modelyard.training.device import resolve_device
    from modelyard.training.finetune import freeze, load_initial_weights
    from modelyard.training.loop import epoch_order, train
    from modelyard.training.metrics import evaluate
    from modelyard.training.objective import Objective
    from modelyard.training.preprocess import Preprocessor, row_shape_fits
    from modelyard.training.result import TrainResult
    from modelyard.training.schedule import lr_at

__all__ = [
    "BaseCallbacks",
    "EarlyStoppingConfig",
    "LossConfig",
    "Objective",
    "OptimizerConfig",
    "PreprocessingConfig",
    "Preprocessor",
    "ScheduleConfig",
    "TrainCallbacks",
    "TrainConfig",
    "TrainResult",
    "ValidationConfig",
    "check_fit",
    "checkpoint_from_bytes",
    "checkpoint_to_bytes",
    "epoch_order",
    "evaluate",
    "freeze",
    "load_initial_weights",
    "load_xy",
    "lr_at",
    "parse_config",
    "resolve_device",
    "row_shape_fits",
    "train",
]

# Loaded on first use: importing a light submodule must not load PyTorch.
__getattr__ = lazy_exports(
    __name__,
    {
        "modelyard.training.callbacks": (
            "BaseCallbacks",
            "TrainCallbacks",
        ),
        "modelyard.training.checkpoint": (
            "checkpoint_from_bytes",
            "checkpoint_to_bytes",
        ),
        "modelyard.training.config": (
            "EarlyStoppingConfig",
            "LossConfig",
            "OptimizerConfig",
            "PreprocessingConfig",
            "ScheduleConfig",
            "TrainConfig",
            "ValidationConfig",
            "parse_config",
        ),
        "modelyard.training.data": (
            "check_fit",
            "load_xy",
        ),
        "modelyard.training.device": ("resolve_device",),
        "modelyard.training.finetune": (
            "freeze",
            "load_initial_weights",
        ),
        "modelyard.training.loop": (
            "epoch_order",
            "train",
        ),
        "modelyard.training.metrics": ("evaluate",),
        "modelyard.training.objective": ("Objective",),
        "modelyard.training.preprocess": (
            "Preprocessor",
            "row_shape_fits",
        ),
        "modelyard.training.result": ("TrainResult",),
        "modelyard.training.schedule": ("lr_at",),
    },
)
