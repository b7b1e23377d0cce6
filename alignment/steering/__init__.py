"""Inference-time steering: one API to generate under user preference weights, whatever kind of checkpoint it is.

    steerable = load_steerable("outputs/grpo-steerable")                 # method read from objectives.json
    steerable.generate(["How do I bake bread?"], "conciseness=0.8,sentiment=0.2", max_new_tokens=48)

Methods (`method=`; `METHODS` maps each name to its class, which loads itself with `from_checkpoint`):
- `prompt`  preference-conditioned checkpoint (record `steering: prompt`): the weights are written into the prompt in
            the trained format (`alignment.objectives.conditioning`).
- `adapter` preference-adapter checkpoint (record `steering: adapter`, `adapter.py`,
            `alignment.models.preference_adapter`): the weights set lambda of the adapter, one vector per request
            (and are written into the prompt too if it was trained so).
- `heads`   multi-head checkpoint (record `steering: heads`): the LM heads mixed with the weights
            (`alignment.models.multi_head`).
- `mod`     K policies (or K LoRA adapters of one base) sharing a tokenizer, one per objective: every next token is
            sampled from softmax(sum_k w_k log pi_k) (MOD).
- `soup`    K full checkpoints or K LoRA adapters, one per objective: generate with theta = sum_k w_k theta_k
            (rewarded soups; adapters combined with peft's `add_weighted_adapter(combination_type="cat")`, which sums
            the weighted low-rank updates, i.e. exactly the interpolation of the merged models).
- `rmod`    one policy plus a reward source: blockwise robust decoding (`alignment.steering.rmod`); `best_of_k` is its
            baseline with the same loop.
`auto` (`AUTO`) picks `prompt` / `adapter` / `heads` from a single checkpoint's record and `mod` for several
checkpoints. Shared checkpoint reading (records, NAME=PATH, one tokenizer, peft adapters): `checkpoints.py`.

Every method takes the same weights (`helpful=0.7,harmless=0.3`, a list, a mapping), validated by
`alignment.objectives.weights.parse_preference_weights` against the objective names, and the same decoding arguments.
String prompts become a user message when the tokenizer has a chat template; chat message lists are used as is.
"""

from alignment.steering.adapter import PreferenceAdapterSteerable
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.heads import HeadMixing
from alignment.steering.mixture import LogProbMixture
from alignment.steering.prompt import PromptConditioned
from alignment.steering.registry import AUTO, METHODS, load_steerable, recorded_method
from alignment.steering.rmod import BestOfK, RobustDecoding
from alignment.steering.soup import AdapterSoup, RewardedSoup, Soup

__all__ = ["AUTO", "METHODS", "AdapterSoup", "BestOfK", "HeadMixing", "LogProbMixture", "PreferenceAdapterSteerable",
           "PromptConditioned", "RewardedSoup", "RobustDecoding", "Soup", "Steerable", "SteeringError",
           "load_steerable", "recorded_method"]
