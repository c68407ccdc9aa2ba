"""Whether a model version can take another's place behind a deployment, and whether one
deployment's outputs fit the next one's inputs in a pipeline.

A deployment's clients are written against the tensors it serves: their names, datatypes and
shapes (with -1 for a dimension that varies). A swap to a version that renames, retypes or
reshapes one of them breaks every running client at its next request, so a swap is checked
first::

    old = Interface.of_runtime(served.runtime)
    new = Interface.of_version(version)
    swap_differences(old, new)
    # ["input 'input_layer' is gone and input 'input' is new"]

What is not known on either side (a TorchScript module records no datatypes or shapes) is
taken to match; -1 matches any size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.runtimes.tensors import TensorSpec, specs_from_signature

# Datatypes whose values a float input cannot take without changing their meaning.
_INTEGER_OR_TEXT = {
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BOOL",
    "BYTES",
}


@dataclass(frozen=True)
class Interface:
    """The tensors a served model takes and returns, as its clients see them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def of_runtime(cls, runtime: Any) -> Interface:
        """A loaded runtime's tensors (the truth: what requests are checked against); none
        for a language model, which is not called with tensors."""
        return cls(tuple(getattr(runtime, "inputs", ())), tuple(getattr(runtime, "outputs", ())))

    @classmethod
    def of_version(cls, version: Any) -> Interface:
        """A registry version's tensors as its record tells them, without loading it.

        The signature read from the artifact at push, or for a catalog version its spec's;
        a TorchScript module with a recorded preprocessing takes what the preprocessing
        makes (as its loader does).
        """
        signature: Mapping[str, Any] | None = version.signature
        if signature is None and version.format == "safetensors" and version.spec:
            from modelyard.nn import spec_signature

            signature = spec_signature(version.spec)
        inputs = specs_from_signature((signature or {}).get("inputs"))
        outputs = specs_from_signature((signature or {}).get("outputs"))
        state = (version.params or {}).get("preprocessing")
        if version.format == "torchscript" and isinstance(state, Mapping) and len(inputs) == 1:
            shape = state.get("input_shape")
            if isinstance(shape, list):
                datatype = "INT64" if state.get("token_ids") else "FP32"
                inputs = [TensorSpec(inputs[0].name, datatype, [-1, *map(int, shape)])]
        return cls(tuple(inputs), tuple(outputs))


def swap_differences(old: Interface, new: Interface) -> list[str]:
    """How ``new`` would break clients written against ``old``; empty when it would not.

    Inputs must be the same set of names; every output of ``old`` must still be there (a new
    output breaks no one). Tensors of the same name must have the same datatype and rank,
    and the same size in every dimension that is fixed on both sides.
    """
    problems: list[str] = []
    old_in, new_in = _by_name(old.inputs), _by_name(new.inputs)
    gone = [n for n in old_in if n not in new_in]
    added = [n for n in new_in if n not in old_in]
    if gone and added:
        problems.append(
            f"{_names('input', gone)} {_is(gone)} gone and {_names('input', added)} "
            f"{_is(added)} new"
        )
    elif gone:
        problems.append(f"{_names('input', gone)} {_is(gone)} gone")
    elif added:
        problems.append(f"{_names('input', added)} {_is(added)} new (clients do not send it)")
    old_out, new_out = _by_name(old.outputs), _by_name(new.outputs)
    missing = [n for n in old_out if n not in new_out]
    if missing:
        problems.append(
            f"{_names('output', missing)} {_is(missing)} gone (the new version returns "
            f"{_listing(new_out)})"
        )
    for side, before, after in (("input", old_in, new_in), ("output", old_out, new_out)):
        for name, spec in before.items():
            if name in after:
                problems += _tensor_differences(f"{side} {name!r}", spec, after[name])
    return problems


def _tensor_differences(where: str, old: TensorSpec, new: TensorSpec) -> list[str]:
    problems = []
    if old.datatype and new.datatype and old.datatype != new.datatype:
        problems.append(f"{where} is {new.datatype}, was {old.datatype}")
    if old.shape is not None and new.shape is not None and not _same_shape(old.shape, new.shape):
        problems.append(f"{where} has shape {new.shape}, was {old.shape}")
    return problems


def _same_shape(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b, strict=True))


def feed_differences(
    producer: str, outputs: Sequence[TensorSpec], consumer: str, inputs: Sequence[TensorSpec]
) -> list[str]:
    """Why ``producer``'s outputs cannot feed ``consumer``'s inputs in a pipeline; empty when
    they can.

    Outputs are matched to inputs by name, or, when the consumer takes one input, its first
    output is fed to it (what the pipeline does with each request). A fed tensor must have
    the input's rank and fixed sizes (or as many values per row, when either rank differs:
    a recorded preprocessing reshapes rows), and a float must not be fed to an integer or
    text input.
    """
    if not inputs or not outputs:
        return []
    produced = _by_name(outputs)
    if all(spec.name in produced for spec in inputs):
        pairs = [(produced[spec.name], spec) for spec in inputs]
    elif len(inputs) == 1:
        pairs = [(outputs[0], inputs[0])]
    else:
        return [
            f"'{producer}' returns {_listing(produced)} but '{consumer}' takes "
            f"{_listing(_by_name(inputs))}; name the outputs after the inputs"
        ]
    problems = []
    for out, into in pairs:
        where = (
            f"'{producer}' output {out.name!r} {_shape_text(out)} does not fit "
            f"'{consumer}' input {into.name!r} {_shape_text(into)}"
        )
        if out.shape is not None and into.shape is not None and not _fits(out.shape, into.shape):
            problems.append(where)
        elif out.datatype in ("FP16", "FP32", "FP64", "BF16") and into.datatype in _INTEGER_OR_TEXT:
            problems.append(f"{where}: floats cannot feed an {into.datatype} input")
    return problems


def _fits(produced: Sequence[int], wanted: Sequence[int]) -> bool:
    if _same_shape(produced[1:], wanted[1:]) and len(produced) == len(wanted):
        return True
    if len(produced) == len(wanted):
        return False
    a, b = produced[1:], wanted[1:]
    if any(d < 0 for d in (*a, *b)):
        return True  # a row's size is not known on both sides; the runtime checks it
    return _product(a) == _product(b)


def _product(dims: Sequence[int]) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def _shape_text(spec: TensorSpec) -> str:
    return "(shape unknown)" if spec.shape is None else str(list(spec.shape))


def _by_name(specs: Sequence[TensorSpec]) -> dict[str, TensorSpec]:
    return {spec.name: spec for spec in specs}


def _names(side: str, names: Sequence[str]) -> str:
    listed = ", ".join(repr(n) for n in names)
    return f"{side} {listed}" if len(names) == 1 else f"{side}s {listed}"


def _is(names: Sequence[str]) -> str:
    return "is" if len(names) == 1 else "are"


def _listing(specs: Mapping[str, TensorSpec]) -> str:
    return "[" + ", ".join(repr(n) for n in specs) + "]"


__all__ = ["Interface", "feed_differences", "swap_differences"]
