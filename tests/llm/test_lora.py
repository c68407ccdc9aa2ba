"""Batched LoRA: several adapters (and the plain base) in one forward pass give, row by row,
what each adapter merged into the weights gives alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.llm.lora import AdapterBank, LoraAdapter, parse_adapter_config, read_adapter
from tests.llm.tiny import build_tiny_lm

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")


def _load(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.eval()
    return model


def _random_adapter(base: Path, out: Path, seed: int, r: int, alpha: int) -> Path:
    """A peft LoRA adapter with random A and B (as after training), saved in peft's layout."""
    torch.manual_seed(seed)
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        init_lora_weights=False,
    )
    model = peft.get_peft_model(_load(base), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    model.save_pretrained(str(out))
    return out


def _merged(base: Path, adapter: Path) -> Any:
    return peft.PeftModel.from_pretrained(_load(base), str(adapter)).merge_and_unload()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("lora")
    base = build_tiny_lm(root / "base", positions=64)
    one = _random_adapter(base, root / "one", seed=1, r=8, alpha=16)
    two = _random_adapter(base, root / "two", seed=2, r=4, alpha=32)
    return base, one, two


def test_rows_of_different_adapters_match_each_merged_model(
    folders: tuple[Path, Path, Path],
) -> None:
    base_folder, one_folder, two_folder = folders
    base = _load(base_folder)
    bank = AdapterBank(base)
    one = bank.attach(read_adapter(one_folder, "one"))
    two = bank.attach(read_adapter(two_folder, "two"))
    rows = [one, None, two, one]
    ids = torch.randint(3, 40, (len(rows), 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), bank.applied(rows):
        batched = base(input_ids=ids).logits
    expected = {
        id(one): _merged(base_folder, one_folder),
        id(two): _merged(base_folder, two_folder),
        id(None): _load(base_folder),
    }
    with torch.no_grad():
        for row, adapter in enumerate(rows):
            alone = expected[id(adapter)](input_ids=ids[row : row + 1]).logits[0]
            assert torch.allclose(batched[row], alone, atol=1e-5, rtol=0), row
    # The adapters changed the outputs: the comparison above could fail.
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)
    assert not torch.allclose(batched[0], batched[2], atol=1e-3)


def test_the_base_is_untouched_outside_applied_and_after_close(
    folders: tuple[Path, Path, Path],
) -> None:
    base_folder, one_folder, _ = folders
    base = _load(base_folder)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        bank = AdapterBank(base)
        one = bank.attach(read_adapter(one_folder, "one"))
        assert torch.equal(base(input_ids=ids).logits, before)
        with bank.applied([one]):
            assert not torch.allclose(base(input_ids=ids).logits, before, atol=1e-3)
        with bank.applied([None]):
            assert torch.equal(base(input_ids=ids).logits, before)
        bank.close()
        with bank.applied([one]):
            assert torch.equal(base(input_ids=ids).logits, before)


def test_decoding_steps_count_the_adapters_they_mix(folders: tuple[Path, Path, Path]) -> None:
    base_folder, one_folder, two_folder = folders
    base = _load(base_folder)
    bank = AdapterBank(base)
    one = bank.attach(read_adapter(one_folder, "one"))
    two = bank.attach(read_adapter(two_folder, "two"))
    with bank.applied([one, one], decoding=True):
        pass
    assert (bank.decode_steps_mixed, bank.widest_decode_step) == (0, 1)
    with bank.applied([one, None, two], decoding=True):
        pass
    with bank.applied([one, None, two]):  # a prompt's pass, not a decoding step
        pass
    assert (bank.decode_steps_mixed, bank.widest_decode_step) == (1, 3)


def test_adapters_that_do_not_fit_are_refused(folders: tuple[Path, Path, Path]) -> None:
    base_folder, one_folder, _ = folders
    wide = _load(build_tiny_lm(base_folder.parent / "wide", width=64, positions=64))
    with pytest.raises(InvalidInput, match="maps 32 to 96 features; the base's layer maps 64"):
        AdapterBank(wide).attach(read_adapter(one_folder, "one"))
    config = parse_adapter_config({"peft_type": "LORA", "r": 2, "lora_alpha": 4})
    stray = {
        "base_model.model.nowhere.lora_A.weight": torch.zeros(2, 32),
        "base_model.model.nowhere.lora_B.weight": torch.zeros(32, 2),
    }
    with pytest.raises(InvalidInput, match="'nowhere', which the base model lacks"):
        AdapterBank(_load(base_folder)).attach(LoraAdapter.from_tensors("x", config, stray))
    with pytest.raises(InvalidInput, match="DoRA"):
        parse_adapter_config({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_dora": True})
    with pytest.raises(InvalidInput, match="only one of lora_A and lora_B"):
        LoraAdapter.from_tensors("x", config, {"m.lora_A.weight": torch.zeros(2, 4)})


def _greedy_alone(model: Any, prompt: list[int], max_tokens: int, eos: int) -> list[int]:
    out: list[int] = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
        max_new_tokens=max_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos,
    )[0, len(prompt) :].tolist()
    return out[: out.index(eos)] if eos in out else out


async def _tokens(stream: Any) -> list[int]:
    return [lp.token_id async for delta in stream for lp in delta.logprobs]


def test_the_engine_decodes_adapters_and_the_base_in_one_batch(
    folders: tuple[Path, Path, Path],
) -> None:
    import asyncio

    from modelyard.llm.adapted import AdaptedLanguageModel
    from modelyard.llm.engine import EngineConfig
    from modelyard.llm.language_model import LanguageModel, load_causal_lm

    base_folder, one_folder, two_folder = folders
    model, tokenizer = load_causal_lm(base_folder, device="cpu")
    lm = LanguageModel(model, tokenizer, EngineConfig(context_length=64, name="tiny"))
    one = AdaptedLanguageModel(lm, one_folder, "one")
    two = AdaptedLanguageModel(lm, two_folder, "two")
    prompt = lm.encode("tell me a story about")
    eos = tokenizer.eos_token_id

    async def together() -> list[list[int]]:
        params = lm.sampling(max_tokens=12, temperature=0, logprobs=0)
        # Queued before the engine starts, so all three are admitted to the same batch.
        streams = [m.generate(prompt, params) for m in (one, lm, two)]
        lm.engine.start()
        try:
            return list(await asyncio.gather(*(_tokens(s) for s in streams)))
        finally:
            lm.close()

    got = asyncio.run(together())
    want = [
        _greedy_alone(_merged(base_folder, one_folder), prompt, 12, eos),
        _greedy_alone(_load(base_folder), prompt, 12, eos),
        _greedy_alone(_merged(base_folder, two_folder), prompt, 12, eos),
    ]
    assert got == want
    assert len({tuple(tokens) for tokens in got}) == 3  # three different answers
    bank = lm.engine.adapters
    assert bank is not None and bank.widest_decode_step == 3 and bank.decode_steps_mixed > 0
    with pytest.raises(NotFound, match="no adapter 'three'"):
        lm.generate(prompt, lm.sampling(max_tokens=2), adapter="three")


def test_the_prefix_cache_keeps_each_adapters_prompts_apart(
    folders: tuple[Path, Path, Path],
) -> None:
    import asyncio

    from modelyard.llm.adapted import AdaptedLanguageModel
    from modelyard.llm.engine import EngineConfig
    from modelyard.llm.language_model import LanguageModel, load_causal_lm

    base_folder, one_folder, _ = folders
    model, tokenizer = load_causal_lm(base_folder, device="cpu")
    lm = LanguageModel(model, tokenizer, EngineConfig(context_length=64, name="tiny"))
    one = AdaptedLanguageModel(lm, one_folder, "one")
    prompt = lm.encode(
        "the quick brown fox jumps over the lazy dog again and again one two three four five"
    )
    assert len(prompt) > 16  # its first block is kept after it runs
    eos = tokenizer.eos_token_id
    seen: list[int] = []

    class Hits:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: None

        def on_prefix_cache(self, cached_tokens: int, prompt_tokens: int) -> None:
            seen.append(cached_tokens)

    lm.engine.observer = Hits()  # type: ignore[assignment]

    async def one_by_one() -> list[list[int]]:
        lm.engine.start()
        params = lm.sampling(max_tokens=8, temperature=0, logprobs=0)
        try:
            return [await _tokens(m.generate(prompt, params)) for m in (lm, one, one, lm)]
        finally:
            lm.close()

    base_alone, adapter_after_base, adapter_again, base_again = asyncio.run(one_by_one())
    # The adapter misses after the base's run, then hits its own prefix; so does the base.
    assert seen == [0, 0, 16, 16]
    merged = _merged(base_folder, one_folder)
    assert adapter_after_base == adapter_again == _greedy_alone(merged, prompt, 8, eos)
    assert base_alone == base_again != adapter_again


def test_an_adapter_moves_onto_its_base_when_the_base_is_reloaded(
    folders: tuple[Path, Path, Path],
) -> None:
    import asyncio

    from modelyard.errors import Conflict
    from modelyard.llm.adapted import AdaptedLanguageModel
    from modelyard.llm.engine import EngineConfig
    from modelyard.llm.language_model import LanguageModel, load_causal_lm

    base_folder, one_folder, _ = folders

    def loaded() -> LanguageModel:
        model, tokenizer = load_causal_lm(base_folder, device="cpu")
        return LanguageModel(model, tokenizer, EngineConfig(context_length=64, name="tiny"))

    old, new = loaded(), loaded()
    current: list[LanguageModel | None] = [old]

    def base_of() -> LanguageModel:
        if current[0] is None:
            raise Conflict("the base deployment serves another version")
        return current[0]

    one = AdaptedLanguageModel(old, one_folder, "one", base_of)
    prompt = old.encode("tell me a story about")

    async def answer() -> list[int]:
        return await _tokens(
            one.generate(prompt, old.sampling(max_tokens=6, temperature=0, logprobs=0))
        )

    async def run() -> tuple[list[int], list[int]]:
        old.engine.start()
        new.engine.start()
        try:
            before = await answer()
            old.close()  # the base deployment swapped to a new object
            current[0] = new
            return before, await answer()
        finally:
            new.close()

    before, after = asyncio.run(run())
    assert before == after
    assert one.base is new and one.engine is new.engine
    assert new.engine.adapters is not None and new.engine.adapters.get("one") is one.adapter
    current[0] = None
    with pytest.raises(Conflict):
        one.generate(prompt, old.sampling(max_tokens=2))


def test_a_swapped_out_adapter_version_keeps_its_own_weights(
    folders: tuple[Path, Path, Path],
) -> None:
    import asyncio

    from modelyard.llm.adapted import AdaptedLanguageModel
    from modelyard.llm.engine import EngineConfig
    from modelyard.llm.language_model import LanguageModel, load_causal_lm

    base_folder, one_folder, two_folder = folders
    model, tokenizer = load_causal_lm(base_folder, device="cpu")
    lm = LanguageModel(model, tokenizer, EngineConfig(context_length=64, name="tiny"))
    older = AdaptedLanguageModel(lm, one_folder, "mars")
    newer = AdaptedLanguageModel(lm, two_folder, "mars")  # a new version of the deployment
    prompt = lm.encode("tell me a story about")
    params = lm.sampling(max_tokens=6, temperature=0, logprobs=0)

    async def run() -> list[list[int]]:
        lm.engine.start()
        try:
            return [await _tokens(m.generate(prompt, params)) for m in (older, newer)]
        finally:
            lm.close()

    got = asyncio.run(run())
    eos = tokenizer.eos_token_id
    assert got[0] == _greedy_alone(_merged(base_folder, one_folder), prompt, 6, eos)
    assert got[1] == _greedy_alone(_merged(base_folder, two_folder), prompt, 6, eos)
    older.close()  # closing the older version leaves the newer one attached
    assert lm.engine.adapters is not None and lm.engine.adapters.get("mars") is newer.adapter
