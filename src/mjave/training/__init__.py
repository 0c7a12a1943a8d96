"""Training: run configs, batches, checkpoints (safetensors + JSON) and the resumable trainer."""
