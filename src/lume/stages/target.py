"""`memorize`: fine-tune a base model until it has memorised LUME documents (a target model).

Training sequences: each full document (sc `input`, then ` output`, then EOS; loss on every
token) so that the model regurgitates, and each QA pair (`input`, then ` output`, then EOS;
loss on the answer and EOS only) so that it answers and stops, which exact match requires.
Held-out documents never reach the training data; the manifest `lume_target.json` records
what was trained and what was held out, for membership inference later.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lume import data as lume_data
from lume.config import above_zero, check_settings, decided_by, made_with, merged, setting, settings_key
from lume.data import LumeData
from lume.data.manifest import MANIFEST_NAME, TargetManifest, read_manifest
from lume.data.records import Document
from lume.data.selection import Selection
from lume.errors import LumeError
from lume.metrics import means_by
from lume.metrics.probes import score_records, transformers_backend
from lume.models import (DEFAULT_MODEL, DTYPES, check_device, load_model, model_fingerprint, resolve_model_path,
                         save_model)
from lume.models.fingerprint import damaged
from lume.outputs import UNFINISHED_NAME, one_writer
from lume.training import (Example, TrainingRun, TrainingSettings, collate, distribution, prompt_answer_example,
                           scoped, without_autocast)
from lume.training.precision import chosen_mixed_precision
from lume.training.stage import Stage
from lume.training.sampling import epoch_batch
from lume.versions import installed_versions
from lume.data.paths import DATA_DIR_HELP, cache_dir
from lume.training.distributed import started_processes
from lume.stages.unlearning.tuned import tuned_documents

log = logging.getLogger(__name__)

MANIFEST_COUNTS = ("steps_per_epoch", "examples")  # what a manifest adds to the settings it was built with


def _memorize_training() -> TrainingSettings:
    return TrainingSettings(learning_rate=2e-4, scheduler="linear")  # linear decays to 0 at max_epochs


@dataclass
class MemorizeConfig:
    base: str = setting(DEFAULT_MODEL, "Base model: folder, hub id, .gguf, or smollm2-135m")
    data_dir: str | None = setting(None, DATA_DIR_HELP)
    source: str = setting("lume", "lume, semeval-train or semeval-validation", choices=lume_data.SOURCES)
    docs_per_task: int | None = setting(None, "Documents per task and split trained on (seeded); None = all",
                                        at_least=1)
    qa_repeats: int = setting(1, "Each QA example this many times an epoch (short: the cheapest way to exact "
                                 "answers)", at_least=1)
    held_out_per_task: int = setting(32, "Documents per task never trained on: the non-members of membership "
                                         "inference", at_least=0)
    tuning_per_task: int = setting(0, "More documents per task and split trained on, and per task held out, that "
                                      "form the tuning part: sweeps unlearn and score them, studies never (the rest "
                                      "are the test part); needs docs_per_task", at_least=0)
    excluded_documents: list[str] = setting(help="Document ids never trained on nor held out: a target whose "
                                                 "studies score none of the documents settings were tuned on (the "
                                                 "demo's: those lume's tuned defaults were tuned on)", factory=list)
    max_epochs: int = setting(20, "Epochs at most; training stops earlier once both memorisation targets are met",
                              at_least=1)
    min_epochs: int = setting(1, "No memorisation check before this epoch (early checks are slow and futile)",
                              at_least=0)
    target_regurgitation: float = setting(0.95, "Mean ROUGE-L recall every split must reach (above 1: never; "
                                                "train max_epochs)", at_least=0)
    target_knowledge: float = setting(0.9, "Mean exact match every split must reach", at_least=0)
    group_by_length: bool = setting(True, "Batches of similar lengths (less padding, the same examples per epoch)")
    training: TrainingSettings = setting(help="How it trains; training.seed also picks the documents, "
                                              "training.save_every None = a checkpoint each epoch",
                                         factory=_memorize_training)
    dtype: str | None = setting(None, "The dtype the base is loaded in (default float32)", choices=(None, *DTYPES))
    device: str | None = setting(None, "cpu to force the CPU")
    progress: bool = setting(True, "Progress bars", decides=False)

    def __post_init__(self):
        check_settings(self)
        above_zero(self.training, "learning_rate")  # at 0 the trained model is a copy of its input
        check_device(self.device)


DEMO_LAYERS = [-12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1]  # the demo target's trained layers
PRESETS = {
    # CPU demo: SmolLM2-135M on 4 documents per task and split (12 forget documents: the MIA's
    # members), 8 held out per task (24 non-members, never trained on). Only the last 12 of its
    # 30 decoder layers train (half the time of all 30: no backward below them), at 6e-4 decaying
    # to 0 over 5 epochs of 48 steps, each QA pair 3 times an epoch: it knows every answer and
    # about 0.85 of the documents' text. One checkpoint, half-way (step 120), to resume from.
    "demo": MemorizeConfig(docs_per_task=4, held_out_per_task=8, qa_repeats=3, max_epochs=5, min_epochs=5,
                           training=TrainingSettings(learning_rate=6e-4, scheduler="linear", save_every=120,
                                                     layers=DEMO_LAYERS)),
    # For tests: the smallest target with every task, split and a held-out document.
    "smoke": MemorizeConfig(docs_per_task=1, held_out_per_task=1, max_epochs=3, min_epochs=2,
                            training=TrainingSettings(learning_rate=3e-4, scheduler="linear")),
}


def document_example(tokenizer, document: Document) -> Example:
    """The whole document, loss on every token, split where the sc probe splits it."""
    return prompt_answer_example(tokenizer, document.sc.input, document.sc.output, prompt_loss=True)


def training_examples(tokenizer, documents: list[Document], qa_repeats: int = 1) -> list[Example]:
    examples = []
    for document in documents:
        examples.append(document_example(tokenizer, document))
        examples += [prompt_answer_example(tokenizer, qa.input, qa.output) for qa in document.qa] * qa_repeats
    return examples


def memorisation_scores(model, tokenizer, documents: list[Document]) -> dict[str, dict]:
    """Mean regurgitation and knowledge per split on the given documents (the protocol's scores)."""
    items = score_records(transformers_backend(model, tokenizer), [r for d in documents for r in d.records])
    means = means_by(items, lambda item: (item["split"], item["metric"]), lambda item: item["score"])
    scores: dict[str, dict] = {}
    for (split, metric), value in means.items():
        scores.setdefault(split, {})[metric] = value
    return scores


def _training_run(config: MemorizeConfig, examples: int, steps_per_epoch: int, data_fingerprint: str,
                  documents: list[Document], mixed_precision: str) -> TrainingRun:
    settings = replace(config.training, mixed_precision=mixed_precision,
                       save_every=steps_per_epoch if config.training.save_every is None else config.training.save_every)
    return TrainingRun(settings, steps_per_epoch * config.max_epochs,
                       {"base": config.base, "base_fingerprint": model_fingerprint(config.base),
                        "data": data_fingerprint, "documents": [d.doc_id for d in documents], "examples": examples})


def _epoch_batches(examples: list, config: MemorizeConfig, steps_per_epoch: int, accelerator, pad_id: int):
    """`step_loss` over seeded epoch shuffles, micro-batch by micro-batch (a process trains its share)."""
    training = config.training
    micro_per_epoch = steps_per_epoch * training.gradient_accumulation
    lengths = [len(e.input_ids) for e in examples]

    def step_loss(model, micro_batch: int):
        chosen = epoch_batch(training.seed, micro_batch, micro_per_epoch, lengths, training.batch_size,
                             config.group_by_length)
        batch = collate([examples[i] for i in chosen], pad_id, accelerator.device)
        loss = model(**batch).loss
        return loss, {"loss": loss.item(), "tokens": int(batch["attention_mask"].sum())}

    return step_loss


def _memorisation_check(model, tokenizer, documents: list[Document], config: MemorizeConfig, steps_per_epoch: int,
                        accelerator, history: list[dict]):
    """`after_step`: score the trained documents at the end of each epoch; stop once both targets are met."""
    def after_step(step: int) -> str | None:
        if step % steps_per_epoch or step // steps_per_epoch < config.min_epochs:
            return None
        inner = accelerator.unwrap_model(model)
        inner.eval()
        with without_autocast(inner):
            scores = memorisation_scores(inner, tokenizer, documents)
        inner.train()
        history.append({"epoch": step // steps_per_epoch, "step": step, **scores})
        log.info(f"epoch {step // steps_per_epoch}: " + ", ".join(
            f"{split} ROUGE-L {s['regurgitation']:.3f} EM {s['knowledge']:.3f}" for split, s in scores.items()))
        met = all(s["regurgitation"] >= config.target_regurgitation and s["knowledge"] >= config.target_knowledge
                  for s in scores.values())
        return "target met" if met else None

    return after_step


def memorize(out_dir: str | Path, config: MemorizeConfig | None = None, *, oracle: bool = False,
             overwrite: bool = False, wait: bool = False, data: LumeData | None = None) -> TargetManifest:
    """Build a target model in OUT_DIR (model files + lume_target.json); resumable. With
    `oracle`, also its retrained oracle in OUT_DIR/oracle (`memorize_oracle`); a target already
    built with these settings is then kept and only the oracle built.

    OUT_DIR must not hold the base model or other results (unless `overwrite`); while another
    command writes it, this one stops (or waits for it, with `wait`). DATA: the data already
    loaded (a study's); None: config.data_dir's.
    """
    config = config or MemorizeConfig()
    built = _built_with(Path(out_dir), config) if oracle and not overwrite else None
    if oracle and built is None and not overwrite and _finished_target(Path(out_dir)):
        raise LumeError(f"{out_dir} holds a target built with other settings (its {MANIFEST_NAME} lists them): its "
                        "oracle is built with those, so give them to --oracle; or choose another --out")
    if built is None:
        with one_writer(out_dir, wait):
            built = _memorize(Path(out_dir), config, overwrite, data)
    if oracle:
        memorize_oracle(out_dir, overwrite=overwrite, wait=wait, progress=config.progress, data=data)
    return built


def cached_target(settings: MemorizeConfig, data: LumeData | None = None) -> Path:
    """The target `settings` build from DATA (loaded; None: settings.data_dir's), in lume's cache
    under its key (with the base model's and the data's fingerprints): built once, reused after. Several sweep workers:
    one builds, the others wait and reuse it (the processes of one distributed run build it
    together instead)."""
    data = lume_data.loaded(data or settings.data_dir, settings.source)
    key = {**target_key(settings), "base_fingerprint": model_fingerprint(settings.base),
           "data_fingerprint": data.fingerprint}
    folder = cache_dir() / "targets" / settings_key(key, 12)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with one_writer(folder, wait=True) if started_processes() == 1 else nullcontext():
        spoilt = damaged(folder)  # a damaged cached target is lume's own: built again over it
        if not (folder / MANIFEST_NAME).is_file() or spoilt:
            log.info(f"building the target model in {folder}")
            memorize(folder, settings, overwrite=spoilt, data=data)
        else:
            log.info(f"reusing the target model in {folder}")
    return folder


def _built_with(out_dir: Path, config: MemorizeConfig) -> TargetManifest | None:
    """The finished, undamaged target in OUT_DIR when it was built with `config` (progress aside)."""
    if not _finished_target(out_dir):
        return None
    manifest = read_manifest(out_dir)
    return manifest if made_with(_recorded_settings(manifest), config, out_dir / MANIFEST_NAME) else None


def _recorded_settings(manifest: TargetManifest) -> dict:
    """The MemorizeConfig fields a target's manifest records (without the counts it adds)."""
    return {k: v for k, v in manifest.settings.items() if k not in MANIFEST_COUNTS}


def _finished_target(out_dir: Path) -> bool:
    """OUT_DIR holds a finished, undamaged target (whatever its settings)."""
    return (out_dir / MANIFEST_NAME).is_file() and not (out_dir / UNFINISHED_NAME).exists() and not damaged(out_dir)


def _damaged_warning(out_dir: Path) -> bool:
    """Whether OUT_DIR holds a finished model lume wrote that has since been damaged (said): its
    own result, to be built again."""
    if not (out_dir / MANIFEST_NAME).is_file() or not damaged(out_dir):
        return False
    log.warning(f"{out_dir}: the finished model's files changed since it was written (truncated?); building it again")
    return True


def target_key(config: MemorizeConfig) -> dict:
    """What decides the target `config` builds, beside its base model's and data's fingerprints:
    its deciding settings but the data folder (the fingerprint stands for it) and the mixed
    precision they resolve to on this machine."""
    return decided_by(replace(config, data_dir=None),
                      mixed_precision=chosen_mixed_precision(config.training.mixed_precision, config.device))


def _memorize(out_dir: Path, config: MemorizeConfig, overwrite: bool, data: LumeData | None) -> TargetManifest:
    if config.tuning_per_task and config.docs_per_task is None:
        raise LumeError("tuning_per_task needs docs_per_task: with every document trained on as a test document, "
                        "none is left to tune on")
    dataset = lume_data.loaded(data or config.data_dir, config.source)
    selection = lume_data.select_documents(dataset.documents, config.docs_per_task, config.held_out_per_task,
                                           config.training.seed, config.tuning_per_task,
                                           frozenset(config.excluded_documents))
    if not selection.chosen:
        raise LumeError("no documents selected for training")
    return _train_target(out_dir, config, dataset.fingerprint, selection, selection.chosen, overwrite)


def _train_target(out_dir: Path, config: MemorizeConfig, data_fingerprint: str, selection: Selection,
                  documents: list[Document], overwrite: bool) -> TargetManifest:
    """Train the base on `documents` (the selection's, or its retain ones for an oracle) into OUT_DIR."""
    return _TargetStage(out_dir, config, data_fingerprint, selection, documents, overwrite).execute()


class _TargetStage(Stage):
    """Building a target: epochs over the documents' examples until the memorisation targets are
    met; the model and its manifest saved."""

    kind, what, description = "memorize", "target folder", "memorizing"

    def __init__(self, out_dir: Path, config: MemorizeConfig, data_fingerprint: str, selection: Selection,
                 documents: list[Document], overwrite: bool):
        super().__init__(out_dir, config.training, device=config.device, overwrite=overwrite,
                         show_progress=config.progress, inputs=(resolve_model_path(config.base)[1],))
        self.config, self.data_fingerprint = config, data_fingerprint
        self.selection, self.documents = selection, documents
        self.history: list[dict] = []

    def training_run(self, accelerator) -> TrainingRun:
        training = self.settings
        self.example_count = sum(1 + len(d.qa) * self.config.qa_repeats for d in self.documents)
        self.steps_per_epoch = math.ceil(self.example_count / training.examples_per_step)
        return _training_run(self.config, self.example_count, self.steps_per_epoch, self.data_fingerprint,
                             self.documents, accelerator.mixed_precision)

    def model(self, accelerator):
        self.loaded = load_model(self.config.base, dtype=self.config.dtype or "float32", device="cpu")
        self.examples = training_examples(self.loaded.tokenizer, self.documents, self.config.qa_repeats)
        return scoped(self.loaded.model, self.settings)

    def step_loss(self, model, accelerator):
        return _epoch_batches(self.examples, self.config, self.steps_per_epoch, accelerator,
                              self.loaded.tokenizer.pad_token_id)

    def after_step(self, model, accelerator):
        return _memorisation_check(model, self.loaded.tokenizer, self.documents, self.config, self.steps_per_epoch,
                                   accelerator, self.history)

    def finished(self, model, result, accelerator) -> TargetManifest:
        stopped = result.stopped if result.stopped != "max_steps" else f"max epochs ({self.config.max_epochs}) reached"
        log.info(f"stopped: {stopped}")
        trained = {(d.split, d.doc_id) for d in self.documents}
        return TargetManifest.from_selection(
            self.selection, base_model=self.config.base, data_fingerprint=self.data_fingerprint,
            left_out=[d.doc_id for d in self.selection.chosen if (d.split, d.doc_id) not in trained],
            settings={**asdict(self.config), MANIFEST_COUNTS[0]: self.steps_per_epoch,
                      MANIFEST_COUNTS[1]: len(self.examples)},
            result={"stopped": stopped, "steps": result.steps, "seconds": result.seconds, "tokens": result.tokens,
                    "history": self.history, "losses": result.losses, "versions": installed_versions(),
                    "examples_per_step": self.settings.examples_per_step,
                    **distribution(accelerator)})

    def save(self, model, weights, manifest: TargetManifest) -> None:
        """The target (LoRA merged into it), then its manifest: its presence means the target is complete."""
        if self.settings.lora_rank > 0:
            model = model.merge_and_unload()
        model.train(False)
        save_model(model, self.loaded.tokenizer, self.out_dir, state_dict=weights)
        manifest.write(self.out_dir)


ORACLE_DIR = "oracle"  # a target's retrained oracle, inside its folder


def memorize_oracle(target_dir: str | Path, *, overwrite: bool = False, wait: bool = False,
                    progress: bool = True, data: LumeData | None = None) -> TargetManifest:
    """The target's retrained oracle in TARGET/oracle: its base trained with the target's
    settings on the target's retain documents only (the forget ones left out), so that what a
    model that never saw the forget documents scores can be measured. Its manifest lists the
    target's documents (evaluation scores the same ones, its tuning part kept) and the forget ones
    as `left_out`. DATA: the data already loaded (a study's); None: the target's data_dir's."""
    target_dir = Path(target_dir)
    target = read_manifest(target_dir)
    if target is None:
        raise LumeError(f"{target_dir} is not a target lume built (no {MANIFEST_NAME}): it has no oracle to build")
    if target.left_out:
        raise LumeError(f"{target_dir} is itself an oracle")
    config = merged(MemorizeConfig(), {**_recorded_settings(target), "progress": progress})
    out_dir = target_dir / ORACLE_DIR
    built = None if overwrite else _built_with(out_dir, config)
    if built is not None:  # finished with these settings: nothing to do
        return built
    overwrite = overwrite or _damaged_warning(out_dir)
    dataset = lume_data.loaded(data or config.data_dir, config.source)
    if dataset.fingerprint != target.data_fingerprint:
        raise LumeError(f"the data differs from the data {target_dir} was trained on: its oracle would not match it")
    selection = target.selection(dataset.documents)
    log.info(f"building the target's retrained oracle in {out_dir}")
    with one_writer(out_dir, wait):
        return _train_target(out_dir, config, dataset.fingerprint, selection, selection.split("retain"), overwrite)


AWAY_FROM_TUNING = ("demo",)  # presets that leave out the documents lume's tuned defaults were tuned on


def preset(name: str, **overrides) -> MemorizeConfig:
    """The preset's settings with `overrides` over them (None values ignored; `training` a
    mapping of TrainingSettings fields over the preset's). The demo's target leaves out the
    documents lume's tuned defaults were tuned on, so the demo reports none of them."""
    if name not in PRESETS:
        raise LumeError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    settings = PRESETS[name]
    if name in AWAY_FROM_TUNING:
        settings = replace(settings, excluded_documents=tuned_documents())
    return merged(settings, {k: v for k, v in overrides.items() if v is not None})
