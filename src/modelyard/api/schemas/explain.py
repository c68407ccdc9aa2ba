"""Explanations: attributions of a deployment's output to its inputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from modelyard.api.schemas.common import Schema
from modelyard.serving.explain import ExplainOptions

MethodName = Literal["integrated_gradients", "saliency", "occlusion", "kernel_shap"]
Sizes = int | list[int]


class ExplainFields(Schema):
    """How to explain: the method, what output score, and the method's bounded effort."""

    model_config = ConfigDict(extra="forbid")

    method: MethodName = Field(
        default="integrated_gradients",
        description="integrated_gradients or saliency (torch versions: gradients through the "
        "model), occlusion or kernel_shap (every runtime: the model's own forward).",
    )
    target: int | list[int] | None = Field(
        default=None,
        description="The output column (class index) to explain, for every row or one per "
        "row; default each row's predicted class.",
    )
    baseline: float | list[Any] | dict[str, Any] | None = Field(
        default=None,
        description="The reference input: a number, one row, the inputs' shape, or such by "
        "input name; default zeros.",
    )
    output: str | None = Field(
        default=None,
        description="The output to explain, for a model with several; default 'output' or "
        "the only one.",
    )
    version: str | None = Field(default=None, description="Pin one of the served versions.")
    n_steps: int | None = Field(
        default=None,
        description="Integrated gradients' steps (default 50; at most "
        "MODELYARD_EXPLAIN_MAX_STEPS).",
    )
    n_samples: int | None = Field(
        default=None,
        description="Kernel SHAP's samples per row (default 200; at most "
        "MODELYARD_EXPLAIN_MAX_SAMPLES).",
    )
    window: Sizes | None = Field(
        default=None,
        description="Occlusion's window over a row: a size per dimension, or one size for "
        "each (clipped); default 1 (every value alone).",
    )
    stride: Sizes | None = Field(default=None, description="Occlusion's step; default the window.")
    seed: int = Field(default=0, description="Kernel SHAP's sampling seed.")

    def options(self) -> ExplainOptions:
        return ExplainOptions(
            method=self.method,
            target=self.target,
            baseline=self.baseline,
            output=self.output,
            n_steps=self.n_steps,
            n_samples=self.n_samples,
            window=self.window,
            stride=self.stride,
            seed=self.seed,
        )


class ExplainIn(ExplainFields):
    """Inputs as in predict (nested lists: one tensor, or several by name) and the method."""

    inputs: list[Any] | dict[str, list[Any]]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": [[0.0, 3.0, 16.0, 7.0]], "method": "integrated_gradients"},
                {"inputs": [[0.0, 3.0, 16.0, 7.0]], "method": "occlusion", "target": 2},
            ]
        },
    )


class ExplainOut(Schema):
    deployment: str
    model_version: int | None
    method: str
    output: str = Field(description="The output whose score is explained.")
    target: list[int | None] = Field(description="The column explained, per row.")
    attributions: list[Any] | dict[str, list[Any]] = Field(
        description="One attribution per input value, in the inputs' shape (by name when the "
        "inputs were named)."
    )
    convergence_delta: list[float] | None = Field(
        default=None,
        description="Integrated gradients: sum(attributions) - (f(x) - f(baseline)) per row.",
    )
    feature_names: list[str] | None = Field(
        default=None,
        description="The columns of the training data set the input's values stand for "
        "(table models).",
    )


class KServeExplainIn(ExplainFields):
    """KServe's v1 shape: ``instances`` (rows, or objects of named inputs per row)."""

    instances: list[Any]

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"instances": [[0.0, 3.0, 16.0, 7.0]]}]},
    )


class KServeExplanation(Schema):
    target: int | None
    attributions: list[Any] | dict[str, list[Any]]
    convergence_delta: float | None = None


class KServeExplainOut(Schema):
    model_name: str
    model_version: int | None
    method: str
    output: str
    feature_names: list[str] | None = None
    explanations: list[KServeExplanation] = Field(description="One per instance.")
