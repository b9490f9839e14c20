"""From a checkpoint to a Hugging Face folder: reading checkpoints, the model card, where an export may write."""
