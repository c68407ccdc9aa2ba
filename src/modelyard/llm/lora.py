"""LoRA adapters served on top of one loaded base model, several in one batch.

An adapter is a low-rank update of some of the base's linear layers: for each adapted layer
``y = base(x) + scale * (x @ A.T) @ B.T`` with ``A`` of shape ``[r, in]`` and ``B`` of shape
``[out, r]``. Nothing of the base is copied or changed: an :class:`AdapterBank` puts a forward
hook on each adapted layer of the base, and the hook adds, to every row of the batch, the
update of that row's adapter (none for a row of the plain base). Rows are grouped by adapter
(one index_select, two small matmuls and one index_add per adapter present), so requests for
different adapters, and for the base, share each forward pass, as vLLM's multi-LoRA does.

Adapters are read from peft's folder format (``adapter_config.json`` and
``adapter_model.safetensors``), so what peft saves serves here and what is served here loads
in peft.

Example::

    bank = AdapterBank(model)
    mars = bank.attach(read_adapter(folder, "mars", model))
    with bank.applied([mars, None]):      # row 0 with the adapter, row 1 the base
        logits = model(input_ids=ids).logits
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import torch

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_SUFFIXES = {".lora_A.weight": 0, ".lora_B.weight": 1}
_ids = itertools.count(1)


@dataclass(frozen=True)
class LoraConfig:
    """What an adapter's ``adapter_config.json`` says that serving needs."""

    r: int
    """Rank of the update (the rows of ``A``)."""
    alpha: float
    """Scale numerator: the update is multiplied by ``alpha / r`` (``alpha / sqrt(r)`` with
    rsLoRA)."""
    target_modules: tuple[str, ...]
    """The adapted layers, as the config names them (module paths or name suffixes)."""
    use_rslora: bool = False

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def as_spec(self) -> dict[str, Any]:
        return {
            "kind": "lora_adapter",
            "r": self.r,
            "alpha": self.alpha,
            "use_rslora": self.use_rslora,
            "target_modules": list(self.target_modules),
        }


def parse_adapter_config(raw: Mapping[str, Any]) -> LoraConfig:
    """Check a peft ``adapter_config.json``; InvalidInput naming what cannot be served."""
    if raw.get("peft_type") != "LORA":
        raise InvalidInput(
            f"{ADAPTER_CONFIG}: peft_type must be 'LORA', not {raw.get('peft_type')!r}"
        )
    r, alpha = raw.get("r"), raw.get("lora_alpha")
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise InvalidInput(f"{ADAPTER_CONFIG}: 'r' must be a positive integer")
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or alpha <= 0:
        raise InvalidInput(f"{ADAPTER_CONFIG}: 'lora_alpha' must be a positive number")
    unsupported = {
        "use_dora": "DoRA",
        "rank_pattern": "per-layer ranks",
        "alpha_pattern": "per-layer alphas",
        "modules_to_save": "fully trained modules",
        "layer_replication": "layer replication",
        "lora_bias": "LoRA biases",
    }
    for key, what in unsupported.items():
        if raw.get(key):
            raise InvalidInput(f"{ADAPTER_CONFIG}: {what} ({key!r}) cannot be served")
    if raw.get("bias", "none") != "none":
        raise InvalidInput(f"{ADAPTER_CONFIG}: only bias 'none' can be served")
    targets = raw.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InvalidInput(f"{ADAPTER_CONFIG}: 'target_modules' must be a list of names")
    return LoraConfig(r, float(alpha), tuple(sorted(targets)), bool(raw.get("use_rslora")))


def read_adapter_config(folder: Path) -> LoraConfig:
    path = folder / ADAPTER_CONFIG
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"the adapter folder has no {ADAPTER_CONFIG}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{ADAPTER_CONFIG} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"{ADAPTER_CONFIG} must hold a JSON object")
    return parse_adapter_config(raw)


def layer_pairs(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{module path: (A tensor name, B tensor name)}`` of peft's saved tensor names;
    InvalidInput for a tensor that is not a LoRA A or B matrix, or a matrix without its pair."""
    found: dict[str, list[str | None]] = {}
    for name in names:
        suffix = next((s for s in _SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise InvalidInput(
                f"{ADAPTER_WEIGHTS}: {name!r} is not a LoRA matrix (…lora_A.weight or "
                "…lora_B.weight); embedding adapters and saved modules cannot be served"
            )
        path = name[: -len(suffix)].removeprefix(_PREFIX)
        found.setdefault(path, [None, None])[_SUFFIXES[suffix]] = name
    pairs: dict[str, tuple[str, str]] = {}
    for path, (a, b) in sorted(found.items()):
        if a is None or b is None:
            raise InvalidInput(f"{ADAPTER_WEIGHTS}: '{path}' has only one of lora_A and lora_B")
        pairs[path] = (a, b)
    if not pairs:
        raise InvalidInput(f"{ADAPTER_WEIGHTS} holds no LoRA matrices")
    return pairs


@dataclass(eq=False)
class LoraAdapter:
    """One adapter's matrices, on the base's device and in its dtype, scale folded into B."""

    name: str
    config: LoraConfig
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """``{module path: (A [r, in], scale * B [out, r])}``."""
    key: str = field(default_factory=lambda: f"lora-{next(_ids)}")
    """Unique among the adapters of this process (keeps prefix caches apart)."""

    @classmethod
    def from_tensors(
        cls,
        name: str,
        config: LoraConfig,
        tensors: Mapping[str, torch.Tensor],
        *,
        device: Any = None,
        dtype: Any = None,
    ) -> LoraAdapter:
        """From peft's tensors (``base_model.model.<path>.lora_A.weight`` and ``…lora_B…``)."""
        layers = {}
        for path, (a_name, b_name) in layer_pairs(list(tensors)).items():
            a, b = tensors[a_name], tensors[b_name]
            if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
                raise InvalidInput(
                    f"{ADAPTER_WEIGHTS}: '{path}' has A {list(a.shape)} and B {list(b.shape)}, "
                    "not [r, in] and [out, r]"
                )
            target = dtype if dtype is not None else a.dtype
            b = b.double() * config.scale
            layers[path] = (a.to(device=device, dtype=target), b.to(device=device, dtype=target))
        return cls(name, config, layers)


def read_adapter(folder: Path, name: str, *, device: Any = None, dtype: Any = None) -> LoraAdapter:
    """The adapter saved in ``folder`` (peft's ``save_pretrained`` layout, safetensors only)."""
    from safetensors.torch import load_file

    config = read_adapter_config(folder)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise InvalidInput(f"the adapter folder has no {ADAPTER_WEIGHTS}")
    return LoraAdapter.from_tensors(
        name, config, load_file(str(weights)), device=device, dtype=dtype
    )


@dataclass
class _Groups:
    """The rows of one forward pass, by adapter: ``rows`` None means every row."""

    groups: list[tuple[LoraAdapter, torch.Tensor | None]]


class AdapterBank:
    """The adapters attached to one base model, and the hooks that apply them per row.

    Only the thread that runs the model's forward passes uses :meth:`applied`; attaching and
    detaching may happen on any thread.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._adapters: dict[str, LoraAdapter] = {}
        self._hooks: dict[str, Any] = {}
        self._active: _Groups | None = None
        self._lock = threading.Lock()
        self.decode_steps_mixed = 0
        """Decoding steps whose batch held rows of more than one adapter (the plain base
        counted as one)."""
        self.widest_decode_step = 0
        """The most adapters (the plain base counted as one) seen in one decoding step."""
        self.on_decode_step: Callable[[int], None] | None = None
        """Called on the decoding thread with the number of adapters (the plain base counted
        as one) of each decoding step; keep it cheap."""

    def __len__(self) -> int:
        return len(self._adapters)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._adapters)

    def get(self, name: str) -> LoraAdapter | None:
        with self._lock:
            return self._adapters.get(name)

    def attach(self, adapter: LoraAdapter) -> LoraAdapter:
        """Apply ``adapter`` to requests that name it from now on (replacing one of the same
        name); InvalidInput when its layers are not the base's."""
        for path, (a, b) in adapter.layers.items():
            try:
                module = self._model.get_submodule(path)
            except AttributeError:
                raise InvalidInput(
                    f"adapter '{adapter.name}' adapts '{path}', which the base model lacks"
                ) from None
            fan_in, fan_out = _features(module)
            if (fan_in, fan_out) != (a.shape[1], b.shape[0]):
                raise InvalidInput(
                    f"adapter '{adapter.name}': '{path}' maps {a.shape[1]} to {b.shape[0]} "
                    f"features; the base's layer maps {fan_in} to {fan_out}"
                )
        with self._lock:
            for path in adapter.layers:
                if path not in self._hooks:
                    module = self._model.get_submodule(path)
                    self._hooks[path] = module.register_forward_hook(self._hook(path))
            self._adapters[adapter.name] = adapter
        return adapter

    def detach(self, name: str) -> None:
        """Stop taking requests for ``name``; sequences already running finish with it."""
        with self._lock:
            self._adapters.pop(name, None)

    @contextlib.contextmanager
    def applied(
        self, rows: Sequence[LoraAdapter | None], *, decoding: bool = False
    ) -> Iterator[None]:
        """Within the block, row ``i`` of the model's input runs with adapter ``rows[i]``
        (None: the plain base). ``decoding`` counts the pass as a decoding step."""
        import torch

        by_adapter: dict[int, tuple[LoraAdapter, list[int]]] = {}
        for row, adapter in enumerate(rows):
            if adapter is not None:
                by_adapter.setdefault(id(adapter), (adapter, []))[1].append(row)
        if decoding:
            kinds = len(by_adapter) + (1 if any(a is None for a in rows) else 0)
            self.widest_decode_step = max(self.widest_decode_step, kinds)
            self.decode_steps_mixed += kinds > 1
            if self.on_decode_step is not None:
                self.on_decode_step(kinds)
        if not by_adapter:
            yield
            return
        some = next(iter(by_adapter.values()))[0]
        device = next(iter(some.layers.values()))[0].device
        groups: list[tuple[LoraAdapter, torch.Tensor | None]] = [
            (
                adapter,
                None
                if len(members) == len(rows)
                else torch.tensor(members, dtype=torch.long, device=device),
            )
            for adapter, members in by_adapter.values()
        ]
        self._active = _Groups(groups)
        try:
            yield
        finally:
            self._active = None

    def _hook(self, path: str) -> Any:
        def add_updates(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> Any:
            active = self._active
            if active is None:
                return None
            x = args[0]
            for adapter, rows in active.groups:
                layer = adapter.layers.get(path)
                if layer is None:
                    continue
                a, b = layer
                if rows is None:
                    output = output + (x @ a.T) @ b.T
                else:
                    update = (x.index_select(0, rows) @ a.T) @ b.T
                    output = output.index_add(0, rows, update)
            return output

        return add_updates

    def close(self) -> None:
        """Remove the hooks: the base runs as if no adapter had been attached."""
        with self._lock:
            for hook in self._hooks.values():
                hook.remove()
            self._hooks.clear()
            self._adapters.clear()


def _features(module: Any) -> tuple[int, int]:
    """(in, out) features of a linear layer: ``nn.Linear`` or GPT-2's transposed ``Conv1D``."""
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        raise InvalidInput(f"'{type(module).__name__}' is not a linear layer; LoRA cannot adapt it")
    if type(module).__name__ == "Conv1D":
        return int(weight.shape[0]), int(weight.shape[1])
    return int(weight.shape[1]), int(weight.shape[0])


__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "AdapterBank",
    "LoraAdapter",
    "LoraConfig",
    "layer_pairs",
    "parse_adapter_config",
    "read_adapter",
    "read_adapter_config",
]
