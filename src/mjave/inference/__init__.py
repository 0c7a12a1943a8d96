"""Inference: the one decoder from model outputs to scored character spans."""
