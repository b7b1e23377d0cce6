"""The multi-head reward model: K named heads scored in one forward pass, saved as a plain
`AutoModelForSequenceClassification` checkpoint. Modules: `modeling` (build, pool, save), `losses` (pairwise and
rated heads), `data` (mixtures of pairwise and rated sources), `trainer`, `scoring` (the `rm:HEAD` reward source),
`verifiable` (rule-based rewards).

Importing the package registers the verifiable rewards (`conciseness`, `sentiment`, ...) as objective sources
with `alignment.objectives.sources.register_reward`. This package builds on the `alignment` core (objectives, data,
models, hub); the layers above it (trainers, steering, recipes) import it, never the other way round.
"""

from reward_models import verifiable  # noqa: F401  (registers the built-in rewards)
