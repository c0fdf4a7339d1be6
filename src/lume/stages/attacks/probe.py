"""Probing without retraining: sc prompts cut a third earlier, questions with an instruction
prefix, and answers scored by containment (`probe`; docs/attacks.md)."""

from __future__ import annotations

from pathlib import Path

from lume.data.records import Document, Record
from lume.metrics import means_by
from lume.results import AttackResult
from lume.stages.attacks.base import ATTACKS, Attack, Attacker, means, recovered_fraction

QA_PREFIX = "Answer the following question with a short answer.\nQuestion: "


def _probe_records(documents: list[Document]) -> tuple[list[Record], list[str]]:
    """Cut sc prompts and instruction-prefixed questions, each with its gold text."""
    records, prompts = [], []
    for document in documents:
        words = document.sc.input.split(" ")
        cut = max(1, len(words) * 2 // 3)
        continuation = " ".join(words[cut:]) + " " + document.sc.output
        records.append(Record(document.sc.id, document.doc_id, document.task, "sc", document.split,
                              " ".join(words[:cut]), continuation.strip()))
        prompts.append(records[-1].input)
        for qa in document.qa:
            records.append(qa)
            prompts.append(QA_PREFIX + qa.input + "\nAnswer:")
    return records, prompts


def _containment(items: list[dict]) -> dict[str, float]:
    """Per split and task, the share of QA answers that contain the gold answer."""
    return means_by([item for item in items if item["kind"] == "qa"],
                    lambda item: f"{item['split']}/{item['task']}/knowledge",
                    lambda item: item["output"].strip().lower() in item["generation"].lower())


@ATTACKS.register
class Probe(Attack):
    """Rescore without retraining: cut sentence prompts, instruction-prefixed questions, and
    answers that contain the gold one (docs/attacks.md)."""

    name = "probe"

    def run(self, attacker: Attacker, out_dir: Path) -> AttackResult:
        documents = attacker.forget + attacker.retain
        records, prompts = _probe_records(documents)
        probes = {}
        for label, model in (("unlearned", attacker.unlearned.model), ("target", attacker.target.model)):
            probed = attacker.score(model, documents, prompts=prompts, records=records, early_exit=False)
            plain = attacker.score(model, documents, records=[r for r in records if r.kind == "qa"],
                                   early_exit=False)
            probes[label] = {"rephrased": means(probed), "qa_containment": _containment(plain),
                             "rephrased_qa_containment": _containment(probed)}
        base = attacker.baseline(documents)
        return AttackResult(details=probes, recovered={
            view: recovered_fraction(base["target"], base["unlearned"],
                                     {**base["unlearned"], **probes["unlearned"][view]})
            for view in ("rephrased", "qa_containment", "rephrased_qa_containment")})


