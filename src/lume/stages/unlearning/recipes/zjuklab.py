"""ZJUKLAB, second on the 7B SemEval-2025 Task 4 leaderboard (Xu et al., 2025, "Unlearning via
Model Merging", arXiv 2503.21088): two LoRA models trained with the same loss at different
weights, one that forgets too much and one too little, merged with TIES.

- Each model: LoRA of rank 32, alpha 32, dropout 0.05 on every linear layer but the output one;
  loss w_npo · NPO (β = 0.1) + w_kl · KL on the retain batch + w_nll · NLL on the retain batch
  (`npo+kl+gd`); 5 epochs over the forget set, each forget example with one retain example; AdamW
  at 1e-4 with weight decay 0.01, warmed up for the first epoch, then decaying linearly.
- The over-forgetting model: weights 0.4 / 0.4 / 0.2, 1 example a micro-step, 4 micro-steps a
  step. The under-forgetting one: 0.3 / 0.3 / 0.4, 2 examples a micro-step, 4 micro-steps.
- TIES merge of the two adapters into the target, density 0.8, weights 1 and 1.
"""

from __future__ import annotations

from lume.stages.unlearning.recipes.base import Recipe, register_recipe
from lume.results import PublishedScores

TRAINING = {"learning_rate": 1e-4, "weight_decay": 0.01, "scheduler": "linear", "warmup_ratio": 0.2,
            "gradient_accumulation": 4, "lora_rank": 32, "lora_alpha": 32, "lora_dropout": 0.05}
SCHEDULE = {"kind": "epochs", "epochs": 5}


# their script: the prompt's last 204 tokens (80 % of 256), the answer with no space before it, EOS,
# rows cut at 256; float16 weights under the LoRA adapters, no autocast (fp16 and bf16 off)
THEIR_TEXT = {"answer_space": False, "prompt_tokens": 204, "max_tokens": 256}


def _model(npo: float, kl: float, nll: float, batch_size: int, theirs: bool = True, **training) -> dict:
    # their NPO: one log-ratio per micro-batch, its per-token mean (get_batch_loss), inside the log-sigmoid;
    # their KL: batchmean over rows padded to 256 positions
    method = {"beta": 0.1, "pooling": "batch" if theirs else "sequence", "kl_padded_length": 256 if theirs else 0,
              "npo_weight": npo, "kl_weight": kl, "nll_weight": nll}
    model = {"method": "npo+kl+gd", "method_settings": method, "schedule": SCHEDULE,
             "training": {**TRAINING, "batch_size": batch_size, **training}}
    if theirs:
        model.update(text=THEIR_TEXT, dtype="float16")
        model["training"]["mixed_precision"] = "no"
    return model


PUBLISHED = {"over-forgetting": _model(0.4, 0.4, 0.2, 1), "under-forgetting": _model(0.3, 0.3, 0.4, 2)}


@register_recipe
class ZJUKLAB(Recipe):
    name = "zjuklab"
    team = "ZJUKLAB"
    source = ("Xu et al., SemEval-2025 Task 4 (arXiv 2503.21088); settings from the authors' "
              "semeval25/unlearn-merging.py (github.com/zjunlp/unlearn)")
    runs = {
        "olmo-7b": PUBLISHED,
        "olmo-1b": PUBLISHED,
        # the demo's size: 2 and 4 rows a step without accumulation, 5 epochs at 3e-4 (the best of the settings
        # configs/recipes-tuning-zjuklab*.yaml compared; none kept the retain set there)
        "lume": {"over-forgetting": _model(0.4, 0.4, 0.2, 2, False, gradient_accumulation=1, learning_rate=3e-4),
                 "under-forgetting": _model(0.3, 0.3, 0.4, 4, False, gradient_accumulation=1, learning_rate=3e-4)},
    }
    merge = {"combination": "ties", "density": 0.8, "weights": [1.0, 1.0]}
    published = {"olmo-7b": PublishedScores(0.487, 0.944, 0.048, 0.471, place="2nd"),
                 "olmo-1b": PublishedScores(0.483, 0.915, 0.292, 0.243)}
