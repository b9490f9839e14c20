"""Training: the LightningModule, model building, loss, attention, LoRA, schedule, clipping, RNG state and the sharding strategies."""
