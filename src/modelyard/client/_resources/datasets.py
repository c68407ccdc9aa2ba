"""``client.datasets``: upload, inspect, download and share data sets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.client._http import HTTP, seg
from modelyard.client._resources._acl import GrantLike, get_acl, set_acl
from modelyard.client._transfer import FileUpload, MultipartUpload, ProgressCallback, StrPath
from modelyard.client._types import ACL, Dataset

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

_BASE = "/api/v1/datasets"


class Datasets:
    """Push, list, inspect, download, delete and share data sets."""

    def __init__(self, http: HTTP) -> None:
        self._http = http

    def push(
        self,
        name: str,
        path: StrPath | Sequence[StrPath],
        *,
        format: str | None = None,
        label: str | None = None,
        description: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Dataset:
        """Upload a data set from one file, or from an IDX pair ``[images, labels]``.

        One file (CSV, NPZ, Parquet, JSONL) is streamed as the request body; the server
        infers ``format`` from its name and content when it is not given. An IDX pair is
        sent as a multipart form with parts ``images`` and ``labels``. ``label`` names the
        target column or array. ``progress(done, total)`` follows the upload.

        Example::

            ds = client.datasets.push("digits", "digits.csv", label="target")
            print(ds.num_rows, ds.schema)
        """
        paths = _as_paths(path)
        params: dict[str, str | None] = {
            "name": name,
            "format": format,
            "label": label,
            "description": description,
        }
        body: FileUpload | MultipartUpload
        if len(paths) == 1:
            body = FileUpload(paths[0])
            params["filename"] = paths[0].name
        else:
            body = MultipartUpload([("images", paths[0]), ("labels", paths[1])])
            params["format"] = format or "idx"
        return Dataset.from_json(self._http.upload(_BASE, body, params=params, progress=progress))

    def push_arrays(
        self,
        name: str,
        /,
        *,
        label: str | None = None,
        description: str | None = None,
        progress: ProgressCallback | None = None,
        **arrays: ArrayLike,
    ) -> Dataset:
        """Upload named arrays as an NPZ data set (needs numpy).

        Example::

            client.datasets.push_arrays("xor", x=[[0, 0], [0, 1], [1, 0], [1, 1]],
                                        y=[0, 1, 1, 0], label="y")
        """
        if not arrays:
            raise ValueError("push_arrays needs at least one array, e.g. x=..., y=...")
        import numpy as np  # only this convenience needs numpy; keep the SDK import light

        with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
            file = Path(tmp) / f"{name}.npz"
            np.savez(file, allow_pickle=False, **{k: np.asarray(v) for k, v in arrays.items()})
            return self.push(
                name,
                file,
                format="npz",
                label=label,
                description=description,
                progress=progress,
            )

    def list(self) -> list[Dataset]:
        """Every data set the caller may read."""
        return [Dataset.from_json(d) for d in self._http.paginate(_BASE)]

    def get(self, name: str) -> Dataset:
        """One data set, with its schema and row count."""
        return Dataset.from_json(self._http.object("GET", f"{_BASE}/{seg(name)}"))

    def delete(self, name: str) -> None:
        """Delete a data set."""
        self._http.send("DELETE", f"{_BASE}/{seg(name)}")

    def download(self, name: str, dest: StrPath, progress: ProgressCallback | None = None) -> Path:
        """Download the original bytes (a tar for IDX) to ``dest``; return the file's path.

        When ``dest`` is a directory the file is named as the server suggests, or after the
        data set. The file appears only once complete (it is written to ``<file>.part``).
        """
        path = f"{_BASE}/{seg(name)}/download"
        return self._http.download(path, Path(dest), name, progress)

    def get_acl(self, name: str) -> ACL:
        """Who besides the owner may use the data set."""
        return get_acl(self._http, f"{_BASE}/{seg(name)}/acl")

    def set_acl(self, name: str, public: bool = False, grants: Iterable[GrantLike] = ()) -> ACL:
        """Replace the data set's ACL.

        Example::

            client.datasets.set_acl("digits", grants=[Grant(principal="bob")])
        """
        return set_acl(self._http, f"{_BASE}/{seg(name)}/acl", public, grants)

    def privacy_budget(self, name: str) -> dict[str, Any]:
        """The data set's privacy budget: ``budget``, ``spent`` and ``left`` (each
        ``{"epsilon", "delta"}``; ``budget`` None without one), ``allow_non_private``, and
        for its owner the ``ledger`` of private jobs."""
        return self._http.object("GET", f"{_BASE}/{seg(name)}/privacy-budget")

    def set_privacy_budget(
        self, name: str, epsilon: float, delta: float, *, allow_non_private: bool = False
    ) -> dict[str, Any]:
        """Set the total (ε, δ) private jobs may spend on the data set (its owner or an
        admin); jobs without privacy are refused unless ``allow_non_private``.

        Example::

            client.datasets.set_privacy_budget("digits", epsilon=8, delta=1e-4)
        """
        body = {"epsilon": epsilon, "delta": delta, "allow_non_private": allow_non_private}
        return self._http.object("PUT", f"{_BASE}/{seg(name)}/privacy-budget", json=body)


def _as_paths(path: StrPath | Sequence[StrPath]) -> list[Path]:
    if isinstance(path, str | os.PathLike):
        return [Path(path)]
    paths = [Path(p) for p in path]
    if len(paths) not in (1, 2):
        raise ValueError(
            f"push takes one file, or two for IDX (images, labels); got {len(paths)} files"
        )
    return paths
