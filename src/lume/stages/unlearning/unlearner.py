"""`unlearn`: remove the forget set from a model with a registered method, keep the retain set.

Forget and retain examples are every record's `input` then ` output` then EOS, with the loss
on the answer (the continuation of an sc row, the answer of a QA row). Each step draws a
forget batch and a retain batch independently, seeded by step and process, so processes of a
distributed run see different examples.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lume import data as lume_data
from lume.config import above_zero, check_settings, coerce_fields, decided_by, identity, setting, settings_key
from lume.data import LumeData, Record, read_records, warn_overlap
from lume.data.manifest import MANIFEST_NAME, read_manifest, target_selection
from lume.data.paths import cache_dir
from lume.data.selection import DOCUMENT_PARTS
from lume.errors import LumeError
from lume.files import read_json, utf8_path, write_json_atomic
from lume.versions import installed_versions
from lume.models import (DTYPES, check_device, load_model, model_fingerprint, refuse_beyond_context, resolve_model_path,
                         save_model)
from lume.outputs import FINISHED_MARKERS, one_writer, refuse_overwriting_inputs
from lume.stages.unlearning.methods import METHODS, Context
from lume.stages.unlearning.methods.base import prime
from lume.stages.unlearning.schedule import EpochBudget, Plan, ScheduleSettings, plan
from lume.stages.unlearning.selection import (BEST_NAME, SELECTIONS, ProbeSettings, Trajectory, validation_indices,
                                             chosen_step, probe, probe_set, selection_score)
from lume.training import (TextSettings, TrainingRun, TrainingSettings, collate, distribution, prompt_answer_example,
                           reference_copy, scoped)
from lume.training.sampling import process_micro_batches
from lume.training.scope import check_layer_indices
from lume.training.stage import Stage
from lume.training.precision import chosen_mixed_precision
from lume.results import ProbeRow, StepChoice, UnlearnReport

REPORT_NAME = FINISHED_MARKERS["unlearn"]


def read_unlearn_report(folder: str | Path) -> UnlearnReport:
    """The report of the unlearning run finished in FOLDER; a missing or damaged one is an
    InputError naming it."""
    path = Path(folder) / REPORT_NAME
    return UnlearnReport.from_json(read_json(path, what="unlearning report"), source=path)


@dataclass
class UnlearnConfig:
    method: str = setting("npo", "A registered method (docs/methods.md) or package.module:Class (docs/plugins.md)")
    method_settings: dict = setting(help="Overrides of the method's Settings (NAME=VALUE, e.g. beta=0.2)",
                                    factory=dict)
    steps: int | None = setting(None, "Optimiser steps; None = the schedule's length (draws: 40; epochs, chunks: "
                                      "their passes)", at_least=1)
    stop_at: int | None = setting(None, "End after this step, the schedule's length and learning-rate decay "
                                        "unchanged: without probes, the model a probed run kept at that step (a "
                                        "sweep's tuned.yaml sets it)", at_least=1)
    stop_fraction: float | None = setting(None, "End after this fraction of the schedule's steps (rounded; its "
                                                "length and learning-rate decay unchanged): a sweep's kept step "
                                                "carried to a forget set of another size, on which epochs and chunks "
                                                "make the schedule longer or shorter (a sweep's tuned.yaml sets it)",
                                          above=0, at_most=1)
    schedule: ScheduleSettings = setting(help="Which examples each step trains on", factory=ScheduleSettings)
    part: str = setting("test", "Which of a target's documents are unlearned and probed (its forget and retain, "
                                "and the probes' held-out ones): test (all, for a lume target without a tuning "
                                "part), or tuning (a sweep's); a released target's tuning part is the SemEval "
                                "public folds, its test part the rest", choices=DOCUMENT_PARTS)
    eval_every: int = setting(0, "Probe the model every N steps (selection data: a document slice, held-out "
                                 "non-members, MMLU dev) and at the last; 0 = never", at_least=0)
    select: str = setting("last", "The step saved: last; best on the probes; or loss, the lowest method loss on "
                                  "probes.validation_rows (both need eval_every)", choices=SELECTIONS)
    probes: ProbeSettings = setting(help="The probes' selection data", factory=ProbeSettings)
    training: TrainingSettings = setting(help="How it trains; batch_size: forget examples per micro-batch "
                                              "(and the retain examples paired with them); seed: also the draws",
                                         factory=TrainingSettings)
    text: TextSettings = setting(help="How each record becomes a sequence: the space before the answer, EOS, "
                                      "truncation", factory=TextSettings)
    dtype: str | None = setting(None, "The dtype the trained weights are held and updated in: None = float32 (a "
                                      "float32 copy, the forward under training.mixed_precision's autocast); "
                                      "bfloat16 or float16: no float32 copy, AdamW updates the weights in that dtype "
                                      "(as AILS-NTUA and SHA256 trained; docs/unlearning.md says what it costs)",
                                choices=(None, *DTYPES))
    device: str | None = setting(None, "cpu to force the CPU")
    progress: bool = setting(True, "Progress bars", decides=False)
    recipe: str | None = setting(None, "The recipe these settings came from (recorded in the report; set by "
                                       "--recipe)", decides=False)

    def __post_init__(self):
        check_settings(self)
        if self.stop_at is not None and self.stop_fraction is not None:
            raise LumeError("stop_at and stop_fraction both say where training ends: give one")
        if self.select != "last" and not self.eval_every:
            raise LumeError(f"select {self.select!r} chooses among probed steps: set eval_every too (e.g. "
                            "--eval-every 5)")
        if self.select == "loss" and not self.probes.validation_rows:
            raise LumeError("select 'loss' measures the method's loss on validation rows: set "
                            "probes.validation_rows too (e.g. 500)")
        above_zero(self.training, "learning_rate")  # at 0 the trained model is a copy of its input
        check_device(self.device)
        self.method_settings = method_settings(self.method, self.method_settings)
        if self.schedule.rows_apart and not METHODS[self.method].one_sided_steps:
            raise LumeError(f"schedule.rows_apart gives steps of forget rows only or retain rows only, which method "
                            f"{self.method!r} does not take (gd does)")


def step_key(config: UnlearnConfig) -> dict:
    """What decides the model `config` unlearns, beside its input model and data: its deciding
    settings and the mixed precision they resolve to on this machine (a study's step record)."""
    return decided_by(config, mixed_precision=chosen_mixed_precision(config.training.mixed_precision, config.device))


def method_settings(name: str, settings: dict | None) -> dict:
    """The settings given for method `name` (a registered name or `package.module:Class`), each
    checked against its Settings field and range (now, not once the model has loaded); an unknown
    name is refused, naming the choices."""
    checked = coerce_fields(METHODS[name].Settings, settings or {}, where="method_settings", source=f"method {name!r}")
    try:
        METHODS[name].Settings(**checked)
    except LumeError as error:
        raise LumeError(f"method {name!r}: method_settings.{error}") from None
    return checked


def build_method(name: str, settings: dict | None = None):
    checked = method_settings(name, settings)
    return METHODS[name](METHODS[name].Settings(**checked))


def check_fits(config: UnlearnConfig, model_config) -> None:
    """Refuse settings a model of MODEL_CONFIG (a transformers config) cannot take, before any
    weight is loaded: a chosen layer it lacks, or a method setting (`Method.check_model`)."""
    check_layer_indices(config.training.layers, model_config.num_hidden_layers)
    build_method(config.method, config.method_settings).check_model(model_config)


def read_split(path: str | Path, split: str) -> list[Record]:
    """Records of a SemEval-style forget or retain set: a file, or a folder of .parquet/.jsonl files."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise LumeError(f"{path}: no .parquet or .jsonl files")
    return [record for file in files for record in read_records(file, split)]


def _fingerprint(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.id}\0{record.input}\0{record.output}\0".encode())
    return digest.hexdigest()[:16]


def manifest_records(model_dir: Path, data: str | Path | LumeData | None = None,
                     part: str = "test") -> tuple[list[Record], list[Record]]:
    """The forget and retain records of PART of a target model's documents (from its manifest; a
    model without one, a released target, has the SemEval folds as its parts: `target_selection`;
    DATA: a data folder, or the data already loaded)."""
    selection = target_selection(read_manifest(model_dir), lume_data.loaded(data)).part(part)
    pick = lambda split: [r for d in selection.split(split) for r in d.records]  # noqa: E731
    return pick("forget"), pick("retain")


def _examples(model, tokenizer, records: list[Record], split: str, text: TextSettings) -> list:
    """Training examples of the records; one beyond the model's context is refused by name."""
    examples = [replace(prompt_answer_example(tokenizer, r.input, r.output, text=text, task=r.task), record=r)
                for r in records]
    refuse_beyond_context(model, ((e.record.id, len(e.input_ids)) for e in examples), f"{split} record")
    return examples


def _training_run(config: UnlearnConfig, method, model_fingerprint: str, forget: list[Record],
                  retain: list[Record], mixed_precision: str, schedule: Plan) -> TrainingRun:
    return TrainingRun(replace(config.training, mixed_precision=mixed_precision), schedule.steps,
                       {"method": config.method, "method_settings": identity(method.settings),
                        "schedule": identity(config.schedule), "text": identity(config.text), "dtype": config.dtype,
                        "model": model_fingerprint,
                        "forget": _fingerprint(forget), "retain": _fingerprint(retain)}, schedule.segments())


def _plan(config: UnlearnConfig, forget: list[Record], retain: list[Record]) -> Plan:
    training = config.training
    return plan(config.schedule, config.steps, len(forget), len(retain), training.batch_size,
                training.gradient_accumulation, [r.doc_id for r in forget], training.seed)


def drawn_forget_examples(schedule: Plan, method, training: TrainingSettings, accelerator, size: int) -> list[int]:
    """The forget examples this process's micro-batches will draw: the only ones whose reference
    quantities a run needs (the draws are seeded, so known in advance)."""
    drawn: dict[int, None] = {}
    per_step = training.gradient_accumulation
    for step in range(schedule.steps):
        pool = method.forget_pool(step, schedule.steps, size)
        for micro_batch in process_micro_batches(step, per_step, accelerator.num_processes, accelerator.process_index):
            drawn.update(dict.fromkeys(schedule.indices(training.seed, micro_batch, pool)[0]))
    return sorted(drawn)


def _step_loss(method, context: Context, config: UnlearnConfig, schedule: Plan, forget_examples: list,
               retain_examples: list, accelerator):
    """The loss of one micro-batch: the schedule's forget and retain examples, then the method's loss."""
    pad_id = context.tokenizer.pad_token_id

    def batch_of(examples: list, indices: list[int]) -> dict:
        return _batch_of(examples, indices, pad_id, accelerator.device)

    def step_loss(model, micro_batch: int):
        training = config.training
        step = micro_batch // training.gradient_accumulation
        pool = method.forget_pool(step, schedule.steps, len(forget_examples))
        forget_indices, retain_indices = schedule.indices(training.seed, micro_batch, pool)
        # a side with no rows (`schedule.rows_apart`) is None
        batches = {"forget": batch_of(forget_examples, forget_indices) if forget_indices else None,
                   "retain": batch_of(retain_examples, retain_indices) if retain_indices else None}
        context.model, context.step = model, step
        primed = [batches[name] for name in method.policy_batches if batches[name] is not None]
        if primed:
            prime(model, primed, pad_id)
        loss, logs = method.loss(context, batches["forget"], batches["retain"])
        tokens = sum(int(batch["attention_mask"].sum()) for batch in batches.values() if batch is not None)
        return loss, {"loss": loss.item(), **logs, "tokens": tokens}

    return step_loss


def _batch_of(examples: list, indices: list[int], pad_id: int, device) -> dict:
    """The examples at `indices` as one batch that knows their indices (for per-example reference values)."""
    batch = collate([examples[i] for i in indices], pad_id, device)
    batch["index"] = torch.tensor(indices, device=device)
    return batch


def _validation(method, context: Context, config: UnlearnConfig, forget_examples: list, retain_examples: list,
                forget: list[Record], retain: list[Record]) -> Callable[[object], float] | None:
    """`select: loss`'s measure of a model: the method's loss, without gradients, on the
    validation rows in batches of `batch_size` forget and as many retain rows (the shorter side
    cycled), averaged over the batches."""
    if config.select != "loss":
        return None
    forget_rows, retain_rows = validation_indices(forget, retain, config.probes)
    size, pad_id = config.training.batch_size, context.tokenizer.pad_token_id
    batches = math.ceil(max(len(forget_rows), len(retain_rows)) / size)
    cycled = lambda rows, b: [rows[(b * size + i) % len(rows)] for i in range(size)]  # noqa: E731

    def validation_loss(model) -> float:
        context.model, device = model, next(model.parameters()).device
        batch = lambda examples, rows, b: _batch_of(examples, cycled(rows, b), pad_id, device)  # noqa: E731
        with torch.no_grad(), context.autocast():
            losses = [method.validation_loss(context, batch(forget_examples, forget_rows, b),
                                             batch(retain_examples, retain_rows, b)).item() for b in range(batches)]
        return sum(losses) / len(losses)

    return validation_loss


def _prepared_model(loaded, method, settings: TrainingSettings, accelerator):
    """The model to train (with LoRA, with the method's parameters chosen) and a frozen reference
    (none with LoRA: the base weights with the adapter switched off are the starting model)."""
    model = loaded.model.to(accelerator.device)
    reference_model = None
    if method.needs_reference_model and settings.lora_rank == 0:
        reference_model = reference_copy(model, accelerator)
    model = scoped(model, settings)
    if settings.lora_rank == 0:
        method.select_parameters(model)
    return model, reference_model


def _forget_and_retain(model_in, forget, retain, data, part: str) -> tuple[list[Record], list[Record]]:
    """The given sets, else those of PART of the target's manifest; both non-empty, overlap warned of."""
    if part == "tuning" and forget is not None:
        raise LumeError("part tuning names a lume target's tuning documents: give no forget and retain sets")
    if forget is None or retain is None:
        forget, retain = manifest_records(Path(model_in), data, part)
    if not forget or not retain:
        raise LumeError("the forget and retain sets must both be non-empty")
    warn_overlap(forget, retain)
    return forget, retain


def _report(config: UnlearnConfig, method, model_in, loaded, forget, retain, result, started: float,
            accelerator) -> UnlearnReport:
    return UnlearnReport(method=config.method, method_settings=asdict(method.settings), config=asdict(config),
                         model_in=str(model_in), model_in_fingerprint=loaded.fingerprint,
                         forget={"records": len(forget), "fingerprint": _fingerprint(forget)},
                         retain={"records": len(retain), "fingerprint": _fingerprint(retain)},
                         steps=result.steps, stopped=None if result.stopped == "max_steps" else result.stopped,
                         losses=result.losses, seconds=time.time() - started,
                         train_seconds=result.seconds, tokens=result.tokens,
                         tokens_per_second=result.tokens / max(result.seconds, 1e-9),
                         peak_memory_mb=result.peak_memory_mb, device=str(accelerator.device),
                         versions=installed_versions(),
                         examples_per_step=config.training.examples_per_step,
                         **distribution(accelerator))


def _trajectory(config: UnlearnConfig, out_dir: Path, run: TrainingRun, forget: list[Record],
                retain: list[Record], model_in, data, accelerator, validation=None
                ) -> Trajectory | None:
    """Probes every `eval_every` steps on the run's selection data; None when off."""
    if not config.eval_every:
        return None
    probes, held_out = _selection_data(config, forget, retain, model_in, data)
    key = {"run": run.key(), "probes": identity(config.probes), "select": config.select, "data": probes.describe()}
    start = {"model": run.identity["model"], "probes": identity(config.probes), "forget": run.identity["forget"],
             "retain": run.identity["retain"], "held_out": sorted(d.doc_id for d in held_out),
             "device": accelerator.device.type}
    start_key = settings_key(start)
    return Trajectory(out_dir, key, probes, config.select, accelerator, cache_dir() / "probes" / f"{start_key}.json",
                      validation)


def _selection_data(config: UnlearnConfig, forget: list[Record], retain: list[Record], model_in, data):
    """(the probes, their held-out non-members): slices of the run's forget and retain records, the
    held-out documents of its part of a lume target's, MMLU dev questions."""
    dataset = lume_data.loaded(data)
    manifest = read_manifest(model_in) if Path(model_in).is_dir() else None
    held_out = manifest.selection(dataset.documents).part(config.part).held_out if manifest else []
    mmlu_dir = dataset.data_dir / "mmlu"
    return probe_set(forget, retain, held_out, mmlu_dir if mmlu_dir.is_dir() else None, config.probes), held_out


def probed(model_dir, model_in, config: UnlearnConfig, step: int, data=None) -> ProbeRow:
    """MODEL_DIR probed once on the selection data a run of CONFIG from target MODEL_IN probes: the
    model a recipe merged, which no run probed as it was made (a sweep's trial of it)."""
    forget, retain = manifest_records(Path(model_in), data, config.part)
    probes, _ = _selection_data(config, forget, retain, model_in, data)
    loaded = load_model(model_dir, dtype="float32", device=config.device)
    with torch.no_grad():
        row = probe(loaded.model.eval(), loaded.tokenizer, probes, step)
    return replace(row, selection_score=selection_score(row))


def _probing(trajectory: Trajectory | None, config: UnlearnConfig, last_step: int, model, tokenizer, accelerator,
             on_probe: Callable[[int, dict], None]):
    """`after_step` for the loop: probe every `eval_every` steps and at the last one."""
    def after_step(step: int) -> None:
        if trajectory is None or (step % config.eval_every and step != last_step):
            return
        on_probe(step, trajectory.measure(accelerator.unwrap_model(model), tokenizer, step))

    return after_step


def _selected(trajectory: Trajectory | None, config: UnlearnConfig, model) -> dict:
    """The report's probe rows and chosen step; the chosen step's weights put back into `model`."""
    if trajectory is None:
        return {}
    rows = trajectory.rows()
    chosen = chosen_step(rows, config.select)
    trajectory.restore_chosen(model, chosen)
    return {"probes": rows, "probe_seconds": sum(row.seconds or 0.0 for row in rows),
            "selection": StepChoice(**chosen, data=trajectory.probes.describe(), criterion=CRITERIA[config.select])}


CRITERIA = {"last": "the last step", "best": "final-score formula on the probes; MMLU (dev) at least 75 % of the "
                                             "starting model's",
            "loss": "lowest method loss on the validation rows (drawn from the training rows)"}


class _UnlearnStage(Stage):
    """Unlearning: the method's loss on the schedule's forget and retain examples, probed as it
    trains when asked; the model (and its adapter), the target's manifest and the report saved."""

    kind, what = "unlearn", "MODEL_OUT"
    scratch = (BEST_NAME,)

    def __init__(self, model_in, out_dir: Path, config: UnlearnConfig, method, forget: list[Record],
                 retain: list[Record], data, overwrite: bool, on_probe):
        super().__init__(out_dir, config.training, device=config.device, overwrite=overwrite,
                         show_progress=config.progress, inputs=(resolve_model_path(model_in)[1],))
        self.model_in, self.config, self.method, self.forget, self.retain = model_in, config, method, forget, retain
        self.data, self.on_probe = data, on_probe
        self.description = f"unlearning ({config.method})"
        if config.recipe:  # a recipe's runs (their folders named by run) each say which one they are
            run = "" if out_dir.name == config.recipe else f" {out_dir.name}"
            self.description = f"unlearning ({config.recipe}{run}: {config.method})"

    def whole_weights_for(self) -> list[str]:
        return super().whole_weights_for() + [f"select {self.config.select}"] * (self.config.select != "last")

    def find_unused_parameters(self) -> bool:
        return self.method.leaves_weights_without_gradient

    def training_run(self, accelerator) -> TrainingRun:
        self.schedule = _plan(self.config, self.forget, self.retain)
        self.run = _training_run(self.config, self.method, model_fingerprint(self.model_in), self.forget, self.retain,
                                 accelerator.mixed_precision, self.schedule)
        return self.run

    def model(self, accelerator):
        """The model to train, its examples, and the method prepared (its reference quantities)."""
        training = self.settings
        self.loaded = load_model(self.model_in, dtype=self.config.dtype or "float32", device="cpu")
        tokenizer = self.loaded.tokenizer
        self.forget_examples = _examples(self.loaded.model, tokenizer, self.forget, "forget", self.config.text)
        self.retain_examples = _examples(self.loaded.model, tokenizer, self.retain, "retain", self.config.text)
        model, reference_model = _prepared_model(self.loaded, self.method, self.run.settings, accelerator)
        self.context = Context(model, tokenizer, self.forget_examples,
                               lambda ex: collate(ex, tokenizer.pad_token_id, accelerator.device),
                               reference_model=reference_model, batch_size=training.batch_size,
                               autocast=accelerator.autocast, unwrap=accelerator.unwrap_model)
        self.context.steps_per_epoch = plan(ScheduleSettings(kind="epochs"), None, len(self.forget), len(self.retain),
                                            training.batch_size, training.gradient_accumulation).steps
        self.context.drawn = drawn_forget_examples(self.schedule, self.method, training, accelerator, len(self.forget))
        with accelerator.autocast():  # reference quantities in the precision the trained forward runs in
            self.method.prepare(self.context)
        return model

    def before_training(self, model, accelerator) -> None:
        """The probes' trajectory, and step 0 probed; the training time counts from here."""
        validation = _validation(self.method, self.context, self.config, self.forget_examples, self.retain_examples,
                                 self.forget, self.retain)
        self.trajectory = _trajectory(self.config, self.out_dir, self.run, self.forget, self.retain, self.model_in,
                                      self.data, accelerator, validation)
        self.probing = _probing(self.trajectory, self.config, self.run.max_steps, model, self.loaded.tokenizer,
                                accelerator, self.on_probe)
        self.probing(0)
        if accelerator.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(accelerator.device)
        self.started = time.time()

    def step_loss(self, model, accelerator):
        return _step_loss(self.method, self.context, self.config, self.schedule, self.forget_examples,
                          self.retain_examples, accelerator)

    def after_step(self, model, accelerator):
        return self.probing

    def stateful(self):
        return self.method

    def budget(self):
        """Where training ends before the schedule does: `stop_at` (or `stop_fraction` of the
        schedule), or the time budget."""
        epochs = EpochBudget(self.schedule) if self.config.schedule.max_seconds else None
        stop_at = self.config.stop_at
        if self.config.stop_fraction is not None:
            stop_at = max(1, round(self.config.stop_fraction * self.run.max_steps))
        if stop_at is None:
            return epochs
        return lambda step, seconds: (f"stop_at: step {stop_at}" if step >= stop_at
                                      else epochs(step, seconds) if epochs else None)

    def finished(self, model, result, accelerator) -> UnlearnReport:
        """The report; with `select: best`, the chosen step's weights put back into the model."""
        return replace(_report(self.config, self.method, self.model_in, self.loaded, self.forget, self.retain,
                               result, self.started, accelerator),
                       **_selected(self.trajectory, self.config, accelerator.unwrap_model(model)))

    def save(self, model, weights, report: UnlearnReport) -> None:
        """The model (and the adapter, for `lume merge`), the target's manifest (evaluation scores
        the same documents), then the report: its presence means the model is complete."""
        if self.settings.lora_rank > 0:
            (self.out_dir / "adapter").mkdir(parents=True, exist_ok=True)
            with utf8_path(self.out_dir / "adapter") as adapter:
                model.save_pretrained(adapter)
            model = model.merge_and_unload()
        save_model(model, self.loaded.tokenizer, self.out_dir, state_dict=weights)
        if (Path(self.model_in) / MANIFEST_NAME).is_file():
            shutil.copy(Path(self.model_in) / MANIFEST_NAME, self.out_dir / MANIFEST_NAME)
        write_json_atomic(self.out_dir / REPORT_NAME, report.to_json())


def unlearn(model_in: str | Path, out_dir: str | Path, config: UnlearnConfig | None = None, *,
            forget: list[Record] | None = None, retain: list[Record] | None = None,
            data: str | Path | LumeData | None = None, overwrite: bool = False, wait: bool = False,
            on_probe: Callable[[int, dict], None] = lambda _step, _row: None) -> UnlearnReport:
    """Unlearn `forget` from MODEL_IN and write the model and `lume_unlearn.json` to OUT_DIR.

    OUT_DIR must not hold the input or other results (unless `overwrite`); an unfinished run
    of the same settings there is resumed from its last checkpoint; while another command
    writes it, this one stops (or waits, with `wait`). With `eval_every`, the model is probed
    as it trains (`on_probe(step, row)` sees each row; a sweep prunes there). DATA: the data
    folder (default: the resolved one), or the data already loaded (a study's).
    """
    with one_writer(out_dir, wait):
        return _unlearn(model_in, Path(out_dir), config or UnlearnConfig(), forget, retain, data, overwrite,
                        on_probe)


def _unlearn(model_in, out_dir: Path, config: UnlearnConfig, forget, retain, data, overwrite: bool,
             on_probe) -> UnlearnReport:
    method = build_method(config.method, config.method_settings)
    refuse_overwriting_inputs(out_dir, (resolve_model_path(model_in)[1],), "MODEL_OUT")
    forget, retain = _forget_and_retain(model_in, forget, retain, data, config.part)
    return _UnlearnStage(model_in, out_dir, config, method, forget, retain, data, overwrite, on_probe).execute()
