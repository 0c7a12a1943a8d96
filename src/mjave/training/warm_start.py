"""Warm start (`train.init_from`): a new run's network starts from a trained model's weights.

The loop it serves: a round of reviews (`mjave review export --labeled`) becomes training data,
and the next model starts from the last one instead of from random weights. It is not a resume:
epochs, optimizer state and learning-rate schedule start fresh; only `model.safetensors` is read
(never a pickle). A run that resumes its own checkpoint does not apply it again (`set_up`).

- Architecture and encoders must be the same (`model.architecture`, the sizes, whether images
  are read, the text encoder by content hash where both are known, else by name, the image
  encoder); otherwise a ConfigError names what differs. The networks must also have the same
  tensors by name (another ablation switch or `encoder.train_layers` is refused the same way).
- Same attributes (the schema's list, in order): every tensor is loaded.
- Other attributes (an extra one, or the subset a round of reviews covers): every tensor whose
  name and shape match is loaded. A tensor whose shape depends on the attribute list (the
  attribute classifier, the tag layers, CRF transitions: dimensions of L attributes or 1 + 2L
  tags, `AttributeSchema`'s fixed tag layout) is loaded by attribute: the rows (and columns) of
  the attributes and tags both schemas have are copied, a new attribute's keep their fresh
  initial weights. That holds with as many attributes as before under other names or in
  another order: a head tensor with a dimension of the attribute or tag count is always mapped
  by name (a hidden size that happens to equal that count would be mapped too). The log says
  how many tensors were loaded whole, by attribute, and not at all (with their names).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mjave.config import ConfigError, RunConfig
from mjave.data.schema import AttributeSchema
from mjave.installed_encoder import encoder_record
from mjave.model_folder import ModelFolder

log = logging.getLogger(__name__)

MAX_NAMED = 10
"""Tensor names listed in a message before "(+N more)"."""


@dataclass
class WarmStart:
    """What `warm_start` loaded into the network."""

    source: Path
    same_schema: bool
    loaded: list[str]       # whole
    by_attribute: list[str]  # the rows of the attributes both schemas have
    not_loaded: list[str]   # left at their initial weights


def named(names: list[str]) -> str:
    more = len(names) - MAX_NAMED
    return ", ".join(names[:MAX_NAMED]) + (f" (+{more} more)" if more > 0 else "")


def architecture_mismatches(source: ModelFolder, config: RunConfig) -> list[str]:
    """What differs between the trained folder and this run's config (its model sizes filled in
    by `build_network`), one phrase each; empty when the network is the same."""
    was, now = source.config, config
    problems = []
    for field in ("architecture", "use_image", "text_dim", "attention_size"):
        a, b = getattr(was.model, field), getattr(now.model, field)
        if a != b:
            problems.append(f"model.{field} is {a!r} there, {b!r} here")
    if was.model.use_image and now.model.use_image:
        for field, a, b in (("model.image_dim", was.model.image_dim, now.model.image_dim),
                            ("encoder.image_encoder", was.encoder.image_encoder,
                             now.encoder.image_encoder),
                            ("encoder.image_colour_bins", was.encoder.image_colour_bins,
                             now.encoder.image_colour_bins)):
            if a != b:
                problems.append(f"{field} is {a!r} there, {b!r} here")
    if was.encoder.text_kind != now.encoder.text_kind:
        problems.append(f"encoder.text_kind is {was.encoder.text_kind!r} there, "
                        f"{now.encoder.text_kind!r} here")
    elif now.encoder.text_kind != "bilstm":
        old_hash = source.encoder_record.get("content_hash")
        new_hash = encoder_record(now.encoder).get("content_hash") if old_hash else None
        same = (old_hash == new_hash if old_hash and new_hash
                else was.encoder.text_encoder == now.encoder.text_encoder)
        if not same:
            problems.append(f"the text encoder is {was.encoder.text_encoder!r}"
                            f"{f' (content hash {old_hash})' if old_hash else ''} there, "
                            f"{now.encoder.text_encoder!r}"
                            f"{f' (content hash {new_hash})' if new_hash else ''} here")
    return problems


def shared_positions(old: tuple[str, ...], new: tuple[str, ...]
                     ) -> tuple[list[int], list[int]]:
    """(positions in `new`, positions in `old`) of the names both lists have."""
    where = {name: i for i, name in enumerate(old)}
    pairs = [(i, where[name]) for i, name in enumerate(new) if name in where]
    return [i for i, _ in pairs], [j for _, j in pairs]


def by_attribute(old: torch.Tensor, new: torch.Tensor, was: AttributeSchema,
                 now: AttributeSchema) -> torch.Tensor | None:
    """`new` with the entries of the attributes (and their tags) both schemas have copied from
    `old`; None when a dimension that differs is neither attributes nor tags."""
    maps = []
    for a, b in zip(old.shape, new.shape):
        if (a, b) == (was.num_attributes, now.num_attributes):
            maps.append(shared_positions(tuple(was.attributes), tuple(now.attributes)))
        elif (a, b) == (was.num_tags, now.num_tags):
            maps.append(shared_positions(tuple(was.tags), tuple(now.tags)))
        elif a == b:
            maps.append(None)
        else:
            return None
    part, index = old, []
    for d, m in enumerate(maps):
        new_pos, old_pos = m if m is not None else (range(new.shape[d]), range(old.shape[d]))
        part = part.index_select(d, torch.tensor(list(old_pos), dtype=torch.long))
        index.append(torch.tensor(list(new_pos), dtype=torch.long))
    out = new.detach().clone()
    out[torch.meshgrid(*index, indexing="ij")] = part.to(out.dtype)
    return out


def attribute_sized(name: str, shape: tuple[int, ...], schema: AttributeSchema) -> bool:
    """Whether a tensor of the head has a dimension of the schema's attributes or tags: its
    entries belong to attributes, so another schema maps them by name, never by position
    (the text encoder's tensors never do)."""
    return name.startswith("head.") and any(
        d in (schema.num_attributes, schema.num_tags) for d in shape)


def warm_start(net: torch.nn.Module, config: RunConfig, schema: AttributeSchema,
               folder: str | Path) -> WarmStart:
    """Load the weights of the trained model `folder` into `net` (built for `config` and
    `schema`) as the module docstring says; ConfigError when the networks differ."""
    source = ModelFolder.read(folder, expect="torch")
    what = f"train.init_from: {source.path} cannot start this run"
    problems = architecture_mismatches(source, config)
    if problems:
        raise ConfigError(f"{what}: {'; '.join(problems)}")
    weights = source.load_weights()
    target = net.state_dict()
    only_there = sorted(weights.keys() - target.keys())
    only_here = sorted(target.keys() - weights.keys())
    if only_there or only_here:
        raise ConfigError(f"{what}: the networks differ (another model switch or "
                          f"encoder.train_layers?); tensors only there: "
                          f"{named(only_there) or 'none'}; only here: {named(only_here) or 'none'}")
    same_schema = tuple(source.schema.attributes) == tuple(schema.attributes)
    differ = [k for k in target if tuple(weights[k].shape) != tuple(target[k].shape)]
    if not same_schema:   # same shapes, other attributes (or another order): map by name too
        differ += [k for k in target if k not in differ
                   and attribute_sized(k, weights[k].shape, source.schema)]
    if same_schema and differ:
        raise ConfigError(f"{what}: same attributes, but tensors of other shapes: "
                          f"{named(differ)}")
    state = {k: weights[k] for k in target if k not in differ}
    loaded, remapped, not_loaded = list(state), [], []
    for k in differ:
        mapped = by_attribute(weights[k], target[k], source.schema, schema)
        if mapped is None:
            not_loaded.append(k)
        else:
            state[k] = mapped
            remapped.append(k)
    net.load_state_dict(state, strict=False)
    if same_schema:
        log.info("warm start from %s: all %d tensors loaded", source.path, len(loaded))
    else:
        common = [a for a in schema.attributes if a in set(source.schema.attributes)]
        log.warning("warm start from %s: its attributes (%s) are not this run's (%s): of %d "
                    "tensors, %d loaded whole, %d by attribute (%s: %s); %d not loaded "
                    "(initial weights kept)%s", source.path,
                    ", ".join(source.schema.attributes), ", ".join(schema.attributes),
                    len(target), len(loaded), len(remapped), ", ".join(common) or "none shared",
                    named(remapped), len(not_loaded),
                    f": {named(not_loaded)}" if not_loaded else "")
    return WarmStart(source.path, same_schema, loaded, remapped, not_loaded)


__all__ = ["WarmStart", "architecture_mismatches", "attribute_sized", "by_attribute", "shared_positions",
           "warm_start"]
