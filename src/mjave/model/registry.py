"""Architectures by name, so baselines train, save and predict through the same trainer.

Every architecture is an `nn.Module` built from a `ModelConfig` whose forward takes the arguments
of `MJAVE.forward` (h, mask, tag_mask, v_global, v, attr_labels, tag_labels) and returns an
`MJAVEOutput` (attribute logits, tag logits, losses when labels are given; gates may be None).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from mjave.config import ModelConfig

_REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {}


def register(name: str) -> Callable:
    """Class decorator: `@register("joint-bert") class JointBERT(nn.Module): ...`."""
    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls
    return wrap


def build_model(cfg: ModelConfig) -> nn.Module:
    _load_builtin()
    try:
        factory = _REGISTRY[cfg.architecture]
    except KeyError:
        raise ValueError(f"unknown model.architecture {cfg.architecture!r}; known: "
                         f"{', '.join(sorted(_REGISTRY))}") from None
    if cfg.crf and not getattr(factory, "supports_crf", False):
        crf = sorted(n for n, f in _REGISTRY.items() if getattr(f, "supports_crf", False))
        raise ValueError(f"model.decoding='crf' (a CRF tagger) is not built for "
                         f"model.architecture {cfg.architecture!r}; it is for: {', '.join(crf)}")
    if cfg.value_knowledge and not getattr(factory, "supports_value_knowledge", False):
        known = sorted(n for n, f in _REGISTRY.items()
                       if getattr(f, "supports_value_knowledge", False))
        raise ValueError(f"model.value_knowledge is not built for model.architecture "
                         f"{cfg.architecture!r}; it is for: {', '.join(known)}")
    if cfg.implicit_values and not getattr(factory, "supports_implicit_values", False):
        raise ValueError(f"model.implicit_values is not built for model.architecture "
                         f"{cfg.architecture!r}; it is for: mjave")
    return factory(cfg)


def architecture_uses_image(name: str) -> bool:
    """False for text-only architectures (class attribute `uses_image = False`), so no image
    features are extracted or passed for them whatever `model.use_image` says."""
    _load_builtin()
    return bool(getattr(_REGISTRY.get(name), "uses_image", True))


def architectures() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from mjave.model import mjave  # noqa: F401  (registers "mjave")
    try:
        import mjave.model.baselines  # noqa: F401  (registers the baselines, when present)
    except ModuleNotFoundError as e:
        if e.name != "mjave.model.baselines":
            raise
