"""Supervised fine-tuning of a causal LM on chat or prompt/completion examples.

The loss is taken on the answer only (the assistant's last message, or the completion, plus
the end token); the prompt's tokens are context. ``method`` ``full`` trains every weight;
``lora`` trains a LoRA adapter (peft) on every linear layer and merges it into the weights
at the end, so the result is a plain model folder that serves like any other.

Example::

    result = fine_tune(model, tokenizer, train, valid, FineTuneConfig(n_epochs=3))
    result.model.save_pretrained(out)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
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


@dataclass(frozen=True)
class FineTuneConfig:
    """Resolved hyperparameters of one fine-tuning run."""

    method: str = "full"
    """``full`` (every weight) or ``lora`` (a low-rank adapter, merged at the end)."""
    n_epochs: int = 3
    batch_size: int = 4
    learning_rate_multiplier: float = 1.0
    """Times :data:`BASE_LR` of the method."""
    seed: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    max_length: int | None = None
    """Longest example in tokens (longer ones are cut); default: the model's context."""

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
) -> FineTuneResult:
    """Train ``model`` (on its device) and return it, with LoRA merged in."""
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
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    initial = evaluate(model, valid_batches)
    order = list(range(len(train_encoded)))
    shuffle = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(order) / config.batch_size)
    total_steps = steps_per_epoch * config.n_epochs
    step, tokens, last_train = 0, 0, float("nan")
    history: list[dict[str, Any]] = []
    cancelled = False
    valid_loss = initial
    for epoch in range(1, config.n_epochs + 1):
        shuffle.shuffle(order)
        batches = _batches([train_encoded[i] for i in order], config.batch_size, pad, device)
        model.train()
        epoch_loss, epoch_batches = 0.0, 0
        for batch in batches:
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
        if cancelled:
            break
        valid_loss = evaluate(model, valid_batches)
        train_loss = epoch_loss / max(1, epoch_batches)
        history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss})
        if callbacks is not None:
            callbacks.on_epoch(epoch, step, train_loss, valid_loss)
    if config.method == "lora":
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
