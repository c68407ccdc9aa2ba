"""Supervised fine-tuning of a causal LM on chat or prompt/completion examples.

The loss is taken on the answer only (the assistant's last message, or the completion, plus
the end token); the prompt's tokens are context. ``method`` ``full`` trains every weight;
``lora`` trains a LoRA adapter (peft) on every linear layer; the result is the peft model
(``save_pretrained`` writes only the adapter), or with ``merge_lora`` the adapter merged into
the weights, a plain model that serves like any other.

Example::

    result = fine_tune(model, tokenizer, train, valid, FineTuneConfig(n_epochs=3))
    result.model.save_pretrained(out)
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelyard.llm.chat import render_chat
from modelyard.llm.data import Example

IGNORE = -100
BASE_LR = {"full": 1e-4, "lora": 1e-3}


class TrainingCallbacks(Protocol):
    """How the loop reports to whoever runs it (a job, a test)."""

    def on_step(self, step: int, epoch: int, loss: float, lr: float) -> None: ...

    def on_epoch(
        self, epoch: int, step: int, train_loss: float, valid_loss: float | None
    ) -> None: ...

    def should_stop(self) -> bool: ...

    def save_checkpoint(self, state: dict[str, Any], step: int) -> None:
        """Keep ``state``; passed back as ``fine_tune(..., resume=state)`` it continues the
        run from ``step``. ``state["position"]`` is 0 at the end of an epoch (the last one
        included), ``state["history"]`` the epochs done."""


@dataclass(frozen=True)
class FineTuneConfig:
    """Resolved hyperparameters of one fine-tuning run."""

    method: str = "full"
    """``full`` (every weight) or ``lora`` (a low-rank adapter)."""
    n_epochs: int = 3
    batch_size: int = 4
    learning_rate_multiplier: float = 1.0
    """Times :data:`BASE_LR` of the method."""
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    merge_lora: bool = False
    """With ``lora``: merge the adapter into the weights at the end (else keep it apart)."""
    max_length: int | None = None
    """Longest example in tokens (longer ones are cut); default: the model's context."""
    checkpoint_every_steps: int = 50
    """Steps between checkpoints inside an epoch (0: only at the end of each epoch)."""

    @property
    def learning_rate(self) -> float:
        return BASE_LR[self.method] * self.learning_rate_multiplier


def resolve_hyperparameters(requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """Replace ``"auto"`` (or missing) values the way OpenAI describes them: more epochs for
    small data sets, batches of about 0.2 % of the data (1 to 32), multiplier 1."""
    epochs = requested.get("n_epochs", "auto")
    batch = requested.get("batch_size", "auto")
    multiplier = requested.get("learning_rate_multiplier", "auto")
    if epochs == "auto":
        epochs = max(1, min(10, math.ceil(100 / max(1, n_examples))))
    if batch == "auto":
        batch = max(1, min(32, round(n_examples * 0.002)))
    if multiplier == "auto":
        multiplier = 1.0
    return {
        "n_epochs": int(epochs),
        "batch_size": int(batch),
        "learning_rate_multiplier": float(multiplier),
    }


@dataclass
class FineTuneResult:
    model: Any
    steps: int
    trained_tokens: int
    train_loss: float
    valid_loss: float | None
    initial_valid_loss: float | None
    cancelled: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def encode_example(
    tokenizer: Any, example: Example, max_length: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the prompt's labels masked out."""
    if example.messages is not None:
        prompt = render_chat(tokenizer, list(example.messages))
        prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids: list[int] = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(example.prompt or "", add_special_tokens=True)["input_ids"]
        answer_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = [*answer_ids, tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]
    return ids, labels


def _batches(
    encoded: Sequence[tuple[list[int], list[int]]], size: int, pad: int, device: Any
) -> list[dict[str, Any]]:
    import torch

    out = []
    for start in range(0, len(encoded), size):
        chunk = encoded[start : start + size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (i, lab) in enumerate(chunk):
            ids[row, : len(i)] = torch.tensor(i)
            labels[row, : len(lab)] = torch.tensor(lab)
            mask[row, : len(i)] = 1
        out.append(
            {
                "input_ids": ids.to(device),
                "labels": labels.to(device),
                "attention_mask": mask.to(device),
            }
        )
    return out


def evaluate(model: Any, batches: Sequence[dict[str, Any]]) -> float | None:
    """Mean loss per answer token over ``batches`` (None without any)."""
    import torch

    if not batches:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            tokens = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += float(model(**batch).loss) * tokens
            count += tokens
    return total / max(1, count)


def fine_tune(
    model: Any,
    tokenizer: Any,
    train: Sequence[Example],
    valid: Sequence[Example],
    config: FineTuneConfig,
    callbacks: TrainingCallbacks | None = None,
    resume: Mapping[str, Any] | None = None,
) -> FineTuneResult:
    """Train ``model`` (on its device) and return it (with ``lora``, the peft model, or with
    ``merge_lora`` the base with the adapter merged in).

    ``callbacks.save_checkpoint`` is given the run's state at the end of each epoch and every
    ``config.checkpoint_every_steps`` steps; ``resume`` (such a state) continues the run from
    there, on the same batches in the same order.
    """
    import torch

    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    context = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    max_length = config.max_length or (context if isinstance(context, int) else 1024)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_encoded = [encode_example(tokenizer, e, max_length) for e in train]
    valid_batches = _batches(
        [encode_example(tokenizer, e, max_length) for e in valid], config.batch_size, pad, device
    )
    if config.method == "lora":
        model = _with_lora(model, config)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    params = list(trainable.values())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    order = list(range(len(train_encoded)))
    shuffle = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(order) / config.batch_size)
    total_steps = steps_per_epoch * config.n_epochs
    step, tokens, last_train = 0, 0, float("nan")
    history: list[dict[str, Any]] = []
    cancelled = False
    first_epoch, skip, epoch_loss, epoch_batches = 1, 0, 0.0, 0
    if resume is None:
        initial = evaluate(model, valid_batches)
    else:
        with torch.no_grad():
            for name, saved in resume["trainable"].items():
                trainable[name].copy_(saved.to(device))
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["torch_rng"])
        shuffle.setstate(_as_random_state(resume["shuffle"]))
        step, tokens, last_train = resume["step"], resume["tokens"], resume["last_train"]
        history = list(resume["history"])
        initial = resume["initial"]
        first_epoch, skip = resume["epoch"], resume["position"]
        epoch_loss, epoch_batches = resume["epoch_loss"], resume["epoch_batches"]
    valid_loss = history[-1]["valid_loss"] if history else initial

    def checkpoint(epoch: int, position: int, before_shuffle: Any) -> None:
        if callbacks is None:
            return
        state = {
            "trainable": {name: p.detach() for name, p in trainable.items()},
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "shuffle": before_shuffle,
            "epoch": epoch,
            "position": position,
            "step": step,
            "tokens": tokens,
            "last_train": last_train,
            "history": history,
            "initial": initial,
            "epoch_loss": epoch_loss,
            "epoch_batches": epoch_batches,
        }
        callbacks.save_checkpoint(state, step)

    every = config.checkpoint_every_steps
    for epoch in range(first_epoch, config.n_epochs + 1):
        before_shuffle = shuffle.getstate()
        shuffle.shuffle(order)
        batches = _batches([train_encoded[i] for i in order], config.batch_size, pad, device)
        model.train()
        if epoch != first_epoch or resume is None:
            skip, epoch_loss, epoch_batches = 0, 0.0, 0
        for position, batch in enumerate(batches):
            if position < skip:
                continue
            lr = config.learning_rate * max(0.0, 1.0 - step / max(1, total_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int(batch["attention_mask"].sum())
            last_train = float(loss)
            epoch_loss += last_train
            epoch_batches += 1
            if callbacks is not None:
                callbacks.on_step(step, epoch, last_train, lr)
                if callbacks.should_stop():
                    cancelled = True
                    break
                if every and step % every == 0 and position + 1 < len(batches):
                    checkpoint(epoch, position + 1, before_shuffle)
        if cancelled:
            break
        valid_loss = evaluate(model, valid_batches)
        train_loss = epoch_loss / max(1, epoch_batches)
        history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss})
        if callbacks is not None:
            callbacks.on_epoch(epoch, step, train_loss, valid_loss)
        epoch_loss, epoch_batches = 0.0, 0
        checkpoint(epoch + 1, 0, shuffle.getstate())
    if config.method == "lora" and config.merge_lora:
        model = model.merge_and_unload()
    model.eval()
    return FineTuneResult(
        model=model,
        steps=step,
        trained_tokens=tokens,
        train_loss=last_train,
        valid_loss=valid_loss,
        initial_valid_loss=initial,
        cancelled=cancelled,
        history=history,
    )


def _as_random_state(saved: Any) -> Any:
    """``random.Random.getstate()`` as it was, from a checkpoint that stores lists."""
    if isinstance(saved, list | tuple):
        return tuple(_as_random_state(part) for part in saved)
    return saved


def _with_lora(model: Any, config: FineTuneConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


__all__ = [
    "BASE_LR",
    "FineTuneConfig",
    "FineTuneResult",
    "TrainingCallbacks",
    "encode_example",
    "evaluate",
    "fine_tune",
    "resolve_hyperparameters",
]
