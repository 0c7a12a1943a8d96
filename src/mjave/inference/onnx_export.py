"""`mjave export`: a model folder as ONNX graphs that onnxruntime runs on CPU.

The text graph computes what the Extractor's torch forward computes from token ids (and image
features): for a model over cached token states the frozen encoder runs in the same graph, its
states rounded to float16 as the feature store rounds them; fine-tuned and BiLSTM encoders are
part of the network already. An image model gets its image encoder as a second graph (pixels ->
global and regional features). A CRF tagger's (`model.decoding=crf`) transition scores are
not part of any graph: export.json keeps them (`crf`) and the one decoder runs its Viterbi on
the host, as for the torch model. The exported folder keeps config.json (sizes filled in),
schema.json and versions.json, and adds `export.json` (opset, int8, every graph's input and
output names and shapes) and the tokenizer files, so it is one thing to copy; it needs neither
the torch weights nor the encoder folder. `int8`: onnxruntime's dynamic quantisation of the
MatMul weights (activations are quantised per batch at run time), checked against the fp32 graph
on this CPU before it is written (`quantize_checked`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from mjave import pretrained
from mjave.config import to_dict
from mjave.data.outputs import same_file
from mjave.model_folder import ModelFolder

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
TEXT_INPUTS = ("input_ids", "attention_mask", "tag_mask")
IMAGE_INPUTS = ("v_global", "v")
TEXT_OUTPUTS = ("attr_logits", "tag_logits")
IMAGE_GRAPH_INPUTS = ("pixels",)
IMAGE_GRAPH_OUTPUTS = ("global", "regions")
INSTALL_HINT = "pip install 'mjave[onnx]'"


def require_onnx() -> None:
    """ImportError naming the extra when onnx or onnxruntime is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ImportError(f"ONNX export and inference need {e.name!r}: {INSTALL_HINT}") from None


class TextGraph(nn.Module):
    """The Extractor's forward as one module of tensors: token ids, masks (and image features)
    in, attribute and tag logits out."""

    def __init__(self, net: nn.Module, frozen_encoder: nn.Module | None = None):
        super().__init__()
        self.net = net
        self.frozen_encoder = frozen_encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                tag_mask: torch.Tensor, v_global: torch.Tensor | None = None,
                v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = attention_mask.bool()
        batch = {"input_ids": input_ids, "mask": mask, "tag_mask": tag_mask.bool()}
        if self.frozen_encoder is not None:
            h = self.frozen_encoder(input_ids, attention_mask)
            # float16 as the feature store keeps them, zero on padding as collate pads them
            batch["h"] = h.half().float() * mask.unsqueeze(-1).to(torch.float32)
        if v_global is not None:
            batch["v_global"], batch["v"] = v_global, v
        out = self.net(batch, with_labels=False)
        return out.attr_logits, out.tag_logits


def sample_text_inputs(vocab_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Two rows of different lengths (one padded), so no size is traced as a constant."""
    ids = torch.randint(5, max(6, min(vocab_size, 1000)), (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    ids[1, 5:] = pad_id
    return {"input_ids": ids, "attention_mask": mask, "tag_mask": mask.clone()}


def export_graph(module: nn.Module, args: tuple, path: Path, input_names: list[str],
                 output_names: list[str], dynamic: dict[str, dict[int, str]], opset: int) -> None:
    """torch.onnx.export with the TorchScript exporter (dynamic batch and sequence axes)."""
    import warnings
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True, dynamo=False)


def graph_signature(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Input and output names, element types and shapes (a string for a dynamic axis) of an ONNX
    file, read from the graph itself."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param or int(d.dim_value) for d in t.shape.dim]
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(
                t.elem_type).name, "shape": shape})
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


ACTIVATIONS = ("Erf", "Gelu", "FastGelu", "BiasGelu", "Tanh")
"""Ops of a transformer FFN's activation (torch exports GELU as Erf, or Tanh for the approximate
form): the MatMul that reads their output stays in fp32 under `--int8`."""


def ffn_output_matmuls(graph: Any, depth: int = 4) -> list[str]:
    """MatMuls fed by an FFN activation (within `depth` nodes back along their data input): the
    FFN's second projection, whose inputs carry the large outliers that int8 activations clip.

    Measured on OA-Mine valid (docs/performance.md): with them in int8, MPNet-base lost 7.4 value
    F1 and MiniLM-L6 kept 97.3% of the fp32 spans; in fp32, MPNet -0.2 and MiniLM 97.9%."""
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        frontier = [node.input[0]]
        for _ in range(depth):
            parents = [producer[t] for t in frontier if t in producer]
            if any(p.op_type in ACTIVATIONS for p in parents):
                found.append(node.name)
                break
            frontier = [t for p in parents for t in p.input]
    return found


INT8_WEIGHTS = ("signed7", "unsigned", "signed")
"""How `--int8` stores MatMul weights (docs/performance.md, 'int8 on different CPUs'):

- `signed7` (default): signed, 7 bits (|w| <= 64). The same answers on every x86 CPU and the fast
  u8 x s8 kernels on all of them.
- `unsigned`: 8 bits, u8 x u8. The same answers on every x86 CPU, but no faster than fp32 on a
  VNNI CPU (its kernels do not use VNNI).
- `signed`: 8 bits, the graph exported before issue #30. Fastest on VNNI CPUs and wrong on AVX2
  CPUs without VNNI (pair sums saturate): only for a fleet known to have VNNI."""


def quantize_int8(path: Path, weights: str = "signed7") -> None:
    """Replace `path` by its dynamic int8 quantisation: MatMul weights per output channel as
    `weights` says (`INT8_WEIGHTS`), except the FFN output projections (`ffn_output_matmuls`).

    Why 7 bits by default: activations are quantised to u8 at run time, and onnxruntime computes
    u8 x s8 products on AVX2 without VNNI by adding two of them in int16 (`vpmaddubsw`), which
    saturates at 32,767 (an activation near 255 times a weight near 127, twice, is 64,770). With
    8-bit signed weights the test models kept 57-77% of their fp32 spans on such a CPU and 99-100%
    on a VNNI CPU. With |weights| <= 64 a pair is at most 2 x 255 x 64 = 32,640: no CPU can
    saturate, one file gives the same integers everywhere, and the u8 x s8 kernels stay (1.5x
    fp32 on OA-Mine at 2 threads, against 1.0x for unsigned weights), for 0.2 value F1 against
    8 bits (OA-Mine valid; the synthetic catalog: no loss)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if weights not in INT8_WEIGHTS:
        raise ValueError(f"int8 weights must be one of {list(INT8_WEIGHTS)}, not {weights!r}")
    keep = ffn_output_matmuls(onnx.load(str(path), load_external_data=False).graph)
    tmp = path.with_suffix(".fp32.onnx")
    path.replace(tmp)
    try:
        quantize_dynamic(str(tmp), str(path), op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QUInt8 if weights == "unsigned" else QuantType.QInt8,
                         reduce_range=weights == "signed7", per_channel=True,
                         nodes_to_exclude=keep)
    finally:
        tmp.unlink(missing_ok=True)


def export_image_encoder(config: Any, path: Path, opset: int) -> dict[str, Any]:
    """The image encoder as a graph `pixels (B, 3, S, S) -> global (B, D), regions (B, K, D)`;
    returns what preprocessing needs (size, mean, std, resampling) and the graph's sizes."""
    from mjave.encoders.image import configured_image_encoder

    enc = config.encoder
    image = configured_image_encoder(enc).eval()   # the colour histogram too, when it is on
    pixels = torch.zeros(2, 3, enc.image_size, enc.image_size)
    export_graph(image, (pixels,), path, list(IMAGE_GRAPH_INPUTS), list(IMAGE_GRAPH_OUTPUTS),
                 {"pixels": {0: "batch"}, "global": {0: "batch"}, "regions": {0: "batch"}}, opset)
    return {"file": path.name, "name": image.name, "image_size": image.image_size,
            "mean": list(image.mean), "std": list(image.std), "resample": int(image.resample),
            "feature_dim": image.feature_dim, "num_regions": image.num_regions,
            **graph_signature(path)}


def export_model(model_dir: str | Path, out_dir: str | Path, *, int8: bool = False,
                 opset: int = DEFAULT_OPSET, check_texts: str | Path | None = None,
                 min_agreement: float | None = None, force: bool = False,
                 int8_weights: str = "signed7") -> Path:
    """Write the exported folder of `model_dir` into `out_dir` and return it (see the module
    docstring). `out_dir` must not be a torch model folder (it would hold two models).

    `int8`: the fp32 export is written first, then quantised in a staging copy and checked
    against it (`mjave.inference.onnx_check`) on `check_texts` (a file of rows with a text), the
    model's valid split, or built-in texts. Below `min_agreement` span agreement the int8 graph
    is refused (Int8CheckError; `out_dir` keeps the fp32 export) unless `force`, which writes it
    with a warning. The check's figures go into export.json (`int8_check`). `int8_weights`: see
    `INT8_WEIGHTS`."""
    require_onnx()
    import onnx
    import onnxruntime

    src, out = Path(model_dir), Path(out_dir)
    folder = ModelFolder.read(src)
    if folder.kind == "onnx":
        raise ValueError(f"{src} is already an exported ONNX folder; export its torch model "
                         "folder instead")
    if folder.config.model.implicit_values:
        raise ValueError(f"{src} names values without a span (model.implicit_values), which "
                         "the ONNX export does not carry yet; serve its torch folder instead")
    if folder.config.model.value_knowledge:
        raise ValueError(f"{src} reads known values (model.value_knowledge), which the ONNX "
                         "export does not carry yet; serve its torch folder instead")
    if same_file(out, src) or (out / pretrained.WEIGHTS).exists():
        raise ValueError(f"{out} holds a torch model; export into a new folder")
    loaded = pretrained.LoadedModel.from_folder(folder, device="cpu")
    config = loaded.config
    frozen = pretrained.frozen_text_encoder(folder)
    graph = TextGraph(loaded.net, frozen).eval()
    tokenizer = loaded.aligner.tokenizer
    sample = sample_text_inputs(tokenizer.vocab_size, loaded.aligner.pad_id)
    names = list(TEXT_INPUTS)
    dynamic: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in TEXT_INPUTS}
    if loaded.uses_image:
        k = image_regions(config)
        sample["v_global"] = torch.zeros(2, config.model.image_dim)
        sample["v"] = torch.zeros(2, k, config.model.image_dim)
        names += list(IMAGE_INPUTS)
        dynamic.update({"v_global": {0: "batch"}, "v": {0: "batch"}})
    dynamic.update({"attr_logits": {0: "batch"}, "tag_logits": {0: "batch", 1: "sequence"}})

    out.mkdir(parents=True, exist_ok=True)
    for name in (pretrained.GRAPH, pretrained.IMAGE_GRAPH, pretrained.EXPORT):
        (out / name).unlink(missing_ok=True)  # an earlier export here is replaced, not mixed
    text_path = out / pretrained.GRAPH
    export_graph(graph, tuple(sample[n] for n in names), text_path, names, list(TEXT_OUTPUTS),
                 dynamic, opset)
    image_record = None
    if loaded.uses_image:
        image_record = export_image_encoder(config, out / pretrained.IMAGE_GRAPH, opset)
    pretrained.copy_tokenizer(folder.tokenizer_path, out / pretrained.TOKENIZER_DIR)

    pretrained.write_json(out / pretrained.CONFIG, to_dict(config))
    loaded.schema.save(out / pretrained.SCHEMA)
    trained = folder.versions
    if trained:
        pretrained.write_json(out / pretrained.VERSIONS, trained)
    record = {"format": "mjave-onnx", "opset": opset, "int8": False,
              "exporter": "torch.onnx (TorchScript)", "source": src.name,
              "file": pretrained.GRAPH, **graph_signature(text_path),
              "frozen_encoder_in_graph": frozen is not None,
              "text_dim": config.model.text_dim, "num_attributes": loaded.schema.num_attributes,
              "num_tags": loaded.schema.num_tags, "image": image_record,
              "crf": crf_record(loaded.net),
              "versions": {**pretrained.versions(), "onnx": onnx.__version__,
                           "onnxruntime": onnxruntime.__version__}}
    pretrained.write_json(out / pretrained.EXPORT, record)
    if int8:
        from mjave.inference.onnx_check import MIN_AGREEMENT, sample_items
        items, source = sample_items(check_texts, config.data.valid)
        floor = MIN_AGREEMENT if min_agreement is None else min_agreement
        quantize_checked(out, record, items, source, min_agreement=floor, force=force,
                         weights=int8_weights)
    log.info("exported %s to %s (opset %d%s)", src, out, opset, ", int8" if int8 else "")
    return out


class Int8CheckError(ValueError):
    """The int8 graph strays too far from the fp32 one on this CPU (the check's figures)."""

    def __init__(self, message: str, check: Any):
        super().__init__(message)
        self.check = check


def quantize_checked(out: Path, record: dict[str, Any], items: Sequence[dict[str, Any]],
                     source: str, *, min_agreement: float, force: bool = False,
                     weights: str = "signed7") -> Any:
    """Quantise the fp32 export in `out` in a staging copy, compare it with `out` on `items`,
    and move the int8 graphs and export.json into `out` only if the check passes (or `force`).
    Returns the `Int8Check`."""
    from mjave.inference.onnx_check import check_int8

    graphs = [name for name in (pretrained.GRAPH, pretrained.IMAGE_GRAPH)
              if (out / name).is_file()]
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-int8-", dir=out.parent) as tmp:
        staged = Path(tmp) / "int8"
        shutil.copytree(out, staged)
        for name in graphs:
            quantize_int8(staged / name, weights)
        record = {**record, "int8": True, "int8_weights": weights,
                  **graph_signature(staged / pretrained.GRAPH)}
        if record.get("image"):
            record["image"] = {**record["image"],
                               **graph_signature(staged / pretrained.IMAGE_GRAPH)}
        pretrained.write_json(staged / pretrained.EXPORT, record)
        check = check_int8(out, staged, items, source, min_agreement=min_agreement)
        log.info("%s", check.summary())
        if not check.passed and not force:
            raise Int8CheckError(
                f"{check.summary()}. The int8 graph was not written: {out} holds the fp32 export. "
                "Pass --force to write int8 anyway, or use the fp32 export on this CPU "
                "(docs/performance.md, 'int8 on different CPUs').", check)
        if not check.passed:
            log.warning("WRITING AN INT8 GRAPH THAT FAILED ITS CHECK (--force): %s",
                        check.summary())
        pretrained.write_json(staged / pretrained.EXPORT, {**record, "int8_check": check.to_dict()})
        for name in (*graphs, pretrained.EXPORT):
            os.replace(staged / name, out / name)
    return check


def crf_record(net: nn.Module) -> dict[str, Any] | None:
    """The CRF transitions the decoder runs with (`mjave.inference.crf.Transitions`), as JSON;
    None for a model without a CRF."""
    from mjave.inference.predict import network_transitions

    transitions = network_transitions(net)
    return None if transitions is None else transitions.to_dict()


def image_regions(config: Any) -> int:
    """K, the image regions the configured image encoder gives (its `num_regions` rule)."""
    from mjave.encoders.image import ImageEncoder

    return ImageEncoder(config.encoder.image_size).num_regions


__all__ = ["DEFAULT_OPSET", "INT8_WEIGHTS", "Int8CheckError", "TextGraph",
           "export_model", "ffn_output_matmuls", "graph_signature", "quantize_checked", "quantize_int8",
           "require_onnx"]
