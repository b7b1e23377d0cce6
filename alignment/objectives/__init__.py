"""What "multi-objective" means here: named objectives and their reward sources, the reward vector they fill,
preference weights, the scalarizations that turn a vector into one reward, the advantage estimators GRPO picks from,
and the conditioning that shows the weights to a policy. Torch only; nothing here loads a model."""
