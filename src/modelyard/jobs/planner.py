"""What the planners of jobs on existing versions share: one planning call's caller, services
and scratch folder (:class:`Planner`), a request parsed into its model, and a version pinned
by number, digest and format.

Everything knowable without running the job is checked with it: the versions and data sets
exist and are readable, every data set's rows fit the model's input, and the output model
can be written. What does not fit is refused with a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelyard.auth.access import Caller, Permission
from modelyard.datasets.service import DatasetService
from modelyard.db.tables import Dataset, ModelVersion
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.jobs.plans import PinnedVersion
from modelyard.jobs.request_base import VersionRef
from modelyard.naming import check_name
from modelyard.nn.field_errors import invalid_input
from modelyard.registry.service import ModelRegistry

RequestT = TypeVar("RequestT", bound=BaseModel)


class Planner:
    """One planning call: the caller, the services and a scratch folder."""

    def __init__(
        self, caller: Caller, datasets: DatasetService, registry: ModelRegistry, work: Path
    ) -> None:
        self.caller = caller
        self.datasets = datasets
        self.registry = registry
        self.work = work

    def version(self, ref: VersionRef, field: str) -> ModelVersion:
        try:
            return self.registry.get_version(self.caller, ref.model, str(ref.version))
        except NotFound as exc:
            raise InvalidInput(f"{field}: {exc.detail}") from exc

    def dataset(self, name: str, field: str) -> Dataset:
        try:
            return self.datasets.get(self.caller, name)
        except NotFound as exc:
            raise InvalidInput(f"{field}: {exc.detail}") from exc

    def rows(
        self, row: Dataset, label: str | None, field: str, version: ModelVersion | None = None
    ) -> tuple[Any, Any]:
        """A data set's features and labels; of a table, the columns ``version`` reads."""
        # Loading rows loads PyTorch: the server imports it when a job is first planned.
        from modelyard.training.data import load_xy

        files = self.datasets.canonical_files(row, self.work / field.replace(".", "_"))
        features = recorded_features(version.params if version is not None else None, row.kind)
        try:
            return load_xy(files, row.kind, label or row.label, features)  # type: ignore[arg-type]
        except InvalidInput as exc:
            raise InvalidInput(f"{field}: {exc.detail}") from exc

    def check_rows(self, version: ModelVersion, x: Any, y: Any, field: str) -> Any:
        """The version's preprocessing, after checking that ``x`` and ``y`` fit it."""
        # These load PyTorch, which the server imports only once it plans a job.
        from modelyard.compression.source import preprocessor_for
        from modelyard.training.preprocess import row_shape_fits

        pre = preprocessor_for(version.params, version.signature, y)
        row = [int(d) for d in x.shape[1:]]
        if not row_shape_fits(row, pre.input_shape):
            raise InvalidInput(
                f"{field}: rows of shape {row} do not fit the model's input shape {pre.input_shape}"
            )
        if len(y) != len(x) or len(x) == 0:
            raise InvalidInput(f"{field}: {len(x)} rows and {len(y)} labels")
        if pre.task == "classification" and y.dtype.kind in "iu" and pre.num_outputs > 1:
            high = int(y.max())
            if high >= pre.num_outputs:
                raise InvalidInput(
                    f"{field}: labels go up to {high}, but the model has {pre.num_outputs} outputs"
                )
        return pre

    def output(self, name: str | None, default: str, what: str) -> str:
        output = name or default
        check_name(output, "output_model")
        try:
            self.registry.get_model(self.caller, output, Permission.WRITE)
        except NotFound:
            try:
                self.registry.create_model(self.caller, output, description=what)
            except Conflict as exc:
                raise InvalidInput(f"output_model: '{output}' belongs to someone else") from exc
        return output


def parse_request(model: type[RequestT], body: Mapping[str, Any]) -> RequestT:
    """``body`` as ``model``; InvalidInput naming every field at fault."""
    try:
        return model.model_validate(dict(body))
    except ValidationError as exc:
        raise invalid_input(exc, "") from None


def recorded_features(params: Mapping[str, Any] | None, kind: str) -> list[str] | None:
    """The columns of a table a version reads, in order, as its train job recorded them;
    None (every column but the label) when it recorded none or the data is not a table."""
    features = (params or {}).get("features")
    if kind != "table" or not isinstance(features, list) or not features:
        return None
    return [str(name) for name in features]


def pinned(version: ModelVersion, name: str) -> PinnedVersion:
    """``version`` of model ``name``, pinned by number, digest and format."""
    return PinnedVersion(
        model=name, version=version.version, sha256=version.sha256, format=version.format
    )
