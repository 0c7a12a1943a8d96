"""Run an exported folder (`mjave export`) with onnxruntime on CPU, inside the Extractor.

The graph takes only the place of the torch forward: the folder is read along the one path
(`mjave.model_folder.ModelFolder`: config, schema, the export record, the tokenizer from the
folder's `tokenizer/`), and `Extractor.load` windows and collates the same batches and decodes
with the one decoder; `OnnxNetwork` is called like the torch network (`net(batch,
with_labels=False)`) and returns its logits. Image models run their image encoder's graph
through `OnnxImageEncoder`, which keeps the torch encoder's preprocessing. Nothing is
unpickled: the graphs are protobuf, the rest JSON and tokenizer files.

Before running, each graph is checked against the folder: the export record against config and
schema (`mjave.pretrained.check_export`), then the graph's own inputs and outputs against the
record, so a graph from another model is refused with a message rather than mis-decoded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mjave import pretrained
from mjave.encoders.image import ImageEncoder
from mjave.inference.crf import Transitions
from mjave.inference.onnx_export import require_onnx
from mjave.model.mjave import MJAVEOutput
from mjave.model_folder import ModelFolder

log = logging.getLogger(__name__)

CPU = torch.device("cpu")


def make_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session over `path` with `threads` intra-op threads (default: torch's
    thread count, which OMP_NUM_THREADS sets)."""
    import onnxruntime as ort

    if not path.is_file():
        raise pretrained.missing_file(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def check_graph(session: Any, signature: dict[str, Any], path: Path) -> None:
    """ValueError when the graph's inputs or outputs are not those its export record lists
    (names, and every fixed size)."""
    def listed(values: list[dict[str, Any]]) -> dict[str, list]:
        return {v["name"]: v["shape"] for v in values}

    def actual(values: Any) -> dict[str, list]:
        return {v.name: list(v.shape) for v in values}

    problems = []
    for kind, got, want in (("inputs", actual(session.get_inputs()), listed(signature["inputs"])),
                            ("outputs", actual(session.get_outputs()),
                             listed(signature["outputs"]))):
        if set(got) != set(want):
            problems.append(f"{kind} {sorted(got)}, the record lists {sorted(want)}")
            continue
        for name, shape in want.items():
            fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int)]
            if len(got[name]) != len(shape) or any(got[name][i] != d for i, d in fixed):
                problems.append(f"{name} has shape {got[name]}, the record says {shape}")
    if problems:
        raise ValueError(f"{path}: the graph does not match {pretrained.EXPORT} of its folder: "
                         + "; ".join(problems) + " (export the model again with `mjave export`)")


class OnnxNetwork:
    """The torch network's place in the Extractor: `net(batch, with_labels=False)` on a collated
    batch, computed by an onnxruntime session (logits only: no gates, no losses). A CRF
    tagger's `transitions` come from the export record; the decoder reads them."""

    def __init__(self, session: Any, transitions: Transitions | None = None):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.transitions = transitions

    def eval(self) -> "OnnxNetwork":
        return self

    def feeds(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The graph's inputs from the collated batch (the masks as int64, features float32)."""
        source = {"input_ids": ("input_ids", np.int64), "attention_mask": ("mask", np.int64),
                  "tag_mask": ("tag_mask", np.int64), "v_global": ("v_global", np.float32),
                  "v": ("v", np.float32)}
        out = {}
        for name in self.input_names:
            key, dtype = source[name]
            out[name] = np.ascontiguousarray(batch[key].cpu().numpy(), dtype=dtype)
        return out

    def __call__(self, batch: dict[str, torch.Tensor], with_labels: bool = False) -> MJAVEOutput:
        if with_labels:
            raise ValueError("an exported ONNX model predicts only (no labels, no losses)")
        attr, tags = self.session.run(["attr_logits", "tag_logits"], self.feeds(batch))
        return MJAVEOutput(torch.from_numpy(attr), torch.from_numpy(tags), None, None, None)


class OnnxImageEncoder(ImageEncoder):
    """The image encoder's graph behind the torch encoder's interface (`encode_images`,
    `num_regions`, `feature_dim`, `device`): the preprocessing is the torch encoder's own."""

    def __init__(self, session: Any, record: dict[str, Any]):
        super().__init__(int(record["image_size"]))
        self.session = session
        self.name = str(record["name"])
        self.feature_dim = int(record["feature_dim"])
        self.mean = tuple(record["mean"])
        self.std = tuple(record["std"])
        self.resample = int(record["resample"])

    @property
    def device(self) -> torch.device:
        return CPU

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, r = self.session.run(["global", "regions"],
                                {"pixels": np.ascontiguousarray(pixels.numpy(), np.float32)})
        return torch.from_numpy(g), torch.from_numpy(r)


class ExportedModel(pretrained.LoadedModel):
    """A `LoadedModel` whose `net` is an `OnnxNetwork`: token ids in, so the Extractor never
    runs a text encoder of its own (a frozen one is inside the graph)."""

    @property
    def uses_text_features(self) -> bool:
        return False


def warn_if_saturating(folder: Path, record: dict[str, Any]) -> bool:
    """Warn (and return True) when an int8 graph with 8-bit signed weights (exported before issue
    #30, or with `--int8-weights signed`) is loaded on a CPU without VNNI, where onnxruntime's
    u8 x s8 kernels saturate and its spans can differ from fp32's by a third."""
    from mjave.inference.onnx_check import cpu_isa

    if not record.get("int8") or record.get("int8_weights", "signed") != "signed":
        return False
    cpu = cpu_isa()
    if "no VNNI" not in cpu:
        return False
    log.warning("%s: int8 graph with signed weights on a CPU without VNNI (%s): its answers can "
                "be far from fp32's here; re-export with `mjave export --int8` (7-bit "
                "weights, the default) or use the fp32 export", folder, cpu)
    return True


def load_exported(folder: ModelFolder, device: str = "auto", threads: int | None = None
                  ) -> tuple[ExportedModel, OnnxImageEncoder | None]:
    """The model of a read exported folder and, for an image model, its image encoder;
    ValueError when a graph does not match the folder's config, schema or export record."""
    if device not in ("auto", "cpu"):
        raise ValueError(f"an exported ONNX folder runs on CPU (onnxruntime's CPU provider), "
                         f"not on {device!r}: use --device cpu or the torch model folder")
    require_onnx()
    record = pretrained.check_export(folder)
    warn_if_saturating(folder.path, record)
    session = make_session(folder.weights, threads)
    check_graph(session, record, folder.weights)
    aligner = pretrained.make_aligner(folder.config.encoder, folder.schema, folder.tokenizer)
    crf = record.get("crf")
    network: Any = OnnxNetwork(session, None if crf is None else Transitions.from_dict(crf))
    model = ExportedModel(folder.path, folder.config, folder.schema, network, aligner, CPU)
    image = None
    if model.uses_image:
        image_record = record["image"]
        path = folder.path / image_record["file"]
        image_session = make_session(path, threads)
        check_graph(image_session, image_record, path)
        image = OnnxImageEncoder(image_session, image_record)
    return model, image


__all__ = ["ExportedModel", "OnnxImageEncoder", "OnnxNetwork", "check_graph", "load_exported",
           "make_session", "warn_if_saturating"]
