"""Settings: one typed tree, read from ``MODELYARD_*`` environment variables.

Built by the CLI or the app factory (``Settings()``) and passed down; no module reads the
environment on its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Prices(BaseModel):
    """What use costs, in ``currency``: the price table of costs and budgets."""

    model_config = ConfigDict(extra="forbid")

    currency: str = "usd"
    per_1k_requests: float = Field(default=0.0, ge=0)
    per_1m_input_tokens: float = Field(default=0.0, ge=0)
    per_1m_output_tokens: float = Field(default=0.0, ge=0)
    per_cpu_hour: float = Field(default=0.0, ge=0)
    per_gpu_hour: float = Field(default=0.0, ge=0)
    per_gb_month: float = Field(default=0.0, ge=0)


class Settings(BaseSettings):
    """Everything a Modelyard server needs to know to start."""

    model_config = SettingsConfigDict(env_prefix="MODELYARD_", extra="ignore")

    data_dir: Path = Field(
        default=Path("modelyard-data"),
        description="Directory for the SQLite database, local blobs and temporary files.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the metadata store; default is a SQLite file in data_dir. "
            "PostgreSQL: postgresql+psycopg://user@host:5432/db"
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the HTTP server binds.")
    grpc_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "Port of the Open Inference Protocol over gRPC (inference.GRPCInferenceService, "
            "what tritonclient.grpc calls; Triton's own is 8001), on the same host as HTTP; "
            "0: no gRPC."
        ),
    )
    access_log: bool = Field(
        default=False, description="Log every HTTP request (costly on the inference path)."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "HTTP server processes on host:port, each serving every deployment with its own "
            "copy of the models; the first also runs jobs, the storage collector and gRPC."
        ),
    )
    serving_split: bool = Field(
        default=False,
        description=(
            "The server processes (workers, one or more) hold no models and hand tensor "
            "inference to one model process that loads each version once and batches for all "
            "of them "
            "(language models stay in each HTTP process; explanations are refused)."
        ),
    )
    ssl_certfile: Path | None = Field(
        default=None,
        description=(
            "PEM certificate (chain) of the server: with ssl_keyfile, HTTP is served over TLS "
            "(https://), and so is gRPC when grpc_port is set."
        ),
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of ssl_certfile (unencrypted)."
    )

    blob_store: Literal["local", "s3"] = Field(
        default="local", description="Where artifacts and data sets are kept."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (for MinIO, moto or another S3-compatible store)."
    )
    s3_bucket: str = Field(default="modelyard", description="Bucket that holds the blobs.")
    s3_prefix: str = Field(default="blobs/", description="Key prefix of the blobs in the bucket.")
    s3_region: str = Field(default="us-east-1", description="Region of the bucket.")
    s3_access_key_id: str | None = Field(
        default=None, description="S3 access key id; default: boto3's credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key; default: boto3's credential chain."
    )

    max_upload_bytes: int = Field(
        default=8 * 1024**3, gt=0, description="Largest accepted upload, in bytes (default 8 GiB)."
    )
    max_dataset_bytes: int = Field(
        default=32 * 1024**3,
        gt=0,
        description=(
            "Largest size a data set may expand to (default 32 GiB): the decompressed text of "
            "a CSV or JSONL file, the decoded values of a Parquet file, the array data of an "
            "NPZ or IDX data set. A compressed upload can carry far less than it expands to."
        ),
    )
    max_dataset_expansion: float = Field(
        default=200.0,
        gt=1,
        description=(
            "Largest ratio of a data set's expanded size to its upload's size (default 200), "
            "enforced beyond the first 64 MiB: decompression bombs expand about 1000 times."
        ),
    )
    max_dataset_rows: int = Field(
        default=1_000_000_000,
        gt=0,
        description="Most rows of a table, or first dimension of arrays (default 1e9).",
    )
    max_dataset_columns: int = Field(
        default=10_000,
        gt=0,
        description=(
            "Most columns of a table, or arrays of an NPZ archive (default 10,000; reading a "
            "CSV costs about 20 KB of memory per column)."
        ),
    )
    max_dataset_line_bytes: int = Field(
        default=8 * 1024**2,
        gt=0,
        description="Longest line of a JSON Lines data set, in bytes (default 8 MiB).",
    )
    max_dataset_json_depth: int = Field(
        default=64,
        ge=1,
        le=500,
        description=(
            "Deepest nesting of arrays and objects in a JSON Lines value (default 64; at most "
            "500, below Python's recursion limit)."
        ),
    )
    dataset_intake_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Wall-clock seconds the server spends taking in one data set upload (default 600; "
            "a CSV is read at about 100 MB/s, twice): slower intakes are refused."
        ),
    )
    max_json_bytes: int = Field(
        default=4 * 1024**2,
        gt=0,
        description=(
            "Largest JSON request body (jobs, deployments, keys, chat and completions), in "
            "bytes (default 4 MiB); a longer body is cut off with 413 as it arrives."
        ),
    )
    max_infer_bytes: int = Field(
        default=64 * 1024**2,
        gt=0,
        description=(
            "Largest inference request body (/v2 infer, predict), in bytes (default 64 MiB); "
            "it is held in memory while its tensors are decoded."
        ),
    )
    metrics_require_key: bool = Field(
        default=False,
        description=(
            "Serve /metrics only to keys with the 'metrics' scope. When false, /metrics is "
            "open but names only public deployments unless the key has the 'metrics' scope."
        ),
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description=(
            "Master key for encryption at rest: 32 bytes, base64 or hex. When set, every blob "
            "is stored AES-256-GCM encrypted under its own data key wrapped by this key."
        ),
    )
    collect_interval_s: float = Field(
        default=3600.0,
        ge=0,
        description=(
            "Seconds between collection passes, which delete blobs no record references and "
            "working files no live process owns; a pass also runs at start (0: only then)."
        ),
    )
    collect_grace_s: float = Field(
        default=3600.0,
        ge=0,
        description=(
            "An unreferenced blob is collected only once it has not been written for this "
            "long, so a blob stored by an upload that has not yet recorded it survives."
        ),
    )
    bootstrap_key: SecretStr | None = Field(
        default=None,
        description="On a first start, this becomes the admin API key instead of a random one.",
    )

    explain_concurrency: int = Field(
        default=2,
        ge=1,
        description=(
            "Explanations computed at once by this server (each in a thread of its own); "
            "more wait for a slot until explain_timeout_s, then get 429."
        ),
    )
    explain_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest one explanation may take, waiting for a slot included (504 beyond).",
    )
    explain_max_rows: int = Field(
        default=64, ge=1, description="Most input rows one explanation request may carry."
    )
    explain_max_steps: int = Field(
        default=512, ge=1, description="Largest n_steps of integrated gradients."
    )
    explain_max_samples: int = Field(
        default=4096, ge=1, description="Largest n_samples of Kernel SHAP (per row)."
    )
    explain_max_evaluations: int = Field(
        default=200_000,
        ge=1,
        description=(
            "Most model rows one explanation may compute: rows times n_steps (integrated "
            "gradients), n_samples (Kernel SHAP) or occlusion windows."
        ),
    )

    ui: bool = Field(
        default=True,
        description="Serve the web dashboard at /ui (sign in with an API key).",
    )
    ui_session_ttl_s: float = Field(
        default=8 * 3600.0,
        gt=0,
        le=30 * 24 * 3600.0,
        description=(
            "How long a dashboard session lasts after sign-in, in seconds (default 8 hours); "
            "it ends earlier when its key expires or is revoked."
        ),
    )
    ui_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs dashboard session cookies and CSRF tokens; default: a random one "
            "kept in data_dir/ui-secret. Give every replica behind one address the same."
        ),
    )

    executor_slots: int = Field(
        default=2, ge=1, description="How many jobs the local executor runs at once."
    )
    job_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "CPU threads of each job's worker; default: the machine's cores divided by "
            "executor_slots (oversubscribed threads spin and slow small models down badly)."
        ),
    )
    job_heartbeat_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job whose worker has not reported for this long is re-queued.",
    )

    executor: Literal["local", "ray"] = Field(
        default="local",
        description=(
            "Where jobs run: 'local' child processes of the server, or 'ray' tasks on a Ray "
            "cluster (give ray_address; use PostgreSQL and S3 so every node reaches them)."
        ),
    )
    ray_address: str | None = Field(
        default=None,
        description=(
            "Ray cluster to send jobs to (host:port of the head's GCS, or 'auto'); default: "
            "a Ray instance started by the server on this machine."
        ),
    )
    ray_namespace: str = Field(
        default="modelyard", description="Ray namespace of this server's tasks and actors."
    )
    ray_job_cpus: float = Field(
        default=1.0, gt=0, description="CPUs a job asks of the Ray cluster unless it says."
    )
    ray_job_gpus: float = Field(
        default=0.0, ge=0, description="GPUs a job asks of the Ray cluster unless it says."
    )
    ray_placement_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "How long a distributed job waits for the cluster to have room for all its "
            "workers (nodes down or busy) before it fails, naming what it waited for."
        ),
    )

    redis_url: str | None = Field(
        default=None,
        description=(
            "Redis holding the rate-limit counters (redis://host:6379/0), so limits hold across "
            "server processes and replicas sharing it; unset: counters in this process's memory."
        ),
    )
    redis_prefix: str = Field(
        default="modelyard",
        description="Prefix of every rate-limit key this server keeps in Redis.",
    )
    metering: bool = Field(
        default=True,
        description=(
            "Rate limits, budgets and metering of inference requests (off: none of them; "
            "job quotas and job usage stay), for a comparison such as bench usage."
        ),
    )
    limits_cache_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds the limits, budgets and spending read from the metadata store are kept in "
            "memory: a change by another server takes effect within this long."
        ),
    )
    usage_flush_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Seconds between writes of metered inference usage to the metadata store (batched, "
            "off the request path): a server killed with SIGKILL loses at most this long."
        ),
    )
    usage_minute_days: float = Field(
        default=2.0,
        gt=0,
        description="Days usage is kept in 1-minute buckets before it is rolled up into hours.",
    )
    usage_hour_days: float = Field(
        default=90.0,
        gt=0,
        description="Days usage is kept in 1-hour buckets before it is rolled up into days.",
    )
    prices: Prices = Field(
        default_factory=lambda: Prices(),
        description=(
            'Price table of /api/v1/costs and budgets, as JSON: {"currency": "usd", '
            '"per_1k_requests": 0.01, "per_1m_input_tokens": 0.5, "per_1m_output_tokens": 1.5, '
            '"per_cpu_hour": 0.05, "per_gpu_hour": 2.0, "per_gb_month": 0.02}.'
        ),
    )

    @field_validator("s3_prefix")
    @classmethod
    def _prefix_slash(cls, value: str) -> str:
        return value if not value or value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _check_ports(self) -> Settings:
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(
                f"MODELYARD_GRPC_PORT and MODELYARD_PORT are both {self.port}: gRPC needs a "
                "port of its own (Triton's is 8001), or 0 for no gRPC"
            )
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "MODELYARD_SSL_CERTFILE and MODELYARD_SSL_KEYFILE go together: give both to "
                "serve TLS, or neither"
            )
        return self

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS (a certificate and its key are set)."""
        return self.ssl_certfile is not None and self.ssl_keyfile is not None

    @model_validator(mode="after")
    def _check_key(self) -> Settings:
        if self.encryption_key is not None:
            self.master_key()  # fails fast with a message saying how to fix it
        return self

    def master_key(self) -> bytes | None:
        """The 32-byte encryption master key, or None when encryption is off."""
        if self.encryption_key is None:
            return None
        raw = self.encryption_key.get_secret_value().strip()
        for decode in (_from_hex, _from_b64):
            key = decode(raw)
            if key is not None and len(key) == 32:
                return key
        raise ValueError(
            "MODELYARD_ENCRYPTION_KEY must be 32 bytes given as 64 hex characters or base64; "
            "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"
        )

    def export_json(self) -> str:
        """These settings as JSON that a job's worker reads back, secrets included.

        ``model_dump_json`` masks secrets; a worker (a child process or a Ray task) needs
        the real encryption and S3 keys to open the blob store.
        """
        data = self.model_dump(mode="json")
        data["data_dir"] = str(self.data_dir.resolve())  # workers may start elsewhere
        for name in ("s3_secret_access_key", "encryption_key", "bootstrap_key"):
            secret: SecretStr | None = getattr(self, name)
            data[name] = secret.get_secret_value() if secret is not None else None
        return json.dumps(data)

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'modelyard.db').resolve()}"

    def private_roots(self) -> tuple[str, ...]:
        """Folders whose files callers are never told about: the data dir and the temp dir."""
        return (str(self.data_dir.resolve()), str(self.data_dir), tempfile.gettempdir())

    @property
    def tmp_dir(self) -> Path:
        """Scratch space for uploads in flight (same file system as local blobs)."""
        return self.data_dir / "tmp"


def _from_hex(raw: str) -> bytes | None:
    try:
        return bytes.fromhex(raw)
    except ValueError:
        return None


def _from_b64(raw: str) -> bytes | None:
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
