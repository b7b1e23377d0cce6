"""PRO's Preference Orchestrator: a small model that maps a prompt to preference weights on the simplex.

What a preferred answer to a prompt scored on each objective reveals the balance that the prompt calls for: a
request for dangerous instructions is answered well by a harmless reply, a request for a recipe by a helpful one.
The orchestrator learns that mapping from any pairwise or rated data the multi-head reward model can score:

    target(prompt) = distribution over the K heads of the RM's normalized scores of the PREFERRED reply
                     (pairwise data: the chosen reply; rated data: the best-rated reply to the prompt)
                     ('softmax': softmax(z / T); 'clip': max(z, 0) normalized, uniform when every z <= 0)
    weights(prompt) = softmax(head(encoder(prompt)))          trained by KL(target || weights)

The encoder is frozen (default: the packaged all-MiniLM-L6-v2), so its features are computed once and only the
K-way linear head is trained: seconds on a CPU.

Checkpoint format: a plain `AutoModelForSequenceClassification` (encoder + `classifier` = our head), `num_labels = K`,
`id2label` = objective names, plus `config.preference_orchestrator = {"pooling", "max_length", ...}`.
- pooling 'pooler' (BERT's own sequence-classification path: [CLS] -> pooler dense + tanh -> classifier): no custom
  code at all, `softmax(AutoModelForSequenceClassification.from_pretrained(path)(**tokens).logits)` ARE the weights;
- pooling 'mean' (masked mean of the last hidden states, what sentence-transformers trained MiniLM for): the same
  checkpoint, but the logits must be taken through `PreferenceOrchestrator.from_pretrained(path).weights(prompts)`,
  because transformers' BERT classifier reads the [CLS] pooler, not a mean.
Prompts (strings, chat message lists, or HH dialogues) are rendered as `reward_models.chat_format` renders them for
the reward model: the plain `Human: ...` format for an encoder without a chat template.

One module per job: `targets` (target weights, KL), `fitting` (the head, its L2 penalty by cross-validation),
`rows` (prompts and preferred replies of pairwise or rated data), `model` (the orchestrator, its checkpoint and
checks), `metrics` (held-out quality); `errors` holds `OrchestratorError`. Every public name is importable from
`alignment.orchestrator`.
"""

from alignment.orchestrator.errors import OrchestratorError
from alignment.orchestrator.fitting import fit_head
from alignment.orchestrator.metrics import evaluate_weights
from alignment.orchestrator.model import (
    CONFIG_KEY,
    POOLINGS,
    PreferenceOrchestrator,
    attach_prompt_weights,
    check_orchestrator_objectives,
    weights_in_order,
)
from alignment.orchestrator.rows import load_prompt_targets, preferred_replies, prompt_and_chosen, rated_reply
from alignment.orchestrator.targets import TARGETS, kl_to_target, target_weights

__all__ = [
    "CONFIG_KEY", "POOLINGS", "TARGETS", "OrchestratorError", "PreferenceOrchestrator", "attach_prompt_weights",
    "check_orchestrator_objectives", "evaluate_weights", "fit_head", "kl_to_target", "load_prompt_targets",
    "preferred_replies", "prompt_and_chosen", "rated_reply", "target_weights", "weights_in_order",
]
