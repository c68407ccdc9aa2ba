"""Explanations of a served model's outputs: per-input attributions with Captum.

Four methods, each attributing one output score (``target``, a class index; default the
predicted class) to every value of the raw input the caller sent, in the input's shape:

=========================  ==========================================  ===================
method                     needs                                       cost, in model rows
=========================  ==========================================  ===================
``integrated_gradients``   a torch module (gradients), float inputs    rows × ``n_steps``
``saliency``               a torch module (gradients), float inputs    rows
``occlusion``              any runtime (its own forward)               rows × windows
``kernel_shap``            any runtime (its own forward)               rows × ``n_samples``
=========================  ==========================================  ===================

The gradient methods differentiate through the version's recorded preprocessing
(:meth:`~modelyard.training.preprocess.Preprocessor.transform_floats`) and the loaded torch
module, so attributions are of the raw values (digits pixels 0..16, a table's columns);
integrated gradients also reports its convergence delta, ``sum(attributions) -
(f(x) - f(baseline))`` per row. The perturbation methods call the runtime's ``infer`` (ONNX
Runtime, Keras, TorchScript, torch alike), a bounded number of rows at a time.

Every request is bounded before any work starts (:class:`ExplainLimits`, from the settings):
rows, ``n_steps``, ``n_samples`` and the total of model rows; a request over a bound is
refused with InvalidInput naming the field. Kernel SHAP fits its weighted linear model in
closed form (least squares in torch), so scikit-learn is not needed.

Importing this module imports neither torch nor Captum; :func:`explain` does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.runtimes.tensors import NUMPY_DTYPES

if TYPE_CHECKING:
    import torch

    from modelyard.config import Settings

Method = Literal["integrated_gradients", "saliency", "occlusion", "kernel_shap"]
METHODS: tuple[Method, ...] = get_args(Method)
GRADIENT_METHODS = ("integrated_gradients", "saliency")
GRADIENT_RUNTIMES = ("torch", "torchscript")
"""Runtimes whose loaded module is a differentiable ``torch.nn.Module``."""
DEFAULT_STEPS = 50
DEFAULT_SAMPLES = 200


@dataclass(frozen=True)
class ExplainLimits:
    """What one explanation may cost; see the ``explain_*`` settings."""

    max_rows: int = 64
    max_steps: int = 512
    max_samples: int = 4096
    max_evaluations: int = 200_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ExplainLimits:
        return cls(
            max_rows=settings.explain_max_rows,
            max_steps=settings.explain_max_steps,
            max_samples=settings.explain_max_samples,
            max_evaluations=settings.explain_max_evaluations,
        )


@dataclass(frozen=True)
class ExplainOptions:
    """What to explain and how (the request's fields, as the API documents them)."""

    method: Method = "integrated_gradients"
    target: int | list[int] | None = None
    """The output column to explain, for every row or one per row; default the argmax."""
    baseline: Any = None
    """A number, an array of the input's shape (or one row of it), or such by input name;
    default zeros."""
    output: str | None = None
    """Which output of a model with several; default ``output`` or the only one."""
    n_steps: int | None = None
    n_samples: int | None = None
    window: int | list[int] | None = None
    """Occlusion's window over a row's dimensions (an int: that size in each, clipped)."""
    stride: int | list[int] | None = None
    """Occlusion's step between windows; default the window."""
    seed: int = 0
    """Kernel SHAP's sampling seed."""


@dataclass
class Explanation:
    """Attributions by input name, each in the shape of the input sent."""

    method: Method
    output: str
    target: list[int | None]
    attributions: dict[str, np.ndarray]
    convergence_delta: list[float] | None = None


def check_method(value: str) -> Method:
    """``value`` as a method name; InvalidInput naming the field otherwise."""
    if value not in METHODS:
        raise InvalidInput(f"method: {value!r} is not one of {', '.join(METHODS)}", field="method")
    return cast(Method, value)  # type: ignore[redundant-cast]


def explain(
    runtime: Any,
    inputs: Mapping[str, np.ndarray],
    options: ExplainOptions,
    limits: ExplainLimits,
    *,
    batch_rows: int,
    check: Callable[[], None] = lambda: None,
) -> Explanation:
    """Attributions of ``runtime``'s output for ``inputs`` (raw, batched along axis 0).

    ``batch_rows`` is the most rows one call of the model gets (the deployment's
    ``max_batch_size``); ``check`` is called before every such call and may raise to stop
    (a deadline, a cancelled request). Blocking: run it in a thread.

    Raises InvalidInput naming the field for a request this runtime cannot explain or that
    is over a bound of ``limits``.
    """
    check_method(options.method)
    names = [spec.name for spec in runtime.inputs]
    arrays = {name: np.asarray(inputs[name]) for name in names if name in inputs}
    runtime.pipeline.prepare(inputs)  # the inputs fit the model (InvalidInput otherwise)
    rows = next(iter(arrays.values())).shape[0]
    if rows > limits.max_rows:
        raise InvalidInput(
            f"inputs: {rows} rows; an explanation takes at most {limits.max_rows} "
            "(MODELYARD_EXPLAIN_MAX_ROWS)",
            field="inputs",
        )
    _check_cost(options, arrays, rows, limits)
    gradient = options.method in GRADIENT_METHODS
    if gradient:
        _check_differentiable(runtime, options.method)
    output = _output_name(runtime, options.output)
    check()
    scores = runtime.infer(inputs)[output]
    targets = _targets(options.target, scores, rows, output)
    baselines = _baselines(options.baseline, arrays, names)
    import torch  # loaded only when a model is explained

    with warnings.catch_warnings():
        # Captum warns about what is intended here (inputs set to require gradients,
        # several examples explained at once by Kernel SHAP).
        warnings.simplefilter("ignore", UserWarning)
        if gradient:
            return _explain_gradients(
                runtime, arrays, baselines, options, output, targets, batch_rows, check
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            return _explain_perturbations(
                runtime, arrays, baselines, options, output, targets, batch_rows, check
            )


# -- bounds ------------------------------------------------------------------------------


def _check_cost(
    options: ExplainOptions, arrays: Mapping[str, np.ndarray], rows: int, limits: ExplainLimits
) -> None:
    method = options.method
    if method == "integrated_gradients":
        steps = options.n_steps or DEFAULT_STEPS
        _at_most("n_steps", steps, limits.max_steps, "MODELYARD_EXPLAIN_MAX_STEPS")
        _evaluations("n_steps", rows * (steps + 1), limits)
    elif method == "kernel_shap":
        samples = options.n_samples or DEFAULT_SAMPLES
        _at_most("n_samples", samples, limits.max_samples, "MODELYARD_EXPLAIN_MAX_SAMPLES")
        _evaluations("n_samples", rows * samples, limits)
    elif method == "occlusion":
        windows = 0
        for array in arrays.values():
            shape = list(array.shape[1:])
            window = _window("window", options.window, shape, [1] * len(shape))
            stride = _window("stride", options.stride, shape, window)
            windows += math.prod(
                (d - w) // s + 1 for d, w, s in zip(shape, window, stride, strict=True)
            )
        field = "stride" if options.stride is not None else "window"
        _evaluations(field, rows * (windows + 1), limits)
    for name in ("n_steps", "n_samples"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise InvalidInput(f"{name}: must be at least 1", field=name)


def _at_most(field: str, value: int, bound: int, setting: str) -> None:
    if value < 1:
        raise InvalidInput(f"{field}: must be at least 1", field=field)
    if value > bound:
        raise InvalidInput(
            f"{field}: {value} is more than this server allows ({bound}; {setting})", field=field
        )


def _evaluations(field: str, count: int, limits: ExplainLimits) -> None:
    if count > limits.max_evaluations:
        raise InvalidInput(
            f"{field}: this explanation would run the model on {count} rows; this server "
            f"allows {limits.max_evaluations} (MODELYARD_EXPLAIN_MAX_EVALUATIONS): send fewer "
            f"rows or ask for less ({field})",
            field=field,
        )


def _window(
    field: str, value: int | list[int] | None, shape: list[int], default: list[int]
) -> list[int]:
    """A window (or stride) over a row of ``shape``: given per dimension, or one size for
    every dimension (clipped to it)."""
    if value is None:
        return list(default)
    if isinstance(value, int):
        sizes = [min(value, d) for d in shape]
    else:
        sizes = list(value)
        if len(sizes) != len(shape):
            raise InvalidInput(
                f"{field}: has {len(sizes)} sizes; a row of the input has {len(shape)} "
                f"dimensions {shape}",
                field=field,
            )
    for size, dim in zip(sizes, shape, strict=True):
        if size < 1 or (field == "window" and size > dim):
            raise InvalidInput(
                f"{field}: {sizes} does not fit a row of shape {shape} (each size 1..dimension)",
                field=field,
            )
    return sizes


# -- what is explained -------------------------------------------------------------------


def _check_differentiable(runtime: Any, method: str) -> None:
    name = str(getattr(runtime, "name", ""))
    if name not in GRADIENT_RUNTIMES or getattr(runtime, "module", None) is None:
        raise InvalidInput(
            f"method: {method} needs the gradients of a torch model; this deployment runs on "
            f"{name or 'another runtime'}. Use occlusion or kernel_shap, or deploy the version "
            "with runtime torch",
            field="method",
        )
    pre = runtime.pipeline.preprocessor
    for spec in runtime.inputs:
        kind = NUMPY_DTYPES[spec.datatype].kind if spec.datatype else "f"
        if kind != "f" or (pre is not None and pre.token_ids):
            raise InvalidInput(
                f"method: {method} needs float inputs; input {spec.name!r} takes "
                f"{'token ids' if pre is not None and pre.token_ids else spec.datatype}. "
                "Use occlusion or kernel_shap",
                field="method",
            )


def _output_name(runtime: Any, wanted: str | None) -> str:
    names: list[str] = [spec.name for spec in runtime.outputs]
    if wanted is not None:
        if wanted not in names:
            raise InvalidInput(
                f"output: the model has no output {wanted!r}; it returns {names}", field="output"
            )
        return wanted
    if "output" in names:
        return "output"
    if len(names) == 1:
        return names[0]
    raise InvalidInput(
        f"output: the model returns {names}; name the one to explain", field="output"
    )


def _targets(
    target: int | list[int] | None, scores: np.ndarray, rows: int, output: str
) -> list[int | None]:
    """One column per row (None for an output of one score per row)."""
    if scores.ndim == 1:
        if target not in (None, 0) and target != [0] * rows:
            raise InvalidInput(f"target: output {output!r} has one score per row", field="target")
        return [None] * rows
    if scores.ndim != 2:
        raise InvalidInput(
            f"output: {output!r} has shape {list(scores.shape)}; explanations take outputs of "
            "shape [N] or [N, C]",
            field="output",
        )
    columns = scores.shape[1]
    if target is None:
        return [int(i) for i in scores.argmax(axis=1)] if columns > 1 else [0] * rows
    wanted = [target] * rows if isinstance(target, int) else list(target)
    if len(wanted) != rows:
        raise InvalidInput(
            f"target: {len(wanted)} targets for {rows} rows; give one, or one per row",
            field="target",
        )
    for value in wanted:
        if not 0 <= value < columns:
            raise InvalidInput(
                f"target: {value} is not a column of output {output!r} (0..{columns - 1})",
                field="target",
            )
    return [int(v) for v in wanted]


def _baselines(
    given: Any, arrays: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, np.ndarray]:
    """A baseline per input, in the input's shape (float64)."""
    if isinstance(given, Mapping):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InvalidInput(f"baseline: unknown input {unknown[0]!r}", field="baseline")
        per_input = {name: given.get(name) for name in names}
    else:
        if given is not None and not _is_number(given) and len(names) != 1:
            raise InvalidInput(
                "baseline: this model takes several inputs; give a number or one per input name",
                field="baseline",
            )
        per_input = {name: given for name in names}
    out: dict[str, np.ndarray] = {}
    for name, value in per_input.items():
        shape = arrays[name].shape
        where = f"baseline.{name}" if len(names) > 1 else "baseline"
        try:
            base = np.asarray(0.0 if value is None else value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"{where}: must be numbers", field="baseline") from None
        if base.shape == shape[1:]:
            base = np.broadcast_to(base, shape)
        elif base.ndim == 0:
            base = np.full(shape, float(base))
        elif base.shape != shape:
            raise InvalidInput(
                f"{where}: has shape {list(base.shape)}; give a number, one row "
                f"{list(shape[1:])} or the input's shape {list(shape)}",
                field="baseline",
            )
        if not np.isfinite(base).all():
            raise InvalidInput(f"{where}: holds NaN or infinite values", field="baseline")
        out[name] = np.ascontiguousarray(base)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the methods -------------------------------------------------------------------------


def _float_dtype(spec: Any) -> np.dtype[Any]:
    if spec.datatype in ("FP64", "FP16"):
        return NUMPY_DTYPES[spec.datatype]
    return np.dtype(np.float32)


def _explain_gradients(
    runtime: Any,
    arrays: Mapping[str, np.ndarray],
    baselines: Mapping[str, np.ndarray],
    options: ExplainOptions,
    output: str,
    targets: list[int | None],
    batch_rows: int,
    check: Callable[[], None],
) -> Explanation:
    import torch  # loaded only when a model is explained
    from captum.attr import IntegratedGradients, Saliency

    module = runtime.module
    device = torch.device(runtime.device)
    specs = runtime.inputs
    pre = runtime.pipeline.preprocessor
    output_names = [spec.name for spec in runtime.outputs]

    def tensors(source: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.from_numpy(np.array(source[s.name], dtype=_float_dtype(s))).to(device)
            for s in specs
        )

    def forward(*raw: torch.Tensor) -> torch.Tensor:
        check()
        model_inputs = [pre.transform_floats(raw[0])] if pre is not None else list(raw)
        model_inputs = [
            t.to(torch.bfloat16) if s.datatype == "BF16" else t
            for t, s in zip(model_inputs, specs, strict=True)
        ]
        return _pick(module(*model_inputs), output_names, output)

    inputs = tensors(arrays)
    target = _captum_target(targets)
    delta: list[float] | None = None
    try:
        if options.method == "saliency":
            attributions = Saliency(forward).attribute(inputs, target=target)
        else:
            rows = len(targets)
            attributions, deltas = IntegratedGradients(forward).attribute(
                inputs,
                baselines=tensors(baselines),
                target=target,
                n_steps=options.n_steps or DEFAULT_STEPS,
                internal_batch_size=max(batch_rows, rows),
                return_convergence_delta=True,
            )
            delta = [float(d) for d in deltas.detach().cpu().reshape(-1)]
    except ModelyardError:
        raise
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"method: {options.method} cannot differentiate this model ({_first_line(exc)}); "
            "use occlusion or kernel_shap",
            field="method",
        ) from None
    return Explanation(
        method=options.method,
        output=output,
        target=targets,
        attributions=_as_arrays(attributions, specs, arrays),
        convergence_delta=delta,
    )


def _explain_perturbations(
    runtime: Any,
    arrays: Mapping[str, np.ndarray],
    baselines: Mapping[str, np.ndarray],
    options: ExplainOptions,
    output: str,
    targets: list[int | None],
    batch_rows: int,
    check: Callable[[], None],
) -> Explanation:
    import torch  # loaded only when a model is explained
    from captum.attr import KernelShap, Occlusion

    specs = runtime.inputs
    names = [s.name for s in specs]

    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        check()
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors, strict=True)}
        scores = np.asarray(runtime.infer(feed)[output], dtype=np.float64)
        return torch.from_numpy(scores)

    def tensors(source: Mapping[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(np.asarray(source[n], dtype=np.float64)) for n in names)

    inputs, bases = tensors(arrays), tensors(baselines)
    rows = len(targets)
    target = _captum_target(targets)
    if options.method == "occlusion":
        windows, strides = [], []
        for name in names:
            shape = list(arrays[name].shape[1:])
            window = _window("window", options.window, shape, [1] * len(shape))
            windows.append(tuple(window))
            strides.append(tuple(_window("stride", options.stride, shape, window)))
        attributions = Occlusion(forward).attribute(
            inputs,
            sliding_window_shapes=tuple(windows),
            strides=tuple(strides),
            baselines=bases,
            target=target,
            perturbations_per_eval=max(1, batch_rows // rows),
        )
    else:
        samples = options.n_samples or DEFAULT_SAMPLES
        shap = KernelShap(forward)
        shap.interpretable_model = _least_squares_model()
        attributions = shap.attribute(
            inputs,
            baselines=bases,
            target=target,
            n_samples=samples,
            perturbations_per_eval=max(1, min(samples, batch_rows)),
        )
    return Explanation(
        method=options.method,
        output=output,
        target=targets,
        attributions=_as_arrays(attributions, specs, arrays),
    )


def _least_squares_model() -> Any:
    """Kernel SHAP's weighted linear regression, solved in closed form with torch (Captum's
    default fits it with scikit-learn)."""
    import torch  # loaded only when a model is explained
    from captum._utils.models.linear_model import LinearModel

    def fit(model: Any, dataloader: Any, construct_kwargs: Any, **_: Any) -> dict[str, float]:
        xs, ys, ws = [], [], []
        for x, y, w in dataloader:
            xs.append(x.double())
            ys.append(y.double().reshape(len(y), -1))
            ws.append(w.double().reshape(-1, 1))
        x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
        design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        root = w.clamp_min(0).sqrt()
        solution = torch.linalg.lstsq(design * root, y * root, driver="gelsd").solution
        model._construct_model_params(
            weight_values=solution[:-1].T.float(), bias_value=solution[-1].float()
        )
        return {}

    return LinearModel(train_fn=fit)


def _captum_target(targets: list[int | None]) -> Any:
    return None if targets[0] is None else list(targets)


def _pick(result: Any, names: list[str], wanted: str) -> torch.Tensor:
    """The output ``wanted`` of a module's result (a tensor, or tuples, lists or dicts of
    them, named as the runtime names them)."""
    import torch  # loaded only when a model is explained

    flat: list[torch.Tensor] = []

    def walk(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            flat.append(item)
        elif isinstance(item, tuple | list):
            for part in item:
                walk(part)
        elif isinstance(item, dict):
            for part in item.values():
                walk(part)

    walk(result)
    labels = names if len(flat) == len(names) else [f"output{i}" for i in range(len(flat))]
    tensor = flat[labels.index(wanted)]
    return tensor.float() if tensor.dtype == torch.bfloat16 else tensor


def _as_arrays(
    attributions: Any, specs: Sequence[Any], arrays: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    parts = attributions if isinstance(attributions, tuple | list) else (attributions,)
    out = {}
    for spec, part in zip(specs, parts, strict=True):
        values = part.detach().cpu().double().numpy()
        out[spec.name] = values.reshape(arrays[spec.name].shape)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- feature names -----------------------------------------------------------------------


def feature_names(
    dataset: Mapping[str, Any] | None, params: Mapping[str, Any] | None, width: int | None
) -> list[str] | None:
    """The column names a table model's ``width`` input values stand for, in order, or None.

    ``dataset`` is the training data set's ``kind``, ``schema`` and ``label``; the features
    are the version's recorded ``features``, else every column but the label, as training
    chose them. None when the data set is not a table or the count does not match.
    """
    if dataset is None or dataset.get("kind") != "table" or width is None:
        return None
    params = params or {}
    recorded = params.get("features")
    if isinstance(recorded, list) and recorded:
        names = [str(n) for n in recorded]
    else:
        label = params.get("label") or dataset.get("label")
        columns = (dataset.get("schema") or {}).get("columns") or []
        names = [str(c["name"]) for c in columns if c.get("name") != label]
    return names if len(names) == width else None
