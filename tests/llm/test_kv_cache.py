"""The running batch's KV cache, written in place, against transformers' own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import DynamicCache

from modelyard.llm.kv_cache import PreallocatedLayer, preallocated_cache
from tests.llm.tiny import build_tiny_lm


def test_a_layer_holds_what_concatenation_holds_across_reallocations() -> None:
    torch.manual_seed(0)
    keys, values = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    layer = PreallocatedLayer(keys, values, room=2)
    for width in (1, 1, 1, 3, 1, 2):  # fills the room, outgrows it, and fills it again
        new_keys, new_values = torch.randn(2, 3, width, 4), torch.randn(2, 3, width, 4)
        keys, values = torch.cat([keys, new_keys], dim=2), torch.cat([values, new_values], dim=2)
        got_keys, got_values = layer.update(new_keys, new_values)
        assert torch.equal(got_keys, keys)
        assert torch.equal(got_values, values)
    assert layer.get_seq_length() == keys.shape[2]


def test_the_layer_copies_what_it_was_given() -> None:
    keys, values = torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2)
    layer = PreallocatedLayer(keys, values, room=4)
    layer.update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    assert keys.abs().sum() == 0 and values.abs().sum() == 0
    assert layer.get_seq_length() == 4


@pytest.mark.parametrize("room", [1, 3, 64])
def test_decoding_on_a_preallocated_cache_gives_the_logits_of_a_dynamic_one(
    tmp_path: Path, room: int
) -> None:
    from transformers import AutoModelForCausalLM

    folder = build_tiny_lm(tmp_path / "m", positions=64, width=32)
    model: Any = AutoModelForCausalLM.from_pretrained(str(folder))
    model.eval()
    ids = torch.tensor([[5, 9, 11, 7, 3], [0, 0, 4, 8, 6]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.inference_mode():
        prefill = model(input_ids=ids, attention_mask=mask, position_ids=positions)
        kv = [(layer.keys, layer.values) for layer in prefill.past_key_values.layers]
        fast = preallocated_cache(kv, model.config, room=room)
        slow = DynamicCache(ddp_cache_data=kv, config=model.config)
        assert all(isinstance(layer, PreallocatedLayer) for layer in fast.layers)
        token = prefill.logits[:, -1].argmax(dim=-1, keepdim=True)
        for _ in range(8):
            positions = mask.sum(dim=1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(positions)], dim=1)
            inputs = {"input_ids": token, "attention_mask": mask, "position_ids": positions}
            a = model(**inputs, past_key_values=fast, use_cache=True).logits[:, -1]
            b = model(**inputs, past_key_values=slow, use_cache=True).logits[:, -1]
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
            token = b.argmax(dim=-1, keepdim=True)
