"""The paper's Table 3 baselines (section 4), registered as `model.architecture` names so they
train, save, reload and predict through the same trainer, CLI and metrics as M-JAVE.

Neural (text-only, set `model.use_image=false`): sep-bert, rnn-lstm, attn-birnn, slot-gated,
joint-bert, scalingup, and token-classification (the plain fine-tuned
BIO tagger the real-data benchmark compares against). Not neural: `WSM` (word matching over training values), used directly
with `mjave.evaluation.metrics.evaluate_records`. See docs/baselines.md.
"""

# Importing each module registers its architecture name (registry._load_builtin imports us).
from mjave.model.baselines.attn_birnn import AttnBiRNN
from mjave.model.baselines.joint_bert import JointBERT
from mjave.model.baselines.rnn_lstm import RNNLSTM
from mjave.model.baselines.scalingup import ScalingUp
from mjave.model.baselines.sep_bert import SepBERT
from mjave.model.baselines.slot_gated import SlotGated
from mjave.model.baselines.token_classification import TokenClassification
from mjave.model.baselines.wsm import WSM

NEURAL_BASELINES = ("sep-bert", "rnn-lstm", "attn-birnn", "slot-gated", "joint-bert", "scalingup",
                    "token-classification")

__all__ = ["AttnBiRNN", "JointBERT", "NEURAL_BASELINES", "RNNLSTM", "ScalingUp", "SepBERT",
           "SlotGated", "TokenClassification", "WSM"]
