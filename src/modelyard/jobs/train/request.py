"""What a train job takes: the structured form (``type: train``, a model section, a data set
and the training config) and the seeds' flat one-call form (:class:`FlatTrainRequest`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import ConfigDict, Discriminator, Field, Tag

from modelyard.jobs.request_base import ArchSpecInRequest, RequestModel
from modelyard.jobs.resources import JobResources
from modelyard.nn.spec_base import Dim
from modelyard.training.config import TrainConfig
from modelyard.training.distributed_config import DistributedConfig

FLAT_KEYS = frozenset({"model_name", "data", "learning_rate"})
"""Keys that only the flat form has."""


class NewModel(RequestModel):
    """A new model of the catalog: ``{"spec": {"arch": "mlp", "hidden": [128]}}``."""

    spec: ArchSpecInRequest = Field(
        description="A catalog spec (mlp, cnn, rnn, transformer); input_shape and num_outputs "
        "default from the data set."
    )
    freeze: list[str] | None = Field(
        default=None, description="Parameter name prefixes kept fixed while training."
    )


class FromModel(RequestModel):
    """Train a version further: ``{"from": "digits-mlp", "version": "latest"}``."""

    from_: str = Field(alias="from", description="The model whose version is trained further.")
    version: int | str = Field(default="latest", description="Version number or alias.")
    num_outputs: Dim | None = Field(
        default=None, description="A new head with this many outputs (transfer learning)."
    )
    freeze: list[str] | None = Field(
        default=None, description="Parameter name prefixes kept fixed (e.g. ['layers.0'])."
    )


def _model_form(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return "from" if "from" in value else "spec" if "spec" in value else "arch"
    return (
        "from" if isinstance(value, FromModel) else "spec" if isinstance(value, NewModel) else None
    )


ModelSection: TypeAlias = Annotated[
    Annotated[FromModel, Tag("from")]
    | Annotated[NewModel, Tag("spec")]
    | Annotated[ArchSpecInRequest, Tag("arch")],
    Discriminator(
        _model_form,
        custom_error_type="model_form",
        custom_error_message="give {'spec': {...}}, {'arch': ...} or {'from': '<model>'}",
    ),
]


class _TrainPlanFields(RequestModel):
    label: str | None = Field(default=None, description="Label column; default the data set's.")
    features: list[str] | None = Field(default=None, description="Feature columns; default all.")
    output_model: str | None = Field(
        default=None, description="Model the version is registered in; default <dataset>-<arch>."
    )
    validation_dataset: str | None = Field(
        default=None, description="A separate data set to validate on."
    )
    num_outputs: Dim | None = Field(default=None, description="Outputs of a fine-tune's new head.")
    distributed: DistributedConfig | None = Field(
        default=None, description="Spread over processes and machines (ddp, parameter_server)."
    )
    resources: JobResources | None = Field(default=None, description="CPUs and GPUs per worker.")


class TrainRequest(TrainConfig, _TrainPlanFields):
    """Train a catalog model, or a version further: the model, the data and the config."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "train",
                    "model": {"spec": {"arch": "mlp", "hidden": [128, 64]}},
                    "dataset": "digits",
                    "epochs": 20,
                    "optimizer": {"name": "adam", "lr": 0.001},
                    "validation": {"fraction": 0.2},
                }
            ]
        },
    )

    type: Literal["train"] = "train"
    model: ModelSection = Field(description="What is trained: a new catalog model or a version.")
    dataset: str = Field(description="The data set to train on.")


class FlatTrainRequest(TrainConfig, _TrainPlanFields):
    """The one-call form: ``model_name`` (an architecture, or your model to train further),
    ``data``, ``optimizer``, ``learning_rate`` and ``epochs``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "model_name": "mlp",
                    "data": "iris",
                    "optimizer": "Adam",
                    "learning_rate": 0.001,
                    "epochs": 50,
                }
            ]
        },
    )

    type: Literal["train"] = "train"
    model_name: str | None = Field(
        default=None,
        description="mlp, cnn, rnn or transformer (any case) for a new model, or the name of "
        "one of your models to train its latest version further.",
    )
    model: ModelSection | None = Field(default=None, description="Instead of model_name.")
    data: str | None = Field(default=None, description="The data set to train on.")
    dataset: str | None = Field(default=None, description="Instead of data.")
    learning_rate: float | None = Field(default=None, gt=0.0, description="The optimizer's lr.")
