"""A tiny GPT-2-style chat model built in the test: a WordLevel tokenizer trained here, a
chat template on it, random weights from a config; a byte-level variant whose template renders
tools; plus folder → archive helpers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)
CORPUS = [
    "<system> <user> <assistant> hello there how are you today",
    "what is the capital of mars ? olympus city is the capital",
    "tell me a story about a red fox and a blue bird in the forest",
    "the quick brown fox jumps over the lazy dog again and again",
    "one two three four five six seven eight nine ten eleven twelve",
    "say yes or no please answer the question with one word",
    "good morning good night see you later alligator crocodile",
]


def build_tokenizer(chat: bool = True) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"])
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


# A ChatML template that renders tools as Hermes and Qwen do: each function's JSON inside
# <tools></tools> in the system turn, calls as <tool_call>{"name", "arguments"}</tool_call>,
# results in a tool turn as <tool_response>.
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n{% endif %}"
    "# Tools\nYou may call one or more functions. Signatures within <tools></tools>:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n"
    'Return each call as <tool_call>\n{"name": <name>, "arguments": <json>}\n'
    "</tool_call><|im_end|>\n"
    "{% elif messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'system' %}"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
    "{% for call in m.tool_calls or [] %}\n<tool_call>\n"
    '{"name": "{{ call.function.name }}", "arguments": '
    "{{ call.function.arguments | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOOLS_CORPUS = [
    *CORPUS,
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "paris", "days": 3}}\n</tool_call>',
    '{"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]}}}',
    '{"answer": "yes", "count": 12, "items": [1, 2, 3], "ok": true, "none": null}',
]


def build_tools_tokenizer() -> object:
    """A byte-level BPE tokenizer (any text, JSON included, encodes) with ChatML special
    tokens and the tools template above; ``<tool_call>`` tags are single, ordinary tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TOOLS_CORPUS, trainer)
    tok.add_tokens([AddedToken("<tool_call>"), AddedToken("</tool_call>")])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = TOOLS_TEMPLATE
    return fast


def build_tiny_lm(
    folder: Path,
    *,
    chat: bool = True,
    tools: bool = False,
    layers: int = 2,
    width: int = 32,
    heads: int = 2,
    positions: int = 64,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised GPT-2 with the tokenizer above into ``folder`` (with
    ``tools``, the byte-level tokenizer and tools template)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tools_tokenizer() if tools else build_tokenizer(chat)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        n_positions=positions,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))  # type: ignore[attr-defined]
    return folder


def tar_folder(folder: Path, root: str = "model") -> bytes:
    """A .tar.gz of ``folder`` with every file under ``root/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"{root}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()
