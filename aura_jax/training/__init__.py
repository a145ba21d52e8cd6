"""Training: the jitted step and loop (`train`), the loss, sharding rules, orbax checkpoints,
metrics, multi-host start-up and the checks made before anything expensive (`preflight`)."""
