"""The preprocessing transform: fitted on the training split, recorded, replayed in serving.

Inputs: reshape to the spec's input shape, then ``scale``, then ``standardize`` with the
stored mean and std. Labels: string classes become ids in sorted order (``classes``
holds the names), and regression targets may be standardized for training (the stats are
folded into the model's head afterwards, so serving never sees them).

>>> pre = Preprocessor.from_dict(result.preprocessing)  # doctest: +SKIP
>>> model(pre.apply(rows))                               # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec
from modelyard.training.config import PreprocessingConfig
from modelyard.training.objective import Objective

ArrayLike = np.ndarray | torch.Tensor
CHUNK_ROWS = 8192
# Features whose spread is below this are treated as constant (e.g. an image's blank border).
MIN_STD = 1e-6


def row_shape_fits(row: tuple[int, ...] | list[int], input_shape: list[int]) -> bool:
    """Whether rows of shape ``row`` can be read as ``input_shape``.

    They can when equal, when ``row`` is flat with the same number of values (``[64]`` for
    ``[1, 8, 8]``), or when only a leading 1 is missing (``[8, 8]`` for ``[1, 8, 8]``).
    """
    row = list(row)
    if row == input_shape:
        return True
    if len(row) == 1 and row[0] == math.prod(input_shape):
        return True
    return input_shape[0] == 1 and row == input_shape[1:]


def _stats_shape(spec: ArchSpec) -> list[int]:
    # Images share statistics per channel, sequences per feature, flat inputs per value.
    shape = spec.input_shape
    if spec.arch == "cnn":
        return [shape[0], 1, 1] if len(shape) == 3 else [1, 1]
    if spec.arch in ("rnn", "transformer"):
        return [1, shape[1]]
    return list(shape)


def _numeric(part: np.ndarray, what: str) -> np.ndarray:
    if part.dtype.kind not in "biuf":
        raise InvalidInput(f"{what}: must be numeric, got dtype {part.dtype}")
    return part


@dataclass
class Preprocessor:
    """A JSON-able transform; see the module docstring for what it does, in which order."""

    input_shape: list[int]
    token_ids: bool = False
    vocab_size: int | None = None
    scale: float | None = None
    standardize: bool = False
    stats_shape: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    task: str = "classification"
    num_outputs: int = 1
    one_hot: bool = False
    classes: list[str] | None = None
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    standardize_target: bool = False
    version: int = 1

    @classmethod
    def for_training(
        cls, spec: ArchSpec, config: PreprocessingConfig, objective: Objective
    ) -> Preprocessor:
        """An unfitted transform for ``spec`` as ``config`` asks."""
        tokens = spec.takes_token_ids
        if tokens and (config.scale is not None or config.standardize):
            name = "scale" if config.scale is not None else "standardize"
            raise InvalidInput(f"config.preprocessing.{name}: token ids cannot be rescaled")
        standardize_target = (
            objective.task == "regression" and config.standardize_target is not False
        )
        return cls(
            input_shape=list(spec.input_shape),
            token_ids=tokens,
            vocab_size=getattr(spec, "vocab_size", None),
            scale=config.scale,
            standardize=config.standardize,
            stats_shape=_stats_shape(spec) if config.standardize else None,
            task=objective.task,
            num_outputs=spec.num_outputs,
            one_hot=objective.one_hot,
            standardize_target=standardize_target,
        )

    def fit(self, x: ArrayLike, y: ArrayLike, rows: np.ndarray | None = None) -> Preprocessor:
        """Learn the statistics from rows ``rows`` (default all) of ``x`` and ``y``."""
        rows = np.arange(len(x)) if rows is None else np.sort(rows)
        if self.standardize:
            self._fit_inputs(x, rows)
        labels = _as_numpy(y)
        if labels.dtype.kind in "OUS" and labels.ndim == 1:
            self.classes = sorted({str(v) for v in labels[rows]})
        if self.standardize_target:
            targets = _numeric(np.asarray(labels[rows], dtype=np.float64), "label")
            targets = targets.reshape(len(rows), -1)
            self.target_mean = targets.mean(axis=0).tolist()
            self.target_std = [s if s > MIN_STD else 1.0 for s in targets.std(axis=0).tolist()]
        return self

    def _fit_inputs(self, x: ArrayLike, rows: np.ndarray) -> None:
        assert self.stats_shape is not None
        axes = (0, *(i + 1 for i, size in enumerate(self.stats_shape) if size == 1))
        total = np.zeros(self.stats_shape)
        count = 0
        # Two passes over chunks: exact enough in float64 and never the whole set in memory.
        for part in self._chunks(x, rows):
            total += part.sum(axis=axes).reshape(self.stats_shape)
            count += part.size // math.prod(self.stats_shape)
        mean = total / max(count, 1)
        squares = np.zeros(self.stats_shape)
        for part in self._chunks(x, rows):
            squares += ((part - mean) ** 2).sum(axis=axes).reshape(self.stats_shape)
        std = np.sqrt(squares / max(count, 1))
        self.mean = mean.ravel().tolist()
        self.std = np.where(std > MIN_STD, std, 1.0).ravel().tolist()

    def _chunks(self, x: ArrayLike, rows: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(rows), CHUNK_ROWS):
            index = rows[start : start + CHUNK_ROWS]
            part = self._reshape(_numeric(_as_numpy(x[index]), "features").astype(np.float64))
            yield part * self.scale if self.scale is not None else part

    def _reshape(self, part: np.ndarray) -> np.ndarray:
        if not row_shape_fits(part.shape[1:], self.input_shape):
            raise InvalidInput(
                f"input: rows of shape {list(part.shape[1:])} do not fit the model's input "
                f"shape {self.input_shape}",
                expected=[-1, *self.input_shape],
                got=list(part.shape),
            )
        return part.reshape(len(part), *self.input_shape)

    def apply(self, x: ArrayLike, rows: np.ndarray | None = None) -> torch.Tensor:
        """``x`` (or its rows ``rows``) as the model's input tensor, float32 or int64 ids."""
        count = len(x) if rows is None else len(rows)
        dtype = torch.int64 if self.token_ids else torch.float32
        out = torch.empty((count, *self.input_shape), dtype=dtype)
        for start in range(0, count, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, count)
            part = x[start:end] if rows is None else x[rows[start:end]]
            out[start:end] = self._transform(_numeric(_as_numpy(part), "input"))
        return out

    def _transform(self, part: np.ndarray) -> torch.Tensor:
        part = self._reshape(part)
        if self.token_ids:
            return self._token_ids(part)
        values = torch.from_numpy(np.array(part, dtype=np.float32))
        if not torch.isfinite(values).all():
            raise InvalidInput("input: contains NaN or infinite values")
        return self.transform_floats(values)

    def transform_floats(self, values: torch.Tensor) -> torch.Tensor:
        """Float rows of a shape :func:`row_shape_fits` takes as the model's input, with
        torch operations only, so gradients flow back to the rows (explanations use it)."""
        values = values.reshape(len(values), *self.input_shape)
        if self.scale is not None:
            values = values * self.scale
        if self.mean is not None and self.std is not None and self.stats_shape is not None:
            kind, device = values.dtype, values.device
            mean = torch.tensor(self.mean, dtype=kind, device=device).reshape(self.stats_shape)
            std = torch.tensor(self.std, dtype=kind, device=device).reshape(self.stats_shape)
            values = (values - mean) / std
        return values

    def _token_ids(self, part: np.ndarray) -> torch.Tensor:
        if part.dtype.kind == "f" and not np.array_equal(part, np.round(part)):
            raise InvalidInput("input: token ids must be whole numbers")
        ids = torch.from_numpy(np.array(part, dtype=np.int64))
        if ids.numel():
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or (self.vocab_size is not None and high >= self.vocab_size):
                bad = low if low < 0 else high
                raise InvalidInput(
                    f"input: token id {bad} is outside [0, {self.vocab_size}) (spec.vocab_size)"
                )
        return ids

    def encode_labels(self, y: ArrayLike, rows: np.ndarray | None = None) -> torch.Tensor:
        """Labels as training uses them: class ids (int64) or float targets ``[N, outputs]``."""
        labels = _as_numpy(y)
        if rows is not None:
            labels = labels[rows]
        if self.task == "regression":
            values = np.array(_numeric(labels, "label"), dtype=np.float32)
            return torch.from_numpy(values.reshape(len(values), -1))
        if labels.ndim > 1:
            return torch.from_numpy(np.array(_numeric(labels, "label"), dtype=np.float32))
        if self.classes is not None:
            names = np.asarray([str(v) for v in labels])
            index = np.searchsorted(self.classes, names)
            known = index < len(self.classes)
            known[known] = np.asarray(self.classes)[index[known]] == names[known]
            if not known.all():
                unknown = str(names[~known][0])
                raise InvalidInput(f"label: {unknown!r} is not one of the training classes")
            return torch.from_numpy(index.astype(np.int64))
        return torch.from_numpy(np.array(_numeric(labels, "label"), dtype=np.int64))

    def decode_labels(self, ids: ArrayLike) -> list[Any]:
        """Class ids back to the labels they stand for (names when the labels were strings)."""
        values = _as_numpy(ids).astype(np.int64).tolist()
        return [self.classes[i] for i in values] if self.classes is not None else values

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; :meth:`from_dict` rebuilds the same transform."""
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        """The transform :meth:`to_dict` recorded."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in state.items() if k in known})


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
