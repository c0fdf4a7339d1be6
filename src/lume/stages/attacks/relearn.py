"""Relearning: a few fine-tuning steps on half of the forget documents' QA pairs (`relearn`), or on
public text that shares no document with LUME (`relearn-public`); measured on the other half."""

from __future__ import annotations

import copy
from pathlib import Path

from lume import data as lume_data
from lume.errors import set_resume_note
from lume.results import AttackResult
from lume.stages.attacks.base import ATTACKS, Attack, AttackConfig, Attacker
from lume.training import Example, TrainingRun, collate, prompt_answer_example, scoped
from lume.training.sampling import drawn_batches
from lume.training.stage import Stage


class _RelearnStage(Stage):
    """The relearning attacks' training: a few plain NLL steps on the attack's examples, the
    weights chosen by `relearn` (layers, LoRA) as in any stage; a scratch run (the attacked
    model is scored, not kept)."""

    description = "relearning"

    def __init__(self, model, examples: list[Example], config: AttackConfig, pad_id: int, out_dir: Path):
        super().__init__(out_dir, config.relearn, show_progress=config.progress)
        self.start, self.examples, self.config, self.pad_id = model, examples, config, pad_id

    def training_run(self, accelerator) -> TrainingRun:
        return TrainingRun(self.config.relearn, self.config.relearn_steps, {"attack": str(self.out_dir)})

    def model(self, accelerator):
        return scoped(self.start, self.settings)

    def step_loss(self, model, accelerator):
        settings, examples = self.settings, self.examples

        def step_loss(model, micro_batch):
            indices = drawn_batches(settings.seed, micro_batch, [range(len(examples))], settings.batch_size)
            batch = collate([examples[i] for i in indices[0]], self.pad_id, model.device)
            loss = model(**batch).loss
            return loss, {"loss": loss.item(), "tokens": int(batch["attention_mask"].sum())}

        return step_loss

    def finished(self, model, result, accelerator):
        set_resume_note(None)
        return model.eval()


def relearned(model, examples: list[Example], config: AttackConfig, pad_id: int, out_dir: Path):
    """`model` after the relearning attack's steps on `examples`."""
    return _RelearnStage(model, examples, config, pad_id, out_dir).execute()


@ATTACKS.register
class Relearn(Attack):
    """Fine-tune on the QA pairs of half of each task's forget documents; measure the other half."""

    name = "relearn"

    def examples(self, attacker: Attacker) -> list[Example]:
        return [prompt_answer_example(attacker.tokenizer, qa.input, qa.output) for d in attacker.relearned
                for qa in d.qa]

    def relearned_documents(self, attacker: Attacker) -> list[str]:
        return [d.doc_id for d in attacker.relearned]

    def run(self, attacker: Attacker, out_dir: Path) -> AttackResult:
        model = relearned(copy.deepcopy(attacker.unlearned.model), self.examples(attacker), attacker.config,
                          attacker.tokenizer.pad_token_id, out_dir / self.name)
        return attacker.report(model, attacker.measured + attacker.retain,
                               {"relearned_documents": self.relearned_documents(attacker)})


@ATTACKS.register
class RelearnPublic(Relearn):
    """Fine-tune on public text (the SemEval MIA files' non-members, cut to public_max_tokens)."""

    name = "relearn-public"

    def examples(self, attacker: Attacker) -> list[Example]:
        public = [d.text for d in lume_data.load_mia(attacker.data_dir) if not d.member]
        return [Example(ids, list(ids)) for ids in
                (attacker.tokenizer(text).input_ids[:attacker.config.public_max_tokens] for text in public)]

    def relearned_documents(self, attacker: Attacker) -> list[str]:
        return []


