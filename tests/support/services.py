"""The services of one server, built on a real database and a local blob store, for tests
that call them directly (no HTTP): principals with keys, and small files to upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modelyard.auth.access import Caller
from modelyard.auth.service import AuthService
from modelyard.datasets.service import DatasetService
from modelyard.db.engine import Database
from modelyard.db.tables import ModelVersion
from modelyard.nn import build_model, parse_spec, save_weights
from modelyard.registry.service import ModelRegistry, VersionMeta
from modelyard.storage.local import LocalBlobStore
from modelyard.storage.staging import StagedFile, stage_file

ADMIN_KEY = "my_service-test-admin-key-0123456789abcdefghij"
USERS = ("ana", "bob")
MAX_BYTES = 1 << 30
SPEC = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}


class Services:
    """An admin and the users :data:`USERS` with read/write keys, a registry and data sets."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.auth = AuthService(db, cache_ttl_s=60)
        self.auth.bootstrap(ADMIN_KEY)
        self.admin = self.auth.authenticate(ADMIN_KEY)
        self._secrets: dict[str, str] = {}
        for name in USERS:
            self.auth.create_principal(self.admin, name)
            key = self.auth.create_key(self.admin, name, ["read", "write", "infer"], principal=name)
            self._secrets[name] = key.secret
        self.blobs = LocalBlobStore(root / "blobs", self.tmp)
        self.registry = ModelRegistry(db, self.blobs, self.tmp, MAX_BYTES)
        self.datasets = DatasetService(db, self.blobs, self.tmp)

    def caller(self, name: str) -> Caller:
        return self.auth.authenticate(self._secrets[name])

    def stage(self, path: Path) -> StagedFile:
        return stage_file(path, self.tmp, MAX_BYTES)

    def weights(self, seed: int = 0) -> Path:
        """A catalog MLP (4 inputs, 3 classes) as safetensors with its spec inside."""
        torch.manual_seed(seed)
        spec = parse_spec(SPEC)
        path = self.root / f"mlp-{seed}.safetensors"
        save_weights(build_model(spec), path, spec)
        return path

    def push(self, caller: Caller, model: str, seed: int = 0, **meta: Any) -> ModelVersion:
        """Push a catalog MLP as the next version of ``model`` (created if new)."""
        upload = self.stage(self.weights(seed))
        return self.registry.push_version(caller, model, upload, VersionMeta(**meta), create=True)

    def csv(self, name: str = "iris.csv") -> Path:
        """A small labelled table: four numeric features and a class column ``y``."""
        lines = ["a,b,c,d,y"]
        for i in range(30):
            lines.append(f"{i % 7}.0,{i % 5}.5,{i % 3}.25,{i % 2}.0,{i % 3}")
        path = self.root / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
