"""One file describes a run: data, encoders, model and training, composed in `RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mjave.encoders.features import EncoderConfig
from mjave.model.config import ModelConfig


@dataclass
class DataConfig:
    """Where the records are. Paths are files in any format mjave reads (format by extension)."""

    train: str = ""
    valid: str | None = None
    test: str | None = None
    format: str | None = None
    image_root: str | None = None  # image paths in records are relative to this folder
    lenient: bool = False          # skip bad rows (counted and reported) instead of stopping


@dataclass
class TrainConfig:
    """Optimisation defaults from the paper's Table 2 (lr 1e-4, batch 128, 50 epochs)."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-4
    encoder_lr: float = 2e-5          # for a fine-tuned text encoder
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    scheduler: Literal["constant", "linear"] = "constant"  # linear: warm up, then decay to 0
    warmup_ratio: float = 0.1         # share of all steps spent warming up (linear only)
    patience: int = 10                # epochs without a better validation value F1
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    bf16: bool = True                 # autocast on CUDA only; CPU runs stay float32
    threshold: float = 0.5            # attribute probability threshold
    # Keep every training example padded on the device and cut batches there (no per-batch
    # host work; `mjave.training.resident`): null = on for CUDA in a single process.
    resident: bool | None = None
    compile: bool = False             # torch.compile the forward and loss (eager on failure)
    eval_batch_size: int = 256
    # Partial labels (records from `mjave data label` carry `known_attributes`): null = on when
    # some training record carries them; false = naive (unlabelled tokens are O, unknown
    # attributes negatives); true = on. See docs/completion.md, section 2.
    partial_labels: bool | None = None
    # Attribute-loss weight of a negative whose attribute the record does not know (partial
    # labels only): 0 masks it out (default), 1 is the naive negative.
    partial_attr_weight: float = 0.0
    # Value-loss weight of the naive O target on tokens outside every labelled span of a
    # partially labelled record (partial labels only): 0 = the marginal over O and the unknown
    # attributes' tags alone, 1 = naive. See `mjave.model.losses.tag_loss`.
    partial_outside_weight: float = 0.1
    # Mention replacement (`mjave.data.augment`, text-only models): `augment_copies` extra copies
    # of each labelled training record, each value swapped with probability `augment_mentions`
    # for another value of its category and attribute; 0 = off (the paper's).
    augment_mentions: float = 0.0
    augment_copies: int = 1


@dataclass
class RunConfig:
    """Everything that defines a run; written into every model folder as config.json."""

    output_dir: str = "runs/model"
    features_dir: str | None = None   # frozen-feature store; default <output_dir>/features
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
