"""Training: the resumable trainer, resume checkpoints (safetensors + JSON), DDP and resident batches."""
