"""A tiny chat policy built offline: the CPU default of every recipe and the model of the tests.

No hub access here, so we make one: a byte-level BPE tokenizer trained on the HH-RLHF dialogue turns, a
0.6M-parameter Qwen2-style model, and a short language-modelling run on chat-formatted turns so that its replies
are word-like and end on their own (otherwise length, sentiment and profanity are not measurable). The result is a
plain transformers checkpoint, cached by its settings so it is built once (~40 s on 2 CPU cores).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

from alignment.cache import build_once, default_cache_dir, save_model_from_any_process
from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyPolicySpec:
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    train_steps: int = 400
    batch_size: int = 16
    learning_rate: float = 3e-3
    max_length: int = 96
    seed: int = 0


def hh_dialogue_turns(sources: tuple[str, ...] = ("hh-helpful", "hh-harmless"),
                      limit: int | None = None) -> list[tuple[str, str]]:
    """(human, assistant) turn pairs from the HH-RLHF helpful and harmless 'chosen' dialogues (packaged data)."""
    turns = []
    for source in sources:
        for _, row in iter_jsonl(resolve_data(source)):
            for block in row["chosen"].split("\n\nHuman: ")[1:]:
                human, sep, assistant = block.partition("\n\nAssistant: ")
                if sep and human.strip() and assistant.strip():
                    turns.append((human.strip(), assistant.split("\n\nHuman:")[0].strip()))
    return turns[:limit] if limit else turns


def build_tokenizer(texts: list[str], vocab_size: int):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def build_tiny_policy(
    cache_dir: str | Path | None = None, spec: TinyPolicySpec = TinyPolicySpec()
) -> Path:
    """Return the path of the cached tiny policy, building it first if needed (once, under a lock; atomic)."""
    key = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]
    target = Path(cache_dir or default_cache_dir()) / f"tiny-policy-{key}"
    return build_once(target, lambda staging: _train_tiny_policy(spec, staging))


def _train_tiny_policy(spec: TinyPolicySpec, output_dir: Path) -> None:
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    turns = hh_dialogue_turns()
    tokenizer = build_tokenizer([t for pair in turns for t in pair], spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=2 * spec.hidden_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(config)
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": h}, {"role": "assistant", "content": a}],
                                      tokenize=False)
        for h, a in turns
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / spec.train_steps)
    model.train()
    for _ in tqdm(range(spec.train_steps), desc="building tiny policy", mininterval=5):
        batch = tokenizer(random.sample(texts, spec.batch_size), return_tensors="pt", padding=True,
                          truncation=True, max_length=spec.max_length)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model_from_any_process(model, output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "tiny_policy.json").write_text(json.dumps({**asdict(spec), "final_loss": loss.item()}, indent=2))
