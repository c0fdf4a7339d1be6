"""AILS-NTUA, first on both SemEval-2025 Task 4 leaderboards (Premptis et al., 2025,
"Parameter-Efficient Unlearning for Large Language Models using Data Chunking", arXiv
2503.02443): sequential unlearning with gradient difference (their SUGD).

- The forget set is cut into chunks of 32 examples, unlearned one after another; each forget
  example is followed by 7 retain examples taken cyclically over the retain set (the next ones
  for each chunk), and each chunk is trained for 7 epochs, in order, by a fresh trainer (new
  AdamW moments, the learning rate decaying linearly to 0 within the chunk).
- The loss is the mean over a step's examples of −1 × NLL for a forget example and 0.5 × NLL for
  a retain one, each NLL its example's token mean (`gd` with `average: examples`, α = 0.5).
- Layer-focused: only the last 8 decoder layers train (embeddings, output layer and the rest
  frozen), at a learning rate of 1e-5.
"""

from __future__ import annotations

from lume.stages.target import DEMO_LAYERS
from lume.stages.unlearning.recipes.base import Recipe, register_recipe
from lume.results import PublishedScores

LAST_EIGHT = [-8, -7, -6, -5, -4, -3, -2, -1]
PUBLISHED = {"method": "gd", "method_settings": {"alpha": 0.5, "average": "examples"},
             "schedule": {"kind": "chunks", "chunk_size": 32, "retain_per_forget": 7, "epochs": 7,
                          "restart_per_chunk": True},
             "training": {"batch_size": 1, "learning_rate": 1e-5, "scheduler": "linear", "layers": LAST_EIGHT},
             # the model loaded in bf16 and trained with bf16=True: no float32 copy of the weights; no EOS
             "dtype": "bfloat16", "text": {"eos": False}}
LUME = {**PUBLISHED, "dtype": None, "text": {}}  # a small target lume built: float32 weights, lume's text


@register_recipe
class AILSNTUA(Recipe):
    name = "ails-ntua"
    team = "AILS-NTUA"
    source = ("Premptis et al., SemEval-2025 Task 4 (arXiv 2503.02443); settings from the authors' "
              "configs/sequential_args.json and SUGD notebooks (github.com/iraklis07/llm-unlearning)")
    runs = {
        "olmo-7b": {"sugd": PUBLISHED},
        "olmo-1b": {"sugd": PUBLISHED},
        # the demo target's: chunks of 16, its 12 trained layers, 3 epochs a chunk at 4e-4, chosen on the demo
        # target itself; lume's tuned defaults (tuned.yaml: a sweep on tuning documents) go over these
        "lume": {"sugd": {**LUME, "schedule": {**PUBLISHED["schedule"], "chunk_size": 16, "epochs": 3},
                          "training": {**PUBLISHED["training"], "batch_size": 2, "learning_rate": 4e-4,
                                       "layers": DEMO_LAYERS}}},
    }
    published = {"olmo-7b": PublishedScores(0.706, 0.827, 0.847, 0.443, place="1st"),
                 "olmo-1b": PublishedScores(0.688, 0.964, 0.857, 0.242, place="1st")}
