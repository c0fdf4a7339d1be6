"""What the stages write and return, typed: each field documented once, here.

`summary.json` is an `EvaluationSummary`; `lume_unlearn.json` an `UnlearnReport`; a study's
selection rows (`probes.jsonl`) are `ProbeRow`s. Each type reads and writes its JSON
(`from_json`, `to_json`), checking on reading that each number is a number, so a file edited
by hand or damaged is refused in one line naming the field. Code elsewhere reads fields
(`summary.mia.mia_score`), never key strings; the names of the headline numbers' intervals
and resamples are the `Headline` constants.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from lume.config import shown
from lume.errors import InputError
from lume.files import read_json

SCHEMA_VERSION = 2  # 1: summaries written before the version was recorded (the same fields)


class Headline:
    """Names of the headline numbers in `intervals` and `bootstrap.replicates` (and the parts of
    the final score a section declares)."""

    TASK_AGGREGATE = "task_aggregate"
    MIA_SCORE = "mia_score"
    MIA_AUC = "mia_auc"  # the loss attack's; the other attacks' are mia_auc_<attack>
    MMLU = "mmlu"
    GENERAL_NLL = "general_nll"  # mean token NLL on general text never trained on (an extra, beyond the official)
    FINAL = "final"
    FORGET_MEAN = "forget/mean"  # the mean of the six forget numbers
    RETAIN_MEAN = "retain/mean"

    @staticmethod
    def attack_auc(attack: str) -> str:
        return Headline.MIA_AUC if attack == "loss" else f"{Headline.MIA_AUC}_{attack}"


def doc(help: str, default=None, *, factory=None, flat: str | None = None, omit_none: bool = False):
    """A result field and its one documentation. `flat`: a mapping written as `<flat><key>`
    entries beside the other fields (`""`: whatever keys no other field takes); `omit_none`:
    left out of the JSON while None (a part that did not run) rather than written as null."""
    metadata = {"help": help, "flat": flat, "omit_none": omit_none}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(expected, value, where: str, source):
    """`value` read as `expected`: a Result from its mapping, a mapping or list of them, a checked
    number; other values as they are."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return None if value is None else _typed(next(a for a in args if a is not type(None)), value, where, source)
    if isinstance(expected, type) and issubclass(expected, Result):
        return expected.from_json(value, source=source, where=where)
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            raise InputError(source, f"expected a mapping, got {shown(value)}", field=where)
        inner = args[1] if args else None
        return {k: _typed(inner, v, f"{where}.{k}", source) for k, v in value.items()} if inner else value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(source, f"expected a list, got {shown(value)}", field=where)
        return [_typed(args[0], v, f"{where}[{i}]", source) for i, v in enumerate(value)] if args else value
    if expected is float and value is not None and not _is_number(value):
        raise InputError(source, f"expected a number, got {shown(value)}", field=where)
    return value


def _plain(value):
    if isinstance(value, Result):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Result:
    """A frozen dataclass written as a JSON object, one key per field (see `doc`)."""

    def to_json(self) -> dict:
        out: dict = {}
        for item in dataclasses.fields(self):
            value, meta = getattr(self, item.name), item.metadata
            if meta.get("flat") is not None:
                out.update({meta["flat"] + key: _plain(v) for key, v in value.items()})
            elif not (value is None and meta.get("omit_none")):
                out[item.name] = _plain(value)
        return out

    @classmethod
    def from_json(cls, data, *, source: str | Path = "<result>", where: str = "") -> Self:
        if not isinstance(data, dict):
            raise InputError(source, f"expected a mapping, got {shown(data)}", field=where or None)
        hints, rest, values = typing.get_type_hints(cls), dict(data), {}
        fields = dataclasses.fields(cls)
        for item in fields:
            if item.metadata.get("flat") is None and item.name in rest:
                values[item.name] = _typed(hints[item.name], rest.pop(item.name), _join(where, item.name), source)
        for item in sorted((f for f in fields if f.metadata.get("flat") is not None),
                           key=lambda f: -len(f.metadata["flat"])):  # the longest prefix takes its keys first
            prefix, inner = item.metadata["flat"], typing.get_args(hints[item.name])[1]
            taken = [key for key in rest if key.startswith(prefix)]
            values[item.name] = {key[len(prefix):]: _typed(inner, rest.pop(key), _join(where, key), source)
                                 for key in taken}
        return cls(**values)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


@dataclass(frozen=True, kw_only=True)
class ModelInfo(Result):
    name: str | None = doc("the model's name: a built-in's, a hub id, or its folder's")
    path: str | None = doc("its folder (None for a model given in memory without one)")
    fingerprint: str | None = doc("hash of its weights and tokenizer (lume.models.fingerprint)")
    dtype: str | None = doc("the dtype it was loaded in for generation")
    device: str | None = doc("where it ran")


@dataclass(frozen=True, kw_only=True)
class DataInfo(Result):
    dir: str | None = doc("the data folder")
    source: str | None = doc("lume | semeval-train | semeval-validation")
    fingerprint: str | None = doc("hash of the data files")
    documents: int | None = doc("documents evaluated (forget and retain)")
    items: int | None = doc("probes scored (sentence completions and questions)")
    target_manifest: bool | None = doc("the documents are those a lume target was trained on and held out")
    part: str | None = doc("tuning: the target's tuning documents, which a sweep chooses settings on (absent: its test "
                           "documents)", omit_none=True)


@dataclass(frozen=True, kw_only=True)
class MembershipResult(Result):
    members: int | None = doc("member documents: a lume target's trained forget ones, or the SemEval files' members")
    non_members: int | None = doc("non-member documents: its held-out ones, or the SemEval files' non-members")
    aucs: dict[str, float] = doc("each attack's ROC AUC, written auc_<attack> (loss: the official one)",
                                 factory=dict, flat="auc_")
    mia_score: float | None = doc("1 − 2|AUC_loss − 0.5|: the official MIA score (1: members cannot be told apart)")
    set: str | None = doc("held-out (a lume target's own documents) or semeval-final | semeval-validation",
                          omit_none=True)
    per_task: dict[str, MembershipResult] | None = doc("the same per task (held-out set only)", omit_none=True)
    note: str | None = doc("why these numbers are beside the official ones (SemEval files on a lume target)",
                           omit_none=True)

    @property
    def auc_loss(self) -> float | None:
        """The loss attack's AUC, from which the MIA score is computed."""
        return self.aucs.get("loss")


@dataclass(frozen=True, kw_only=True)
class MmluResult(Result):
    accuracy: float | None = doc("micro-averaged k-shot accuracy")
    questions: int | None = doc("questions asked")
    per_subject: dict[str, float] = doc("accuracy per subject", factory=dict)
    per_category: dict[str, float] = doc("accuracy per category", factory=dict)
    limit_per_subject: int | None = doc("questions per subject (seeded); None = all")
    subjects_sampled: int | None = doc("subjects (seeded); None = all 57")
    shots: int | None = doc("few-shot examples per question")
    target_mmlu: float | None = doc("the target model's accuracy, for the 75 % rule")
    below_threshold: bool | None = doc("below 75 % of the target's accuracy (None without one)")


@dataclass(frozen=True, kw_only=True)
class Bootstrap(Result):
    seed: int | None = doc("seed of the resamples")
    resamples: int | None = doc("how many")
    confidence: float | None = doc("the intervals' coverage (0.95)")
    units: str | None = doc("fingerprint of the resampled units: only summaries with equal ones are paired")
    replicates: dict[str, list[float]] = doc("each headline number per resample (Headline names)", factory=dict)


@dataclass(frozen=True, kw_only=True)
class EvaluationSummary(Result):
    """`summary.json`: one evaluation's numbers, what was evaluated, and how."""

    schema_version: int = doc("the layout of this file (SCHEMA_VERSION)", SCHEMA_VERSION)
    model: ModelInfo = doc("the model evaluated", factory=ModelInfo)
    data: DataInfo = doc("the data it was evaluated on", factory=DataInfo)
    dtypes: dict[str, str] = doc("the dtype each part ran in (generation, mia, mmlu)", factory=dict)
    scores: dict[str, float | None] = doc("the 12 task numbers, keyed split/task/metric", factory=dict)
    task_aggregate: float | None = doc("harmonic mean of the 12 numbers, forget ones inverted")
    early_stopped_items: int | None = doc("questions stopped once they could no longer match (scores unchanged)")
    per_task: dict[str, dict[str, float | None]] = doc("the 12 numbers by split/task, then metric", factory=dict)
    mia: MembershipResult | None = doc("the official membership inference (None: not run)", omit_none=True)
    mia_semeval: MembershipResult | None = doc("the SemEval MIA files beside it, for a lume target", omit_none=True)
    mmlu: MmluResult | None = doc("MMLU (None: not run)", omit_none=True)
    parts: dict[str, object] = doc("the other sections' parts, by section name (extraction, plug-ins)",
                                 factory=dict, flat="")
    final: float | None = doc("the official final score: mean of task aggregate, MIA score and MMLU")
    intervals: dict[str, list[float]] | None = doc("95 % bootstrap interval of each headline number",
                                                   omit_none=True)
    bootstrap: Bootstrap | None = doc("how the intervals were resampled", omit_none=True)
    config: dict = doc("the EvalConfig it ran with", factory=dict)
    versions: dict[str, str] = doc("python and the packages that decide the numbers", factory=dict)
    timings: dict[str, float] = doc("seconds per section and in all", factory=dict)
    files: list[str] = doc("the files this evaluation wrote (summary.json last)", factory=list)

    @classmethod
    def read(cls, path: str | Path, data) -> EvaluationSummary:
        """A summary file's contents; one of a newer lume, or not a summary, refused in one line."""
        version = data.get("schema_version", 1) if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
            raise InputError(path, f"schema version {shown(version)}: this lume reads versions up to {SCHEMA_VERSION} "
                                   "(written by a newer lume?)", field="schema_version")
        return dataclasses.replace(cls.from_json(data, source=path), schema_version=version)

    def interval(self, name: str) -> list[float] | None:
        return (self.intervals or {}).get(name)

    def replicates(self, name: str) -> list[float] | None:
        return self.bootstrap.replicates.get(name) if self.bootstrap else None

    @property
    def mmlu_accuracy(self) -> float | None:
        return self.mmlu.accuracy if self.mmlu else None

    @property
    def mia_score(self) -> float | None:
        return self.mia.mia_score if self.mia else None

    def split_mean(self, split: str) -> float | None:
        """The mean of a split's six task numbers (None while one is missing)."""
        values = [v for key, v in self.scores.items() if key.startswith(f"{split}/")]
        return None if len(values) != 6 or None in values else sum(values) / 6


@dataclass(frozen=True, kw_only=True)
class ProbeRow(Result):
    """One step's probe numbers during unlearning (OUT/probes.jsonl): what `select: best` and a
    sweep choose by."""

    id: str | None = doc("step-<step>, the row's key in probes.jsonl")
    step: int = doc("the training step probed (0: the model before unlearning)", 0)
    scores: dict[str, float] = doc("the task numbers on the probe documents, keyed split/task/metric",
                                   factory=dict)
    forget_mean: float | None = doc("mean of the forget numbers")
    retain_mean: float | None = doc("mean of the retain numbers")
    task_aggregate: float | None = doc("the task aggregate of the probe numbers (None: a task is missing)")
    mia_auc: float | None = doc("loss-attack AUC, probe forget documents against held-out ones")
    member_losses: list[float] | None = doc("each probe forget document's mean token NLL (a sweep's forget-quality "
                                            "objective tests them against the oracle's)", omit_none=True)
    mmlu_dev: float | None = doc("accuracy on MMLU dev questions")
    selection_score: float | None = doc("the final-score formula on these numbers (lume.stages.unlearning"
                                        ".selection.selection_score)", omit_none=True)
    validation_loss: float | None = doc("the method's loss on the validation rows (select: loss)", omit_none=True)
    seconds: float | None = doc("time the probe took", omit_none=True)
    cached: bool | None = doc("step 0 read from the cache shared by runs from the same model", omit_none=True)

    def chosen_numbers(self) -> dict:
        """What a sweep records of a trial's chosen step (its sweep.json row)."""
        kept = ("step", "forget_mean", "retain_mean", "mia_auc", "mmlu_dev", "selection_score")
        return {name: value for name, value in self.to_json().items() if name in kept}



@dataclass(frozen=True, kw_only=True)
class StepChoice(Result):
    step: int | None = doc("the step whose weights were saved")
    select: str | None = doc("last, best on the probes, or loss (lowest validation loss)")
    rule_met: bool | None = doc("that step keeps MMLU (dev) at least 75 % of the starting model's")
    data: dict = doc("the probes' selection data (documents, non-members, MMLU dev questions)", factory=dict)
    criterion: str | None = doc("what `best` means, in words")


@dataclass(frozen=True, kw_only=True)
class UnlearnReport(Result):
    """`lume_unlearn.json`: one unlearning run (or a recipe's runs and their merge)."""

    method: str | None = doc("the method's registered name (a recipe's: `recipe NAME`)")
    method_settings: dict = doc("the method's settings as used", factory=dict)
    config: dict = doc("the UnlearnConfig it ran with", factory=dict)
    model_in: str | None = doc("the model unlearned from")
    model_in_fingerprint: str | None = doc("its fingerprint")
    forget: dict = doc("the forget set: records and fingerprint", factory=dict)
    retain: dict = doc("the retain set: records and fingerprint", factory=dict)
    steps: int | None = doc("optimiser steps run (a recipe's: all its runs')")
    stopped: str | None = doc("why training ended before the schedule's last step (schedule.max_seconds)",
                              omit_none=True)
    losses: list[dict] = doc("each step's loss and the method's logged terms", factory=list)
    seconds: float | None = doc("wall time of the run")
    train_seconds: float | None = doc("time in the training loop (probes and checks apart)", omit_none=True)
    tokens: int | None = doc("real forget and retain tokens trained on (all processes')", omit_none=True)
    tokens_per_second: float | None = doc("tokens / train_seconds", omit_none=True)
    peak_memory_mb: float | None = doc("peak memory (max RSS on a CPU, max allocated on a GPU)", omit_none=True)
    device: str | None = doc("where it trained", omit_none=True)
    num_processes: int | None = doc("processes it ran on", omit_none=True)
    distributed_type: str | None = doc("accelerate's distributed type", omit_none=True)
    versions: dict[str, str] | None = doc("python and the packages that decide the numbers", omit_none=True)
    examples_per_step: int | None = doc("forget examples (rows, with rows_apart) an optimiser step took, all processes "
                                        "together: batch_size × gradient_accumulation", omit_none=True)
    micro_batches_per_process: int | None = doc("micro-batches each process accumulated per step (its equal share "
                                                "of training.gradient_accumulation)", omit_none=True)
    precision: dict | None = doc("the mixed precision used, what was asked and why", omit_none=True)
    probes: list[ProbeRow] | None = doc("the probe rows, step by step (eval_every)", omit_none=True)
    probe_seconds: float | None = doc("time the probes took", omit_none=True)
    selection: StepChoice | None = doc("which step was saved and why (eval_every)", omit_none=True)
    recipe: str | None = doc("a recipe's name (its runs merged)", omit_none=True)
    target_kind: str | None = doc("which of the recipe's settings ran (olmo-1b, olmo-7b, lume)", omit_none=True)
    source: str | None = doc("the recipe's paper", omit_none=True)
    runs: dict[str, UnlearnReport] | None = doc("a recipe's runs, by name", omit_none=True)
    merge: dict | None = doc("how a recipe's runs were merged (lume_merge.json)", omit_none=True)


@dataclass(frozen=True, kw_only=True)
class AttackResult(Result):
    """One attack's part of `attacks.json`: what came back of what unlearning removed."""

    recovered: dict = doc("(attacked − unlearned) / (target − unlearned) per forget task and metric, and per metric "
                          "over the tasks (`forget/all/<metric>`); None where unlearning removed nothing. A rescoring "
                          "attack's (probe): that mapping for each way of asking", factory=dict)
    retain_change: float | None = doc("the attacked model's mean retain score minus the unlearned model's")
    mmlu_change: float | None = doc("its MMLU accuracy minus the unlearned model's (None: MMLU off)")
    details: dict[str, object] = doc("what else the attack reports: the attacked model's scores (`scores`, "
                                     "`mmlu`), the target's and the unlearned model's on the same documents "
                                     "(`baseline`), the documents measured and relearned", factory=dict, flat="")

    @property
    def by_view(self) -> bool:
        """Whether `recovered` holds one mapping per way of asking (a rescoring attack)."""
        return bool(self.recovered) and all(isinstance(v, dict) for v in self.recovered.values())


@dataclass(frozen=True, kw_only=True)
class AttackResults(Result):
    """`attacks.json`: the attacks on one unlearned model."""

    model: str | None = doc("the unlearned model attacked")
    target: str | None = doc("the target it was unlearned from (the recovered fraction's reference)")
    config: dict = doc("the AttackConfig it ran with", factory=dict)
    attacks: dict[str, AttackResult] = doc("each attack's result, by name", factory=dict)
    baseline: dict = doc("the target's and the unlearned model's scores on every document, and the unlearned "
                         "model's MMLU", factory=dict)
    seconds: float | None = doc("wall time of the attacks")


def read_summary(path: str | Path) -> EvaluationSummary:
    """An evaluation's summary.json; a damaged one, or one of a newer lume, refused in one line."""
    return EvaluationSummary.read(path, read_json(Path(path), what="evaluation summary"))


def summary_part(**fields) -> dict:
    """A built-in section's part of `summary.json`, by EvaluationSummary field (each name checked
    against the type, each Result as its JSON). A plug-in section's part is `{its name: mapping}`."""
    known = {item.name for item in dataclasses.fields(EvaluationSummary)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"not fields of EvaluationSummary: {', '.join(unknown)}")
    return {name: _plain(value) for name, value in fields.items()}


@dataclass(frozen=True)
class PublishedScores:
    """A team's numbers on the SemEval-2025 Task 4 leaderboard (published, not computed here)."""

    final: float
    task_aggregate: float | None = None  # None: the leaderboard gives the final score only
    mia_score: float | None = None
    mmlu: float | None = None
    place: str = ""  # its rank on the leaderboard ("1st"), or why it has none
    below_threshold: bool = False  # its MMLU fell below the protocol's threshold (75 % of the target's)
