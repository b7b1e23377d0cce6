"""What "multi-objective" means here: named objectives and their reward sources, the reward vector they fill,
preference weights, the scalarizations that turn a vector into one reward, and the conditioning that shows the
weights to a policy. Pure functions of torch tensors; nothing here loads a model."""
