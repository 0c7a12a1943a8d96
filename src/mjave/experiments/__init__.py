"""Experiments: the demo, gate visualisation (more arrive with the experiments issue)."""
