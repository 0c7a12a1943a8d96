"""How the model is optimised: `TrainConfig` (the paper's Table 2 defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mjave.config.core import ConfigError, check_range, path_field


SEED_MAX = 2**32 - 1
"""numpy's seeds are 0 .. 2**32 - 1; a seed outside would pass here and fail mid-run."""


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
    patience: int = 10                # epochs without a better validation `select_on` F1
    # The validation F1 the best epoch is chosen on: "value" (spans), "pair" (spans and values
    # named without a span together, `mjave.evaluation.implicit`), or "auto": pair for a model
    # with `model.implicit_values` (on value F1 its head is kept at whatever epoch the spans
    # peak, often before it has learned the photo), value otherwise.
    select_on: Literal["auto", "value", "pair"] = "auto"
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
    # Partial labels only, both off by default until measured (docs/completion.md, "Category-
    # absent attributes and table completeness"). category_absent: an attribute no training
    # record of a category lists (known_attributes, calibration or spans) is known to be absent
    # for every record of that category: unlabelled tokens may not be its values and its
    # negatives count. outside_weight_from_completeness: partial_outside_weight is replaced by
    # the table's completeness estimated from the training records
    # (`mjave.data.category_tables.table_completeness`); config.json records the value used.
    category_absent: bool = False
    outside_weight_from_completeness: bool = False
    # Mention replacement (`mjave.data.augment`, text-only models): `augment_copies` extra copies
    # of each labelled training record, each value swapped with probability `augment_mentions`
    # for another value of its category and attribute; 0 = off (the paper's).
    augment_mentions: float = 0.0
    augment_copies: int = 1
    # Leave the resume checkpoint (`<output_dir>/checkpoint/`: last weights, optimizer state and
    # RNG, about three times the model) in the folder once training has finished. Off: a
    # finished model needs none, and it would triple what is copied and shipped; a run killed
    # before the end keeps it either way and resumes from it.
    keep_checkpoint: bool = False
    # Knowledge distillation (`mjave.training.distill`, docs/model.md "Distillation"): a trained
    # model folder (relative to the working directory, like output_dir) whose soft BIO and
    # attribute probabilities the student also learns from, on every training text. Its schema
    # must be the training data's. null = off.
    distill_from: str | None = None
    # The loss is (1 - w) * gold loss + w * T^2 * soft loss: 0 = the gold loss alone, 1 = the
    # teacher alone. T softens both distributions (T > 0; 1 = as the teacher predicts).
    distill_weight: float = 0.5
    distill_temperature: float = 1.0
    # Extra texts (any format mjave reads; their spans are ignored) that get the soft loss only,
    # e.g. another dataset's texts. In a config file a relative path is relative to the file.
    distill_unlabelled: str | None = path_field()
    # Warm start (`mjave.training.warm_start`): a trained model folder (relative to the working
    # directory, like output_dir) whose model.safetensors weights the network starts from
    # instead of random ones, e.g. the last round's model before training on reviewed data. Same
    # architecture and encoders required; with other attributes the tensors that depend on them
    # load the rows of the attributes both schemas have. Not a resume: epochs, optimizer and
    # schedule start fresh (a run resuming its own checkpoint ignores it). null = off.
    init_from: str | None = None

    def __post_init__(self) -> None:
        check_range("train", self, {
            "epochs": (1, None, True), "batch_size": (1, None, True),
            "eval_batch_size": (1, None, True), "patience": (1, None, True),
            "lr": (0, None, True), "encoder_lr": (0, None, True), "weight_decay": (0, None, True),
            "clip_norm": (0, None, True), "warmup_ratio": (0, 1, False),
            "threshold": (0, 1, True), "partial_attr_weight": (0, 1, True),
            "partial_outside_weight": (0, 1, True), "augment_mentions": (0, 1, True),
            "augment_copies": (1, None, True), "distill_weight": (0, 1, True),
            "distill_temperature": (0, None, True),
            "seed": (0, SEED_MAX, True)})
        if self.select_on not in ("auto", "value", "pair"):
            raise ConfigError(f"train.select_on must be auto, value or pair, not "
                              f"{self.select_on!r}")
        if self.lr == 0:
            raise ConfigError("train.lr must be above 0, not 0")
        if self.distill_temperature == 0:
            raise ConfigError("train.distill_temperature must be above 0, not 0")
        if self.distill_from == "":
            raise ConfigError("train.distill_from must name a model folder (or be null), not ''")
        if self.init_from == "":
            raise ConfigError("train.init_from must name a model folder (or be null), not ''")
        if self.distill_unlabelled and not self.distill_from:
            raise ConfigError("train.distill_unlabelled gives texts for the teacher's soft "
                              "targets: set train.distill_from (the teacher) too")
