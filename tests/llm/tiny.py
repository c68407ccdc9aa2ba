"""A tiny GPT-2-style chat model built in the test: a WordLevel tokenizer trained here, a
chat template on it, random weights from a config; plus folder → archive helpers."""

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


def build_tiny_lm(
    folder: Path,
    *,
    chat: bool = True,
    layers: int = 2,
    width: int = 32,
    heads: int = 2,
    positions: int = 64,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised GPT-2 with the tokenizer above into ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tokenizer(chat)
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
