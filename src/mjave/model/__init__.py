"""The M-JAVE model (paper section 2) and its ablation switches."""

from mjave.config import ABLATIONS, ModelConfig
from mjave.model.mjave import MJAVE, MJAVEOutput

__all__ = ["ABLATIONS", "MJAVE", "MJAVEOutput", "ModelConfig"]
