"""What becomes of each field our trainer configs inherit from TRL (`GRPOConfig`, `DPOConfig`) and of TRL's
`ModelConfig`: honoured (TRL's own code runs it, or ours does with TRL's meaning), refused with the reason when
given a value that would do nothing, or not applicable (what TRL itself does with it: nothing, in that setting).

Nothing a user passes is silently ignored. `tests/test_trl_fields.py` walks every field TRL defines: a field missing
here (a new TRL release) fails, and every `refused` field is checked to stop a config that sets it.
"""

from __future__ import annotations

HONOURED = "honoured"  # TRL's code path runs it unchanged (our trainer subclasses TRL's and calls it)
OURS = "honoured (ours)"  # our code replaces TRL's for it, with TRL's meaning
REFUSED = "refused"  # a non-default value stops the config, saying why
NOT_APPLICABLE = "not applicable"  # TRL reads it only in a setting that this run is not in (as in TRL)

_GENERATION = "generation settings of TRL's generate call (the adapter's per-row lambda is set around it)"
_VLLM = "read by TRL only with use_vllm (vLLM generation); TRL ignores it otherwise, and so do we"
_LOSS = "TRL's GRPO loss (`_compute_loss`), which ours calls for every batch (with each row's lambda set)"
_LOGGING = "TRL's completion logging"
_ENTROPY = "TRL's entropy bonus / adaptive entropy in its loss"

GRPO_FIELDS: dict[str, tuple[str, str]] = {
    "model_init_kwargs": (OURS, "passed to from_pretrained by the recipes (load_policy), as TRL does for a model name"),
    "trust_remote_code": (OURS, "passed to from_pretrained by the recipes; off unless set"),
    "router_aux_loss_coef": (HONOURED, "TRL adds the router loss of mixture-of-experts models"),
    "disable_dropout": (HONOURED, "TRL disables dropout in the policy"),
    "cast_lm_head_to_fp32": (HONOURED, "TRL casts the LM head"),
    "num_generations": (OURS, "group size G: our advantages normalize within each group of G"),
    "num_generations_eval": (HONOURED, "TRL's evaluation loop (the recipes evaluate with their own held-out pass)"),
    "max_completion_length": (HONOURED, _GENERATION),
    "ds3_gather_for_generation": (HONOURED, "TRL gathers ZeRO-3 weights for generation"),
    "shuffle_dataset": (HONOURED, "TRL's sampler"),
    "pad_to_multiple_of": (HONOURED, "TRL's padding"),
    "generation_batch_size": (HONOURED, "TRL's generation batching (each row keeps its weights)"),
    "steps_per_generation": (HONOURED, "TRL's generation batching (each row keeps its weights)"),
    "temperature": (HONOURED, _GENERATION + "; also the log-prob temperature in TRL's scoring"),
    "top_p": (HONOURED, _GENERATION),
    "top_k": (HONOURED, _GENERATION),
    "min_p": (HONOURED, _GENERATION),
    "generation_kwargs": (HONOURED, _GENERATION),
    "chat_template_kwargs": (HONOURED, "TRL's chat template call"),
    "repetition_penalty": (HONOURED, _GENERATION),
    "cache_implementation": (HONOURED, _GENERATION),
    "use_vllm": (HONOURED, "TRL's vLLM generation; with a preference adapter, colocated, on the preference grid "
                           "(each row is served its grid point's LoRA: alignment.trainers.vllm_grid), and refused "
                           "there without preference_grid"),
    "vllm_mode": (HONOURED, "TRL's; with a preference adapter 'colocate' only (server mode refused: TRL's "
                            "vllm-serve takes no LoRA from the trainer)"),
    "vllm_model_impl": (NOT_APPLICABLE, _VLLM),
    "vllm_enable_sleep_mode": (HONOURED, _VLLM + "; refused with a preference adapter (the config says why)"),
    "vllm_structured_outputs_regex": (NOT_APPLICABLE, _VLLM),
    "vllm_server_base_url": (NOT_APPLICABLE, _VLLM),
    "vllm_server_host": (NOT_APPLICABLE, _VLLM),
    "vllm_server_port": (NOT_APPLICABLE, _VLLM),
    "vllm_server_timeout": (NOT_APPLICABLE, _VLLM),
    "vllm_group_port": (NOT_APPLICABLE, _VLLM),
    "vllm_gpu_memory_utilization": (NOT_APPLICABLE, _VLLM),
    "vllm_max_model_length": (NOT_APPLICABLE, _VLLM),
    "vllm_tensor_parallel_size": (HONOURED, _VLLM + "; refused with a preference adapter (the config says why)"),
    "vllm_importance_sampling_correction": (NOT_APPLICABLE, _VLLM),
    "vllm_importance_sampling_mode": (NOT_APPLICABLE, _VLLM),
    "vllm_importance_sampling_clip_max": (NOT_APPLICABLE, _VLLM),
    "vllm_importance_sampling_clip_min": (NOT_APPLICABLE, _VLLM),
    "vllm_importance_sampling_cap": (NOT_APPLICABLE, _VLLM),
    "beta": (HONOURED, "KL to the reference in " + _LOSS + " (with the adapter: the base, adapter disabled)"),
    "num_iterations": (HONOURED, "TRL reuses each generation batch; each row's weights travel with it"),
    "epsilon": (HONOURED, _LOSS),
    "delta": (HONOURED, _LOSS),
    "epsilon_high": (HONOURED, _LOSS),
    "sapo_temperature_neg": (HONOURED, _LOSS + " (loss_type sapo)"),
    "sapo_temperature_pos": (HONOURED, _LOSS + " (loss_type sapo)"),
    "vespo_k_pos": (HONOURED, _LOSS + " (loss_type vespo)"),
    "vespo_lambda_pos": (HONOURED, _LOSS + " (loss_type vespo)"),
    "vespo_k_neg": (HONOURED, _LOSS + " (loss_type vespo)"),
    "vespo_lambda_neg": (HONOURED, _LOSS + " (loss_type vespo)"),
    "importance_sampling_level": (HONOURED, _LOSS),
    "reward_weights": (REFUSED, "the weights over the objectives are preference_weights (or sampled / inferred per "
                                "prompt); TRL's per-function weights would be overridden by them"),
    "multi_objective_aggregation": (OURS, "our advantage estimator: TRL's two aggregations with TRL's meaning, plus "
                                          "rdpo and variance_weighted; with pama and lagrangian, which normalize "
                                          "each objective themselves, a warning, and the record leaves it out"),
    "scale_rewards": (OURS, "our advantage estimator, with TRL's meaning (tests/test_peer_equivalence.py)"),
    "loss_type": (HONOURED, _LOSS),
    "mask_truncated_completions": (HONOURED, _LOSS),
    "sync_ref_model": (HONOURED, "TRL's reference sync (TRL refuses it with PEFT, the preference adapter included)"),
    "ref_model_mixup_alpha": (HONOURED, "TRL's reference sync"),
    "ref_model_sync_steps": (HONOURED, "TRL's reference sync"),
    "top_entropy_quantile": (HONOURED, _LOSS),
    "entropy_coef": (HONOURED, _ENTROPY),
    "use_adaptive_entropy": (HONOURED, _ENTROPY),
    "entropy_coef_min": (HONOURED, _ENTROPY),
    "entropy_coef_max": (HONOURED, _ENTROPY),
    "entropy_coef_delta": (HONOURED, _ENTROPY),
    "entropy_target": (HONOURED, _ENTROPY),
    "max_tool_calling_iterations": (NOT_APPLICABLE, "TRL's tool calling, which needs `tools`; the recipes pass none"),
    "off_policy_mask_threshold": (HONOURED, _LOSS),
    "use_bias_correction_kl": (HONOURED, _LOSS),
    "log_completions": (HONOURED, _LOGGING),
    "log_multimodal": (NOT_APPLICABLE, "multimodal prompts; the recipes train on text"),
    "num_completions_to_print": (HONOURED, _LOGGING),
    "log_unique_prompts": (HONOURED, _LOGGING),
    "log_completions_hub_repo": (HONOURED, _LOGGING),
    "use_transformers_continuous_batching": (REFUSED, "with a preference adapter: continuous batching schedules rows "
                                                      "in its own order, and each row's lambda must follow it"),
    "transformers_continuous_batching_config": (HONOURED, "TRL's continuous batching (see above)"),
    "use_transformers_paged": (REFUSED, "with a preference adapter, as continuous batching"),
}

DPO_FIELDS: dict[str, tuple[str, str]] = {
    "model_init_kwargs": (OURS, "passed to from_pretrained by the recipe (load_policy), as TRL does for a model name"),
    "trust_remote_code": (OURS, "passed to from_pretrained by the recipe; off unless set"),
    "router_aux_loss_coef": (HONOURED, "TRL adds the router loss of mixture-of-experts models"),
    "disable_dropout": (HONOURED, "TRL disables dropout in the policy and reference"),
    "dataset_num_proc": (HONOURED, "TRL's tokenization"),
    "max_length": (HONOURED, "TRL's tokenization and our list/group collator"),
    "truncation_mode": (HONOURED, "TRL's tokenization and our list/group collator"),
    "padding_free": (HONOURED, "TRL's collator (pairs)"),
    "pad_to_multiple_of": (HONOURED, "TRL's collator and ours"),
    "precompute_ref_log_probs": (HONOURED, "TRL's reference precompute (refused for list and group losses, whose "
                                           "rows TRL's precompute cannot read)"),
    "precompute_ref_batch_size": (HONOURED, "TRL's reference precompute"),
    "loss_type": (REFUSED, "the loss is `loss` (a component of alignment.trainers.dpo_losses): `--loss_type ipo` "
                           "stops and names `--loss ipo`"),
    "loss_weights": (REFUSED, "weights of TRL's loss mixture; the loss is `loss`"),
    "ld_alpha": (REFUSED, "a TRL loss option; the loss is `loss`"),
    "f_divergence_type": (REFUSED, "a TRL loss option; the loss is `loss`"),
    "f_alpha_divergence_coef": (REFUSED, "a TRL loss option; the loss is `loss`"),
    "label_smoothing": (REFUSED, "a TRL loss option (cDPO); none of the losses smooths labels"),
    "beta": (OURS, "every loss's temperature, with TRL's meaning"),
    "use_weighting": (REFUSED, "a TRL loss option (WPO); the loss is `loss`"),
    "discopop_tau": (REFUSED, "a TRL loss option (loss_type discopop); the loss is `loss`"),
    "activation_offloading": (HONOURED, "TRL's activation offloading"),
    "sync_ref_model": (HONOURED, "TRL's reference sync (TRL refuses it with PEFT, the preference adapter included)"),
    "ref_model_mixup_alpha": (HONOURED, "TRL's reference sync"),
    "ref_model_sync_steps": (HONOURED, "TRL's reference sync"),
    "pad_token": (HONOURED, "TRL's padding"),
}

MODEL_FIELDS: dict[str, tuple[str, str]] = {
    "model_name_or_path": (OURS, "load_policy (a hub id, a folder, or a packaged name)"),
    "model_revision": (OURS, "load_policy"),
    "dtype": (OURS, "load_policy"),
    "attn_implementation": (OURS, "load_policy"),
    "use_peft": (OURS, "TRL's get_peft_config; refused with the preference adapter (the adapter is the peft model)"),
    "lora_r": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "lora_alpha": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "lora_dropout": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "lora_target_modules": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "lora_target_parameters": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "lora_modules_to_save": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "lora_task_type": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "use_rslora": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "use_dora": (HONOURED, "TRL's get_peft_config (use_peft)"),
    "load_in_8bit": (OURS, "QLoRA through bitsandbytes with use_peft on a CUDA GPU; refused elsewhere, saying why"),
    "load_in_4bit": (OURS, "QLoRA through bitsandbytes with use_peft on a CUDA GPU; refused elsewhere, saying why"),
    "bnb_4bit_quant_type": (HONOURED, "TRL's get_quantization_config (load_in_4bit)"),
    "use_bnb_nested_quant": (HONOURED, "TRL's get_quantization_config (load_in_4bit)"),
    "bnb_4bit_quant_storage": (HONOURED, "TRL's get_quantization_config (load_in_4bit)"),
}
