"""SHA256, second on the 1B SemEval-2025 Task 4 leaderboard (Agrawal and Huang, 2025, "Selective
Amnesia: Constrained Unlearning for Large Language Models via Knowledge Isolation", arXiv
2504.12996): causal tracing located the subject-attribute associations of OLMo in the MLPs of
its early layers, so only those train, with gradient difference whose retain weight rises
when the retain loss does.

- Only the MLP weights of decoder layers 0 to 5 train (everything else frozen).
- Loss −NLL(F) + m · NLL(R), m = 1.2 in the first epoch, then 1.2 to 2.3 as the retain loss rises
  above its first-epoch mean (`adaptive-gd`).
- 8 epochs, 12 examples a micro-step (forget and retain mixed), 10 micro-steps a step, AdamW at
  1.5e-5, the learning rate decaying linearly.
"""

from __future__ import annotations

from lume.stages.unlearning.recipes.base import Recipe, register_recipe
from lume.results import PublishedScores

PUBLISHED = {"method": "adaptive-gd", "method_settings": {"baseline": "per-row"},
             "schedule": {"kind": "epochs", "epochs": 8},
             "training": {"batch_size": 6, "gradient_accumulation": 10, "learning_rate": 1.5e-5,
                          "scheduler": "linear", "layers": [0, 1, 2, 3, 4, 5], "modules": ["mlp"],
                          "mixed_precision": "no"},
             # bf16 weights, no autocast; the answer tokenised on its own after the prompt (no space)
             "dtype": "bfloat16", "text": {"answer_space": False},
             # every 4 steps, the lowest loss on 500 rows per task drawn from the training rows
             "eval_every": 4, "select": "loss",
             "probes": {"docs_per_task": 0, "non_members": 0, "mmlu_questions": 0, "validation_rows": 500}}


@register_recipe
class SHA256(Recipe):
    name = "sha256"
    team = "SHA256"
    source = ("Agrawal and Huang, SemEval-2025 Task 4 (arXiv 2504.12996); settings from the authors' unlearn.py and "
              "README (github.com/LAB-FLAIR/Constrained-Unlearning-for-LLM)")
    runs = {
        "olmo-7b": {"constrained-gd": PUBLISHED},
        "olmo-1b": {"constrained-gd": PUBLISHED},
        # the demo's size: 5 epochs of 4 + 4 rows a step at 1.1e-3 (configs/recipes-tuning.yaml's best trial)
        "lume": {"constrained-gd": {"method": "adaptive-gd", "schedule": {"kind": "epochs", "epochs": 5},
                                    "training": {**PUBLISHED["training"], "batch_size": 4, "gradient_accumulation": 1,
                                                 "learning_rate": 1.1e-3, "mixed_precision": "auto"}}},
    }
    published = {"olmo-7b": PublishedScores(0.711, 0.964, 0.894, 0.275, place="excluded: MMLU below 0.371",
                                             below_threshold=True),
                 "olmo-1b": PublishedScores(0.652, 0.973, 0.741, 0.243, place="2nd")}
