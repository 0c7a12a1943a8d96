"""Model folders and training checkpoints as safetensors + JSON: nothing is ever unpickled.

A model folder holds `config.json` (the RunConfig), `schema.json`, `model.safetensors`,
`metrics.json` and `versions.json`. A training checkpoint (`<output_dir>/checkpoint/`) adds the
optimizer state, the RNG states and the trainer's progress, written to a temporary folder and
swapped in with one rename so a kill never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mjave import __version__
from mjave.config import from_dict, to_dict
from mjave.data.schema import AttributeSchema
from mjave.training.config import RunConfig


def versions() -> dict[str, str]:
    import transformers
    return {"mjave": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (is {path.parent} an mjave model folder?)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_model(folder: str | Path, model: torch.nn.Module, config: RunConfig,
               schema: AttributeSchema, metrics: dict | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(model.state_dict()), str(folder / "model.safetensors"))
    _write_json(folder / "config.json", to_dict(config))
    schema.save(folder / "schema.json")
    _write_json(folder / "versions.json", versions())
    if metrics is not None:
        _write_json(folder / "metrics.json", metrics)
    return folder


def load_model_files(folder: str | Path) -> tuple[RunConfig, AttributeSchema, dict[str, torch.Tensor]]:
    """Config, schema and weights of a model folder (the caller builds the modules)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    config = from_dict(RunConfig, _read_json(folder / "config.json"))
    schema = AttributeSchema.load(folder / "schema.json")
    weights_path = folder / "model.safetensors"
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path}: missing (is {folder} an mjave model folder?)")
    return config, schema, load_file(str(weights_path))


# ---- training checkpoints -------------------------------------------------------------------

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
    final = output_dir / "checkpoint"
    tmp = output_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_contiguous(model.state_dict()), str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / "rng.safetensors"))
    _write_json(tmp / "optimizer.json", opt_meta)
    _write_json(tmp / "trainer_state.json", trainer_state)
    old = output_dir / "checkpoint.old"
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
    folder = output_dir / "checkpoint"
    if not (folder / "trainer_state.json").exists():
        old = output_dir / "checkpoint.old"  # a kill between the two renames
        if (old / "trainer_state.json").exists():
            folder = old
        else:
            return None
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    optimizer.load_state_dict(_optimizer_from_flat(load_file(str(folder / "optimizer.safetensors")),
                                                    _read_json(folder / "optimizer.json")))
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        states = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    return _read_json(folder / "trainer_state.json")
