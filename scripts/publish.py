"""Publish a training output directory as a hub-ready folder, and optionally upload it.

    # check everything offline (record, safetensors, tokenizer, card rendering, LoRA merge) and write nothing
    python scripts/publish.py --output_dir outputs/grpo-tiny --dry_run
    # build the folder: weights, tokenizer, objectives.json, README.md model card (+ front.png when there is one)
    python scripts/publish.py --output_dir outputs/grpo-tiny --target_dir outputs/grpo-tiny-hub \
        --front_plot outputs/front/front.png
    # a LoRA run, merged into its base, then uploaded (token from HF_TOKEN or `hf auth login`; never written anywhere)
    python scripts/publish.py --output_dir outputs/dpo-lora --target_dir outputs/dpo-hub --merge_lora \
        --push --repo_id me/dpo-lora-merged

    # a steerable preference-adapter checkpoint baked at one preference: a plain checkpoint, no custom code to load it
    python scripts/publish.py --output_dir outputs/grpo-steerable --target_dir outputs/concise-hub \
        --weights conciseness=0.8,sentiment=0.2

The model card is rendered from objectives.json (alignment.hub.model_card); edit the record, not the card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import get_token

from alignment.hub.publishing import PublishError, build_folder, plan_publication, push_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="the training output directory (with objectives.json)")
    parser.add_argument("--target_dir", help="where the hub-ready folder goes (default: OUTPUT_DIR-hub)")
    parser.add_argument("--merge_lora", action="store_true",
                        help="merge a LoRA adapter into its base before publishing")
    parser.add_argument("--weights", help="bake a preference-adapter checkpoint at these weights ('a=0.7,b=0.3') into "
                                           "a plain merged checkpoint")
    parser.add_argument("--base_model", help="base model for --merge_lora when adapter_config.json names none")
    parser.add_argument("--front_plot",
                        help="PNG of the Pareto front to embed (default: front.png in OUTPUT_DIR if any)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target folder")
    parser.add_argument("--dry_run", action="store_true",
                        help="validate and build in a temporary folder; write nothing")
    parser.add_argument("--push", action="store_true", help="upload the folder with huggingface_hub")
    parser.add_argument("--repo_id", help="hub repository for --push, e.g. me/my-model")
    parser.add_argument("--private", action="store_true", help="create the hub repository as private")
    args = parser.parse_args(argv)

    if args.push and not args.repo_id:
        raise SystemExit("error: --push needs --repo_id")
    target = Path(args.target_dir or f"{str(args.output_dir).rstrip('/')}-hub")
    try:
        plan = plan_publication(args.output_dir, args.front_plot)
        build_folder(plan, target, merge_lora=args.merge_lora, base_model=args.base_model,
                     overwrite=args.overwrite, dry_run=args.dry_run, bake_weights=args.weights)
    except PublishError as error:
        raise SystemExit(f"error: {error}") from None
    names = ", ".join(plan.record["objective_names"])
    plot = f", front plot {plan.front_plot}" if plan.front_plot else ", no front plot"
    if args.dry_run:
        push = ""
        if args.push:
            token_note = "a Hugging Face token is configured" if get_token() else "no Hugging Face token is configured"
            push = f"; push to {args.repo_id}: {token_note}"
        merged = "; merged LoRA" if args.merge_lora else ""
        print(f"dry run OK: {plan.source} ({plan.record['trainer']} on {names}{plot}) would be published to {target}"
              f"{merged}{push}")
        return 0
    baked = f", baked at {args.weights}" if args.weights else ""
    print(f"published {plan.source} ({plan.record['trainer']} on {names}{plot}{baked}) to {target}")
    if args.push:
        try:
            print(f"uploaded: {push_folder(target, args.repo_id, private=args.private)}")
        except PublishError as error:
            raise SystemExit(f"error: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
