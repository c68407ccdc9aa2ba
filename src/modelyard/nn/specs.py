"""The catalog's architecture specs: pydantic only, so they load without PyTorch.

Each spec says what a model of its architecture looks like; :mod:`modelyard.nn.catalog`
builds the ``nn.Module`` of one. ``parse_spec`` checks a JSON spec and names the field at
fault::

    spec = parse_spec({"arch": "mlp", "input_shape": [64], "hidden": [128], "num_outputs": 10})
    spec.input_size   # 64
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from modelyard.errors import InvalidInput
from modelyard.nn.field_errors import invalid_input
from modelyard.nn.spec_base import Activation, Dim, Rate, SpecBase


class MLPSpec(SpecBase):
    """Dense layers over the flattened input.

    Example: ``{"arch": "mlp", "input_shape": [64], "hidden": [128, 64], "num_outputs": 10}``.
    With no hidden layers it is a linear (or logistic) regression.
    """

    arch: Literal["mlp"] = "mlp"
    hidden: list[Dim] = Field(default_factory=list, description="Width of each hidden layer.")
    activation: Activation = Field(default="relu", description="Activation after each layer.")
    dropout: Rate = Field(default=0.0, description="Dropout after each hidden layer.")


class ConvSpec(BaseModel):
    """One convolution block: conv, optional batch norm, activation, optional pooling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: Dim = Field(description="Output channels of the convolution.")
    kernel_size: Dim = Field(default=3, description="Side of the square kernel.")
    stride: Dim = Field(default=1, description="Stride of the convolution.")
    padding: Literal["same", "valid"] | Annotated[int, Field(ge=0)] = Field(
        default="same", description="'same' keeps the size (stride 1 only), 'valid' is 0."
    )
    pool: Literal["max", "avg", "none"] = Field(default="max", description="Pooling after it.")
    pool_size: Dim = Field(default=2, description="Side (and stride) of the pooling window.")
    batch_norm: bool = Field(default=False, description="Batch norm before the activation.")

    @model_validator(mode="after")
    def _same_needs_stride_one(self) -> ConvSpec:
        if self.padding == "same" and self.stride != 1:
            raise ValueError("padding: 'same' needs stride 1; give a number or 'valid'")
        return self

    def output_size(self, size: int) -> int:
        """Side of the feature map this block makes from a map of side ``size``."""
        if self.padding != "same":
            pad = 0 if self.padding == "valid" else self.padding
            size = (size + 2 * pad - self.kernel_size) // self.stride + 1
        if self.pool != "none" and size > 0:
            size //= self.pool_size
        return size


def _default_conv() -> list[ConvSpec]:
    return [ConvSpec(channels=32), ConvSpec(channels=64)]


class CNNSpec(SpecBase):
    """Convolution blocks, then dense layers, then the head.

    ``input_shape`` is ``[C, H, W]``, or ``[H, W]`` for one channel. Example for 8x8
    digits: ``{"arch": "cnn", "input_shape": [1, 8, 8], "conv": [{"channels": 16},
    {"channels": 32}], "num_outputs": 10}``.
    """

    arch: Literal["cnn"] = "cnn"
    conv: list[ConvSpec] = Field(
        default_factory=_default_conv, min_length=1, description="The convolution blocks."
    )
    hidden: list[Dim] = Field(default_factory=list, description="Dense layers after them.")
    activation: Activation = Field(default="relu", description="Activation everywhere.")
    dropout: Rate = Field(default=0.0, description="Dropout on the flattened features.")

    @model_validator(mode="after")
    def _image_survives(self) -> CNNSpec:
        if len(self.input_shape) not in (2, 3):
            raise ValueError("input_shape: must be [C, H, W] or [H, W]")
        height, width = self.input_shape[-2:]
        for index, block in enumerate(self.conv):
            height, width = block.output_size(height), block.output_size(width)
            if height < 1 or width < 1:
                raise ValueError(
                    f"conv[{index}]: the {self.input_shape[-2]}x{self.input_shape[-1]} input "
                    "shrinks to nothing here; use fewer blocks, padding or smaller pooling"
                )
        return self

    @property
    def in_channels(self) -> int:
        """Channels of the input image."""
        return self.input_shape[0] if len(self.input_shape) == 3 else 1

    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the last block's feature map."""
        height, width = self.input_shape[-2:]
        for block in self.conv:
            height, width = block.output_size(height), block.output_size(width)
        return self.conv[-1].channels, height, width


class RNNSpec(SpecBase):
    """A recurrent stack over ``[T, F]`` vectors, or ``[T]`` token ids with ``vocab_size``.

    Example: ``{"arch": "rnn", "cell": "gru", "input_shape": [8, 8], "hidden_size": 64,
    "num_outputs": 10}``.
    """

    arch: Literal["rnn"] = "rnn"
    cell: Literal["rnn", "lstm", "gru"] = Field(default="lstm", description="Recurrent cell.")
    hidden_size: Dim = Field(default=64, description="Hidden state size per direction.")
    num_layers: Dim = Field(default=1, description="Stacked recurrent layers.")
    bidirectional: bool = Field(default=False, description="Read the sequence both ways.")
    dropout: Rate = Field(default=0.0, description="Dropout between layers and before the head.")
    vocab_size: Dim | None = Field(default=None, description="Token ids in [0, vocab_size).")
    embedding_dim: Dim | None = Field(
        default=None, description="Token embedding size; default hidden_size."
    )
    pooling: Literal["last", "mean", "max"] = Field(
        default="last", description="last: final hidden state; mean/max: over time."
    )

    @model_validator(mode="after")
    def _shape_matches_input_kind(self) -> RNNSpec:
        if self.vocab_size is None:
            if len(self.input_shape) != 2:
                raise ValueError("input_shape: must be [T, F] (or [T] with vocab_size)")
            if self.embedding_dim is not None:
                raise ValueError("embedding_dim: only token inputs (vocab_size) are embedded")
        elif len(self.input_shape) != 1:
            raise ValueError("input_shape: token inputs are [T]")
        return self

    @property
    def takes_token_ids(self) -> bool:
        """True when the model reads integer token ids rather than float features."""
        return self.vocab_size is not None


class TransformerSpec(SpecBase):
    """A pre-norm Transformer encoder and a pooled head.

    ``input_shape`` is ``[T]`` token ids (with ``vocab_size``) or ``[T, F]`` vectors.
    Example: ``{"arch": "transformer", "input_shape": [16], "vocab_size": 100,
    "d_model": 64, "num_heads": 4, "num_layers": 2, "num_outputs": 2}``.
    """

    arch: Literal["transformer"] = "transformer"
    d_model: Dim = Field(default=64, description="Width of the residual stream.")
    num_heads: Dim = Field(default=4, description="Attention heads; must divide d_model.")
    num_layers: Dim = Field(default=2, description="Encoder layers.")
    dim_feedforward: Dim = Field(default=128, description="Hidden width of each MLP.")
    dropout: Rate = Field(default=0.1, description="Dropout in every layer.")
    activation: Literal["relu", "gelu"] = Field(default="gelu", description="MLP activation.")
    vocab_size: Dim | None = Field(default=None, description="Token ids in [0, vocab_size).")
    positional: Literal["sinusoidal", "learned"] = Field(
        default="sinusoidal", description="Fixed sine/cosine table or a learned one."
    )
    max_len: Dim | None = Field(
        default=None, description="Longest sequence accepted; default input_shape[0]."
    )
    pooling: Literal["mean", "cls"] = Field(
        default="mean", description="mean over positions, or a learned [CLS] token."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TransformerSpec:
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads: {self.num_heads} does not divide d_model {self.d_model}")
        if self.vocab_size is None and len(self.input_shape) != 2:
            raise ValueError("input_shape: must be [T, F] (or [T] with vocab_size)")
        if self.vocab_size is not None and len(self.input_shape) != 1:
            raise ValueError("input_shape: token inputs are [T]")
        if self.max_len is not None and self.max_len < self.input_shape[0]:
            raise ValueError(f"max_len: must be at least the sequence length {self.input_shape[0]}")
        return self

    @property
    def takes_token_ids(self) -> bool:
        """True when the model reads integer token ids rather than float features."""
        return self.vocab_size is not None

    @property
    def positions(self) -> int:
        """Rows of the positional table, the [CLS] slot included."""
        return (self.max_len or self.input_shape[0]) + (1 if self.pooling == "cls" else 0)


ArchSpec: TypeAlias = Annotated[
    MLPSpec | CNNSpec | RNNSpec | TransformerSpec, Field(discriminator="arch")
]
"""Any spec of the catalog; the ``arch`` field says which."""

ARCHITECTURES: tuple[str, ...] = ("mlp", "cnn", "rnn", "transformer")
"""The architectures of the catalog, by their ``arch`` name."""


@functools.cache
def _adapter() -> TypeAdapter[ArchSpec]:
    return TypeAdapter(ArchSpec)


def parse_spec(raw: Mapping[str, Any] | SpecBase, *, where: str = "spec") -> ArchSpec:
    """Validate a JSON spec; errors raise InvalidInput naming the field (``spec.hidden[1]``)."""
    if isinstance(raw, MLPSpec | CNNSpec | RNNSpec | TransformerSpec):
        return raw
    if isinstance(raw, SpecBase):
        raw = raw.model_dump()
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be a JSON object", errors=[])
    try:
        return _adapter().validate_python(dict(raw))
    except ValidationError as exc:
        # Pydantic puts the union's tag ("mlp") first in every location below the spec.
        tag = raw.get("arch")
        skip = 1 if isinstance(tag, str) and tag in ARCHITECTURES else 0
        raise invalid_input(exc, where, skip=skip) from None
