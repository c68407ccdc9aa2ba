"""What a caller sends, checked, cast and preprocessed into what the model takes.

Inputs arrive raw, as the user's data looks (digits pixels 0..16, say); the version's
recorded preprocessing turns them into what the model was trained on, so that served
predictions equal what training evaluated. Every refusal is an
:class:`~modelyard.errors.InvalidInput` naming the tensor and, for shapes, the dimension::

    input 'input': dimension 1 is 63, the model needs 64
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.runtimes.tensors import NUMPY_DTYPES, TensorSpec

if TYPE_CHECKING:
    from modelyard.training.preprocess import Preprocessor


def preprocessor_from_params(params: Mapping[str, Any]) -> Preprocessor | None:
    """The transform recorded under ``params["preprocessing"]``, or None when there is none."""
    state = params.get("preprocessing")
    if state is None:
        return None
    if not isinstance(state, Mapping) or "input_shape" not in state:
        raise InvalidInput("params.preprocessing: must be the object training recorded")
    from modelyard.training.preprocess import Preprocessor

    return Preprocessor.from_dict(dict(state))


def preprocessed_spec(name: str, preprocessor: Preprocessor) -> TensorSpec:
    """The tensor ``preprocessor`` makes: float32 features or int64 token ids."""
    datatype = "INT64" if preprocessor.token_ids else "FP32"
    return TensorSpec(name, datatype, [-1, *preprocessor.input_shape])


class InputPipeline:
    """Turns the request's tensors into the model's, in four steps.

    1. Every input the model takes is present, nothing else is, and all share one
       non-empty batch (the first dimension).
    2. Each tensor's rank and non-batch dimensions match its spec. With a recorded
       preprocessing, rows it can reshape fit too (flat ``[64]`` rows for ``[1, 8, 8]``).
    3. Element types are cast where no value changes meaning: ints and bools to floats,
       floats to a narrower float, floats to ints only when whole, ints only within the
       target's range. Float inputs must be finite. Where a spec has no datatype, floats
       are cast to ``default_float`` (the model's parameters' type) and ints kept.
    4. The recorded preprocessing is applied.

    Holds no per-call state, so one pipeline serves concurrent calls.
    """

    def __init__(
        self,
        specs: list[TensorSpec],
        preprocessor: Preprocessor | None = None,
        *,
        default_float: np.dtype[Any] | None = None,
    ) -> None:
        if preprocessor is not None and len(specs) != 1:
            names = ", ".join(repr(s.name) for s in specs)
            raise InvalidInput(
                f"params.preprocessing: a recorded preprocessing needs a model with one input; "
                f"this one takes {names}"
            )
        if preprocessor is not None and specs[0].shape is not None:
            wanted = specs[0].shape[1:]
            made = preprocessor.input_shape
            if len(wanted) != len(made) or any(
                w not in (-1, m) for w, m in zip(wanted, made, strict=True)
            ):
                raise InvalidInput(
                    f"params.preprocessing: it makes rows of shape {made}, but the model's "
                    f"input {specs[0].name!r} needs {wanted}"
                )
        self.specs = specs
        self.preprocessor = preprocessor
        self.default_float = default_float if default_float is not None else np.dtype(np.float32)

    def prepare(self, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The checked, cast and preprocessed arrays, by input name, C-contiguous."""
        wanted = {spec.name for spec in self.specs}
        unknown = sorted(set(given) - wanted)
        if unknown:
            takes = ", ".join(repr(s.name) for s in self.specs)
            raise InvalidInput(f"unknown input {unknown[0]!r}; the model takes {takes}")
        arrays: dict[str, np.ndarray] = {}
        rows: tuple[str, int] | None = None
        for spec in self.specs:
            if spec.name not in given:
                raise InvalidInput(
                    f"input {spec.name!r} is missing; the model needs {spec.describe()}"
                )
            array = np.asarray(given[spec.name])
            self._check_shape(spec, array)
            if rows is not None and array.shape[0] != rows[1]:
                raise InvalidInput(
                    f"input {spec.name!r}: dimension 0 (the batch) is {array.shape[0]}, but "
                    f"input {rows[0]!r} has {rows[1]}"
                )
            rows = (spec.name, array.shape[0])
            array = cast_input(spec.name, array, spec.datatype, self.default_float)
            if self.preprocessor is not None:
                array = self.preprocessor.apply(array).numpy()
            arrays[spec.name] = np.ascontiguousarray(array)
        return arrays

    def _check_shape(self, spec: TensorSpec, array: np.ndarray) -> None:
        if array.ndim == 0:
            raise InvalidInput(f"input {spec.name!r}: is a scalar; it needs a batch dimension")
        if array.shape[0] == 0:
            raise InvalidInput(f"input {spec.name!r}: dimension 0 (the batch) is empty")
        if self.preprocessor is not None:
            from modelyard.training.preprocess import row_shape_fits

            if row_shape_fits(array.shape[1:], self.preprocessor.input_shape):
                return
        if spec.shape is None:
            return
        if array.ndim != len(spec.shape):
            raise InvalidInput(
                f"input {spec.name!r}: has {array.ndim} dimensions {list(array.shape)}, the "
                f"model needs {len(spec.shape)}: {spec.shape}"
            )
        for index in range(1, array.ndim):
            need = spec.shape[index]
            if need != -1 and array.shape[index] != need:
                raise InvalidInput(
                    f"input {spec.name!r}: dimension {index} is {array.shape[index]}, the model "
                    f"needs {need}"
                )


def cast_input(
    name: str, array: np.ndarray, datatype: str | None, default_float: np.dtype[Any]
) -> np.ndarray:
    """``array`` as ``datatype``; InvalidInput where a value would change meaning."""
    kind = array.dtype.kind
    if datatype == "BYTES":
        if kind not in "OUS":
            raise InvalidInput(f"input {name!r}: holds {array.dtype} values; the model takes BYTES")
        return array.astype(object, copy=False)
    if kind not in "biuf":
        raise InvalidInput(
            f"input {name!r}: holds {array.dtype} values, which cannot be read as "
            f"{datatype or 'numbers'}"
        )
    if kind == "f":
        _check_finite(name, array)
    if datatype is None:
        target = default_float if kind == "f" else array.dtype
    else:
        target = NUMPY_DTYPES[datatype]
    if target.kind == "f":
        # Overflow becomes inf, which the check below reports with its row.
        with np.errstate(over="ignore"):
            out = array.astype(target, copy=False)
        if kind == "f" and out.dtype.itemsize < array.dtype.itemsize:
            _check_finite(name, out, overflow=datatype)
        return out
    if target.kind == "b":
        if kind != "b" and not np.isin(array, (0, 1)).all():
            raise InvalidInput(f"input {name!r}: the model takes BOOL; values must be 0 or 1")
        return array.astype(bool, copy=False)
    if kind == "f" and not np.array_equal(array, np.round(array)):
        bad = array[array != np.round(array)].flat[0]
        raise InvalidInput(
            f"input {name!r}: {bad} is not a whole number; the model takes {datatype}"
        )
    if array.size and kind != "b":
        info = np.iinfo(target)
        low, high = array.min().item(), array.max().item()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(
                f"input {name!r}: value {bad} is outside the range of {datatype} "
                f"[{info.min}, {info.max}]"
            )
    return array.astype(target, copy=False)


def _check_finite(name: str, array: np.ndarray, overflow: str | None = None) -> None:
    finite = np.isfinite(array)
    if finite.all():
        return
    where = np.argwhere(~finite)[0]
    if overflow is not None:
        raise InvalidInput(f"input {name!r}: a value in row {where[0]} is too large for {overflow}")
    raise InvalidInput(f"input {name!r}: row {where[0]} holds NaN or infinite values")
