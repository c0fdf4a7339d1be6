"""Mr. Snuffleupagus at SemEval-2025 Task 4 (Dosajh and Sanghi, 2025; github.com/ArjunDosajh/
Mr.Snuffleupagus-SemEval-2025-Task-4): adaptive RMU, representation misdirection whose steering
coefficient follows the size of the forget activations.

- One random direction per task; each task's coefficient is 3 (OLMo-1B) or 5 (OLMo-7B) times
  the mean norm of its forget activations at the steered layer, measured at each epoch's start
  (`rmu` with `adaptive_scale`).
- The steered layer is 14 of OLMo-1B's 16 (26 of OLMo-7B's 32); only the MLP down-projections of
  that layer and the two below it train; retain weight 900.
- The text is the whole row (prompt and answer: `tokens: all`); AdamW at 5e-5 with a constant
  rate and no clipping, 8 (1B) or 12 (7B) forget rows and as many retain rows a step.
"""

from __future__ import annotations

from lume.stages.unlearning.recipes.base import Recipe, register_recipe
from lume.results import PublishedScores


# Their script: 100 epochs, the model saved after each, stopped by the organisers' one-hour limit;
# each row `input + " " + output` without EOS, cut per task; each task's coefficient from its
# first batch, padding included.
THEIRS = {"schedule": {"kind": "epochs", "epochs": 100, "max_seconds": 3600},
          "text": {"eos": False, "task_max_tokens": {"Task1": 256, "Task2": 105, "Task3": 335}}}


def _rmu(layer: int, scale: float, batch_size: int, epochs: float = 1, learning_rate: float = 5e-5,
         alpha: float = 900.0, theirs: bool = True) -> dict:
    run = {"method": "rmu", "method_settings": {"layer": layer, "adaptive_scale": scale, "alpha": alpha,
                                                "tokens": "all", "norms_from": "first-batch" if theirs else "task"},
           "schedule": {"kind": "epochs", "epochs": epochs},
           "training": {"batch_size": batch_size, "learning_rate": learning_rate, "scheduler": "constant",
                        "max_grad_norm": 0.0, "modules": ["down_proj"]}}
    return {**run, **THEIRS} if theirs else run


@register_recipe
class AdaptiveRMU(Recipe):
    name = "adaptive-rmu"
    team = "Mr. Snuffleupagus"
    source = "Dosajh and Sanghi, SemEval-2025 Task 4; settings from the authors' unlearn_submission.py"
    runs = {
        "olmo-7b": {"adaptive-rmu": _rmu(26, 5.0, 12)},
        "olmo-1b": {"adaptive-rmu": _rmu(14, 3.0, 8)},
        # the demo's size: layer 26 of 30, 5 epochs of 4 rows a step at 3.5e-3, retain weight 70
        # (configs/recipes-tuning.yaml's best trial)
        "lume": {"adaptive-rmu": _rmu(26, 3.0, 4, epochs=5, learning_rate=3.5e-3, alpha=70.0, theirs=False)},
    }
    published = {"olmo-7b": PublishedScores(0.376, 0.387, 0.256, 0.485),
                 "olmo-1b": PublishedScores(0.485, 0.412, 0.793, 0.250)}
