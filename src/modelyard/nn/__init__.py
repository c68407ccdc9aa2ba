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

from modelyard.nn.catalog import (
    ARCHITECTURES,
    HEAD_MODULES,
    ArchSpec,
    build_model,
    check_weights,
    expected_tensors,
    head_name,
    parse_spec,
    replace_head,
    spec_signature,
)
from modelyard.nn.cnn import CNNSpec, ConvSpec
from modelyard.nn.mlp import MLPSpec
from modelyard.nn.rnn import RNNSpec
from modelyard.nn.spec_base import SpecBase, Task
from modelyard.nn.transformer import TransformerSpec
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
