"""One reward head, one question at a time: which training choice moves dev accuracy? (issue 14's ablations)

A single-head MiniLM reward model trained by a plain torch loop (Bradley-Terry on chosen/rejected pairs) on the
packaged HH pairs of one objective, evaluated on that objective's packaged dev pairs: accuracy with its standard
error, dev Bradley-Terry loss and the spread of the score gaps. Each flag changes one thing:

    python benchmarks/reward_model_probe.py --objective helpful                       # the recipe's settings
    python benchmarks/reward_model_probe.py --objective helpful --max_length 256      # longer texts
    python benchmarks/reward_model_probe.py --objective helpful --epochs 2            # a second epoch
    python benchmarks/reward_model_probe.py --objective helpful --pair_input          # (context, reply) text pairs
    python benchmarks/reward_model_probe.py --objective helpful --extra_pairs ultrafeedback   # more (other) pairs
    python benchmarks/reward_model_probe.py --objective helpful --disable_dropout     # TRL RewardConfig's default
    python benchmarks/reward_model_probe.py --objective helpful --head_learning_rate 1e-3     # a faster new head
    python benchmarks/reward_model_probe.py --objective helpful --learning_rate 5e-5 --seed 1  # another lr, seed

The model is the recipe's (`build_reward_model`, the mean-pooling layer read through [CLS]); `--pair_input` feeds the
conversation so far and the last reply as BERT's two segments (token_type_ids 0 / 1, the context truncated from the
left), the cross-encoder layout, instead of one string. One thread; the last line is a JSON record of the run.
"""

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer
from trl.trainer.utils import disable_dropout_in_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alignment.models.packaged import resolve_model_path  # noqa: E402
from reward_models.chat_format import render_conversation  # noqa: E402
from reward_models.data import load_pairwise_source  # noqa: E402
from reward_models.losses import masked_bradley_terry_loss  # noqa: E402
from reward_models.metrics import per_head_metrics  # noqa: E402
from reward_models.modeling import build_reward_model  # noqa: E402

BACKBONE = "packaged:all-MiniLM-L6-v2"


def load_pairs(name, objective, tokenizer, pair_input):
    """(chosen, rejected) texts of a packaged pair file, read as the recipe reads it (pairs with identical sides left
    out): rendered strings, or (context, last reply) tuples."""
    def text(messages):
        if pair_input:
            return render_conversation(tokenizer, messages[:-1]), messages[-1]["content"]
        return render_conversation(tokenizer, messages)

    return [(text(e.first), text(e.second))
            for e in load_pairwise_source(f"{objective}={name}", [objective], drop_degenerate=True)]


def length_grouped_batches(pairs, batch_size, rng):
    """Batches of similar length (less padding): the pairs shuffled, cut into chunks of 50 batches, sorted by length
    within a chunk, and the chunk's batches shuffled. Like the recipe's group_by_length (transformers'
    `LengthGroupedSampler`, which keeps a chunk's batches longest first) but not the same order; the README's probe
    figures were made with this one, so it stays."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size * 50):
        chunk = sorted(order[start:start + batch_size * 50], key=lambda i: len(str(pairs[i][0])))
        chunk_batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(chunk_batches)
        batches += chunk_batches
    return batches


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objective", default="helpful", choices=["helpful", "harmless"])
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=3e-5)
    parser.add_argument("--batch_pairs", type=int, default=8, help="pairs per step")
    parser.add_argument("--pair_input", action="store_true", help="(context, reply) as BERT's two segments")
    parser.add_argument("--extra_pairs", default=None, help="another packaged pair file trained on as well")
    parser.add_argument("--max_train_pairs", type=int, default=0, help="train on the first N pairs only (0: all)")
    parser.add_argument("--disable_dropout", action="store_true",
                        help="every dropout p = 0 (TRL's RewardConfig default)")
    parser.add_argument("--head_learning_rate", type=float, default=None,
                        help="learning rate of the new score head (the classifier), default --learning_rate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BACKBONE))
    tokenizer.truncation_side = "left"  # the last exchanges and the reply survive truncation
    train = load_pairs(f"hh-{args.objective}", args.objective, tokenizer, args.pair_input)
    dev = load_pairs(f"hh-{args.objective}-dev", args.objective, tokenizer, args.pair_input)
    if args.extra_pairs:
        train += load_pairs(args.extra_pairs, args.objective, tokenizer, args.pair_input)
    if args.max_train_pairs:
        train = train[:args.max_train_pairs]
    model = build_reward_model(BACKBONE, [args.objective], tokenizer, encoder_pooling="mean")
    if args.disable_dropout:
        disable_dropout_in_model(model)
    print(f"{len(train)} training pairs, {len(dev)} dev pairs; {vars(args)}", flush=True)

    def scores(texts):
        if args.pair_input:  # only the context is cut; a reply longer than max_length is cut as well
            batch = tokenizer([c for c, _ in texts], [r for _, r in texts], padding=True, truncation="longest_first",
                              max_length=args.max_length, return_tensors="pt")
        else:
            batch = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
        return model(**batch).logits[:, 0]

    @torch.no_grad()
    def evaluate():
        model.eval()
        chosen, rejected = [], []
        for i in range(0, len(dev), 32):
            chunk = dev[i:i + 32]
            s = scores([c for c, _ in chunk] + [r for _, r in chunk])
            chosen.append(s[:len(chunk)])
            rejected.append(s[len(chunk):])
        model.train()
        # the evaluation script's metrics: predictions [N, 2, K=1], labels [N, 3, 1] = (pair mask, rating, rating mask)
        predictions = torch.stack([torch.cat(chosen), torch.cat(rejected)], dim=1).unsqueeze(-1).numpy()
        labels = np.zeros((len(dev), 3, 1))
        labels[:, 0] = 1.0
        metrics = per_head_metrics(predictions, labels, [args.objective])
        return {"accuracy": metrics[f"accuracy_{args.objective}"], "se": metrics[f"accuracy_se_{args.objective}"],
                "bt_loss": metrics[f"bt_loss_{args.objective}"],
                "gap_std": float((predictions[:, 0] - predictions[:, 1]).std(ddof=1))}

    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    head_lr = args.head_learning_rate or args.learning_rate
    optimizer = torch.optim.AdamW([{"params": body}, {"params": head, "lr": head_lr}], lr=args.learning_rate,
                                  weight_decay=0.0)
    total = args.epochs * math.ceil(len(train) / args.batch_pairs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)  # linear, no warmup
    model.train()
    start, cpu_start, step, losses = time.time(), time.process_time(), 0, []
    for epoch in range(args.epochs):
        for batch in length_grouped_batches(train, args.batch_pairs, rng):
            pairs = [train[i] for i in batch]
            s = scores([c for c, _ in pairs] + [r for _, r in pairs])
            loss = masked_bradley_terry_loss(s[:len(pairs), None], s[len(pairs):, None], torch.ones(len(pairs), 1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            if step % 50 == 0:
                print(f"step {step}/{total}  loss (last 50) {sum(losses[-50:]) / 50:.4f}  {time.time() - start:.0f}s",
                      flush=True)
        result = evaluate()
        print(f"epoch {epoch + 1}: dev accuracy {result['accuracy']:.3f} +- {result['se']:.3f}  BT loss "
              f"{result['bt_loss']:.4f}  gap std {result['gap_std']:.3f}  CPU {time.process_time() - cpu_start:.0f}s",
              flush=True)
    print(json.dumps({**vars(args), **result, "cpu_seconds": time.process_time() - cpu_start}))


if __name__ == "__main__":
    main()
