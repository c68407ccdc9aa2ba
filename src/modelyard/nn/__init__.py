"""The architecture catalog: models built from validated JSON specs.

Four architectures (``mlp``, ``cnn``, ``rnn``, ``transformer``), each a pydantic spec and
an ``nn.Module``; every model ends in a linear layer named ``head``::

    from modelyard.nn import build_model, parse_spec, save_weights

    spec = parse_spec({"arch": "mlp", "input_shape": [64], "hidden": [128], "num_outputs": 10})
    model = build_model(spec)
    save_weights(model, "model.safetensors", spec)   # the spec travels in the metadata

Invalid specs and weights raise :class:`modelyard.errors.InvalidInput` naming the field
or tensor at fault.
"""

from typing import TYPE_CHECKING

from modelyard.lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.nn.catalog import (
        HEAD_MODULES,
        build_model,
        check_weights,
        expected_tensors,
        head_name,
        replace_head,
        spec_signature,
    )
    from modelyard.nn.spec_base import SpecBase, Task
    from modelyard.nn.specs import (
        ARCHITECTURES,
        ArchSpec,
        CNNSpec,
        ConvSpec,
        MLPSpec,
        RNNSpec,
        TransformerSpec,
        parse_spec,
    )
    from modelyard.nn.weights import (
        SPEC_METADATA_KEY,
        load_weights,
        read_weights,
        save_weights,
        weights_from_bytes,
        weights_to_bytes,
    )

__all__ = [
    "ARCHITECTURES",
    "HEAD_MODULES",
    "SPEC_METADATA_KEY",
    "ArchSpec",
    "CNNSpec",
    "ConvSpec",
    "MLPSpec",
    "RNNSpec",
    "SpecBase",
    "Task",
    "TransformerSpec",
    "build_model",
    "check_weights",
    "expected_tensors",
    "head_name",
    "load_weights",
    "parse_spec",
    "read_weights",
    "replace_head",
    "save_weights",
    "spec_signature",
    "weights_from_bytes",
    "weights_to_bytes",
]

# Loaded on first use: importing a light submodule must not load PyTorch.
__getattr__ = lazy_exports(
    __name__,
    {
        "modelyard.nn.catalog": (
            "HEAD_MODULES",
            "build_model",
            "check_weights",
            "expected_tensors",
            "head_name",
            "replace_head",
            "spec_signature",
        ),
        "modelyard.nn.specs": (
            "ARCHITECTURES",
            "ArchSpec",
            "CNNSpec",
            "ConvSpec",
            "MLPSpec",
            "RNNSpec",
            "TransformerSpec",
            "parse_spec",
        ),
        "modelyard.nn.spec_base": (
            "SpecBase",
            "Task",
        ),
        "modelyard.nn.weights": (
            "SPEC_METADATA_KEY",
            "load_weights",
            "read_weights",
            "save_weights",
            "weights_from_bytes",
            "weights_to_bytes",
        ),
    },
)
