"""The resumable training checkpoint as safetensors + JSON: nothing is ever unpickled.

`<output_dir>/checkpoint/` holds the model weights, the optimizer state, the RNG states and the
trainer's progress, written to a temporary folder and swapped in with one rename so a kill never
leaves a half-written checkpoint. The model folder itself (what predicts) is `mjave.pretrained`'s.
A finished run removes the checkpoint (`remove_checkpoint`) unless `train.keep_checkpoint`: it is
about three times the model and only a run that has not finished needs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from mjave.pretrained import read_json, save_tensors, write_json

NAME = "checkpoint"
"""The checkpoint's folder inside output_dir (`.tmp` and `.old` beside it while it is swapped)."""


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(output_dir: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, trainer_state: dict) -> Path:
    """Atomically replace `<output_dir>/checkpoint` with the current training state."""
    output_dir = Path(output_dir)
    final = output_dir / NAME
    tmp = output_dir / f"{NAME}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(tmp / "model.safetensors", model.state_dict())
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_tensors(tmp / "rng.safetensors", rng)
    write_json(tmp / "optimizer.json", opt_meta)
    write_json(tmp / "trainer_state.json", trainer_state)
    old = output_dir / f"{NAME}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(output_dir: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore model, optimizer and RNG from `<output_dir>/checkpoint`; None when there is none."""
    output_dir = Path(output_dir)
    folder = output_dir / NAME
    if not (folder / "trainer_state.json").exists():
        old = output_dir / f"{NAME}.old"  # a kill between the two renames
        if (old / "trainer_state.json").exists():
            folder = old
        else:
            return None
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    optimizer.load_state_dict(_optimizer_from_flat(load_file(str(folder / "optimizer.safetensors")),
                                                    read_json(folder / "optimizer.json")))
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    return read_json(folder / "trainer_state.json")


def has_checkpoint(output_dir: str | Path) -> bool:
    """Whether `load_checkpoint` would find a state to resume from."""
    output_dir = Path(output_dir)
    return any((output_dir / name / "trainer_state.json").exists()
               for name in (NAME, f"{NAME}.old"))


def remove_checkpoint(output_dir: str | Path) -> None:
    """Delete the checkpoint (and any half-swapped copy) once the run has finished."""
    for name in (NAME, f"{NAME}.tmp", f"{NAME}.old"):
        shutil.rmtree(Path(output_dir) / name, ignore_errors=True)


__all__ = ["NAME", "has_checkpoint", "load_checkpoint", "remove_checkpoint", "save_checkpoint"]
