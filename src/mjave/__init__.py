"""mjave: multimodal joint attribute prediction and value extraction (M-JAVE, Zhu et al. 2020)."""

__version__ = "0.1.0"
