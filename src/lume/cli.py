"""The `lume` command: a thin layer over the Python API."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from lume.errors import LumeError
from lume.registry import plugin_names

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build, unlearn and evaluate models on the LUME benchmark.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect, validate and fetch the LUME data.")
app.add_typer(data_app, name="data")
console = Console(quiet=os.environ.get("RANK", "0") != "0")  # one report per run, not per process
log = logging.getLogger("lume")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _OneLine(logging.Formatter):
    """Information as it is; warnings and worse marked as lume's (errors are printed by `main`)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"lume: {record.levelname.lower()}: {text}"


def set_up_logging(quiet: bool = False, verbose: bool = False) -> None:
    """lume's messages on stderr at the level asked (-q: errors only, also no progress bars;
    -v: debug; else $LUME_LOG_LEVEL, default INFO). Under several processes only the main one
    logs below ERROR, unless $LUME_LOG_ALL_PROCESSES is set."""
    level = os.environ.get("LUME_LOG_LEVEL", "INFO").upper()
    if level not in LEVELS:
        raise LumeError(f"LUME_LOG_LEVEL={level!r}: expected one of {', '.join(LEVELS)}")
    level = "ERROR" if quiet else "DEBUG" if verbose else level
    if os.environ.get("RANK", "0") != "0" and not os.environ.get("LUME_LOG_ALL_PROCESSES"):
        level = "ERROR"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    log.handlers[:] = [handler]
    log.propagate = False  # a library that configured the root logger would print each line twice
    log.setLevel(level)
    _library_output(quiet, verbose)


# Libraries whose lines are detail to a lume user (accelerate's "Removed shared tensor" on each save)
DETAIL_LOGGERS = ("accelerate", "transformers", "huggingface_hub", "peft")


def _library_output(quiet: bool, verbose: bool) -> None:
    """lume's own progress bars are the ones a user sees: the libraries' bars (transformers'
    "Loading weights", "Writing model shards") and their info lines only under -v; with -q
    their warnings go too. Set each time, as the process's previous command may have changed it."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0" if verbose else "1"  # read by transformers when imported
    (enable_progress_bars if verbose else disable_progress_bars)()
    if "transformers" in sys.modules:  # it read the setting when imported
        bars = sys.modules["transformers"].utils.logging
        (bars.enable_progress_bar if verbose else bars.disable_progress_bar)()
    for name in DETAIL_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if quiet:
        logging.getLogger().setLevel(logging.ERROR)


@app.callback()
def options(quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final table")] = False,
            verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug detail too")] = False):
    """Build, unlearn and evaluate models on the LUME benchmark."""
    set_up_logging(quiet, verbose)

DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Data folder (default: $LUME_DATA_DIR, ../shared/data, the cache).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace what the output folder holds (it is refused otherwise)")]
Wait = Annotated[bool, typer.Option(
    "--wait", help="While another lume command writes the output folder, wait for it (default: stop at once)")]
BatchSize = Annotated[Optional[int], typer.Option(help="Examples per step (unlearning: forget ones, as many retain)")]
LearningRate = Annotated[Optional[float], typer.Option(help="AdamW's learning rate")]
Accumulation = Annotated[Optional[int], typer.Option("--gradient-accumulation", help="Micro-steps per step")]
LoraRank = Annotated[Optional[int], typer.Option(help="LoRA rank; 0 = full fine-tuning")]
Checkpointing = Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")]
Device = Annotated[Optional[str], typer.Option(help="cpu to force the CPU")]
MixedPrecision = Annotated[Optional[str], typer.Option(
    help="auto (default: bf16 autocast where the device computes bf16 natively, else float32), bf16, fp16 or no")]
LogWith = Annotated[Optional[str], typer.Option(
    help="Log training to an accelerate tracker (tensorboard, wandb, mlflow ...) under OUT/logs; off by default")]
MethodName = Annotated[Optional[str], typer.Option(
    "--method", help=", ".join(["ga", "gd", "kl", "npo", "npo+gd", "npo+kl", "npo+kl+gd", "simnpo", "rmu", "idk",
                                "altpo", "sequential-gd", "adaptive-gd", "wga", "satimp", "undial", "ce-u", "pdu",
                                *plugin_names("lume.methods")])
    + " (docs/methods.md), or package.module:Class (docs/plugins.md)")]
RecipeName = Annotated[Optional[str], typer.Option(
    "--recipe", help="A SemEval-2025 system instead of a method: " + ", ".join(
        ["ails-ntua", "zjuklab", "sha256", "adaptive-rmu", *plugin_names("lume.recipes")])
    + " (docs/recipes.md); the other options given override its settings")]
RecipeTarget = Annotated[Optional[str], typer.Option(
    "--recipe-target", help="Which of the recipe's settings: auto (by MODEL_IN), olmo-1b, olmo-7b or lume "
                            "(a target lume built)")]
Setting = Annotated[list[str], typer.Option(
    "--setting", help="Any other setting NAME=VALUE (repeatable); nested ones dotted, e.g. training.weight_decay=0.01")]


def _name_values(values: list[str], option: str) -> dict:
    """`NAME=VALUE` pairs as a (nested, for dotted names) mapping, each VALUE read as YAML."""
    import yaml

    parsed: dict = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise LumeError(f"{option} {value!r}: expected NAME=VALUE")
        *outer, last = name.split(".")
        place = parsed
        for part in outer:
            place = place.setdefault(part, {})
        place[last] = yaml.safe_load(text)
    return parsed


def given_values(cls, given: dict, settings: list[str]) -> dict:
    """The options given on the command line (None = not given) and every `--setting`, as
    checked fields of config dataclass `cls`; a given TrainingSettings field goes to its
    `training`. Values are checked as a YAML file's are."""
    import dataclasses

    from lume.config import coerce_fields
    from lume.training import TrainingSettings

    values = {key: value for key, value in given.items() if value is not None}
    own = {f.name for f in dataclasses.fields(cls)}
    training = {key: values.pop(key) for key in list(values)
                if key not in own and key in {f.name for f in dataclasses.fields(TrainingSettings)}}
    if training:
        values["training"] = training
    extra = _name_values(settings, "--setting")
    for key, value in extra.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return coerce_fields(cls, values, source="the command line")


def configured(defaults, given: dict, settings: list[str]):
    """`defaults` (a config dataclass, its defaults or a preset) with the options given on the
    command line and every `--setting` (see `given_values`)."""
    from lume.config import merged

    return merged(defaults, given_values(type(defaults), given, settings))


@data_app.command("info")
def data_info(data_dir: DataDir = None,
              source: Annotated[str, typer.Option(help="lume, semeval-train or semeval-validation")] = "lume"):
    """Counts of rows by split, task and kind, and documents per task."""
    from lume import data

    loaded = data.load(data_dir, source)
    counts = loaded.counts()
    console.print(f"data: {loaded.data_dir} (source {source}, fingerprint {loaded.fingerprint})")
    table = Table("split", "task", "sc rows", "qa rows", "rows", "documents", "qa per doc")
    for split in data.SPLITS:
        total_rows = total_docs = 0
        for task in data.TASKS:
            sc, qa = counts["rows"][(split, task, "sc")], counts["rows"][(split, task, "qa")]
            docs = counts["documents"][(split, task)]
            total_rows, total_docs = total_rows + sc + qa, total_docs + docs
            table.add_row(split, task, str(sc), str(qa), str(sc + qa), str(docs),
                          f"{qa / docs:.2f}" if docs else "-")
        table.add_row(split, "all", "", "", str(total_rows), str(total_docs), "", end_section=True)
    console.print(table)


@data_app.command("validate")
def data_validate(files: Annotated[list[Path], typer.Argument(help="JSONL or parquet files")]):
    """Check files against the LUME schema; the first problem is reported with file, line and field."""
    from lume.data import read_records

    for path in files:
        records = read_records(path)
        log.info(f"{path}: ok ({len(records)} rows)")


@data_app.command("fetch")
def data_fetch(target: Annotated[Optional[Path], typer.Option(help="Folder to fill (default: the cache)")] = None):
    """Download the LUME release from its public GitHub location into the cache."""
    from lume.data.fetch import fetch_release

    folder = fetch_release(target)
    log.info(f"LUME release ready in {folder}")


@app.command("evaluate")
def evaluate_command(
    model: Annotated[str, typer.Argument(
        help="Model folder, hub id, .gguf file, or a built-in: smollm2-135m, lume-olmo-1b, lume-olmo-7b")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumes if it exists)")] = Path("runs/eval"),
    data_dir: DataDir = None,
    source: Annotated[Optional[str], typer.Option(help="lume, semeval-train or semeval-validation")] = None,
    docs_per_task: Annotated[Optional[int], typer.Option(help="Documents per task and split (seeded)")] = None,
    seed: Optional[int] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Prompts decoded together")] = None,
    max_new_tokens: Optional[int] = None,
    early_exit: Annotated[Optional[bool], typer.Option("--early-exit/--no-early-exit",
                                                       help="Stop QA rows that can no longer match")] = None,
    backend: Annotated[Optional[str], typer.Option(help=", ".join(
        ["hf (transformers)", "vllm (if installed; GPU)", *plugin_names("lume.backends")])
        + ", or package.module:Class")] = None,
    section: Annotated[Optional[list[str]], typer.Option(
        help=", ".join(plugin_names("lume.sections") or ["none installed"])
        + ": a plug-in section to run beside the protocol's, or package.module:Class (repeatable)")] = None,
    mia: Annotated[Optional[bool], typer.Option("--mia/--no-mia", help="Membership inference")] = None,
    mia_set: Annotated[Optional[str], typer.Option(
        help="final or validation SemEval MIA files, or none (a lume target's held-out documents alone)")] = None,
    mmlu: Annotated[Optional[bool], typer.Option("--mmlu/--no-mmlu", help="MMLU 5-shot")] = None,
    mmlu_dir: Annotated[Optional[str], typer.Option(help="Hendrycks-layout MMLU folder")] = None,
    mmlu_limit: Annotated[Optional[int], typer.Option(help="Questions per subject (seeded)")] = None,
    mmlu_subjects: Annotated[Optional[int], typer.Option(help="Subjects (seeded); default all 57")] = None,
    target_mmlu: Annotated[Optional[float], typer.Option(help="The target model's MMLU, for the 75% flag")] = None,
    dtype: Annotated[Optional[str], typer.Option(
        help="float32, bfloat16, float16 or auto (the checkpoint's) for every part; default: the reference's per "
             "part on a GPU (generation and MIA bfloat16, MMLU auto), float32 on a CPU")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ...")] = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    """Score a model with the official LUME protocol (plus extra attacks beside it)."""
    from lume.reports import summary_table
    from lume.stages.evaluation import EvalConfig, evaluate

    config = configured(EvalConfig(), dict(
        data_dir=str(data_dir) if data_dir else None, source=source, docs_per_task=docs_per_task, seed=seed,
        max_new_tokens=max_new_tokens, batch_size=batch_size, early_exit=early_exit, backend=backend, mia=mia,
        mia_set=mia_set, mmlu=mmlu, mmlu_dir=mmlu_dir, mmlu_limit=mmlu_limit, mmlu_subjects=mmlu_subjects,
        target_mmlu=target_mmlu, dtype=dtype, sections=section,
        device=device), setting)
    summary = evaluate(model, out, config, overwrite=overwrite, wait=wait)
    console.print(summary_table(summary))
    log.info(f"written: {out}/summary.json, {out}/items.jsonl")


@app.command("memorize")
def memorize_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the target model (resumes if it exists)")],
    base: Annotated[Optional[str], typer.Option(help="Base model: folder, hub id, .gguf, or smollm2-135m")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Settings preset: demo or smoke")] = None,
    data_dir: DataDir = None,
    docs_per_task: Annotated[Optional[int], typer.Option(
        help="Documents per task and split (seeded); default all")] = None,
    held_out_per_task: Annotated[Optional[int], typer.Option(help="Documents per task never trained on")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(
        help="Epochs at most; training stops earlier once both memorisation targets are met")] = None,
    batch_size: BatchSize = None,
    gradient_accumulation: Accumulation = None,
    learning_rate: LearningRate = None,
    lora_rank: LoraRank = None,
    gradient_checkpointing: Checkpointing = None,
    target_regurgitation: Annotated[Optional[float], typer.Option(
        help="Mean ROUGE-L recall every split must reach")] = None,
    target_knowledge: Annotated[Optional[float], typer.Option(
        help="Mean exact match every split must reach")] = None,
    seed: Optional[int] = None,
    device: Device = None,
    mixed_precision: MixedPrecision = None,
    log_with: LogWith = None,
    oracle: Annotated[bool, typer.Option(
        "--oracle", help="Also build its retrained oracle in OUT/oracle: the same settings, the forget documents "
                         "left out (a target already built so is kept)")] = False,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    """Fine-tune a base model until it has memorised LUME documents: a target to unlearn from."""
    from lume.stages.target import MemorizeConfig, memorize, preset as memorize_preset

    config = configured(memorize_preset(preset) if preset else MemorizeConfig(), dict(
        base=base, data_dir=str(data_dir) if data_dir else None, docs_per_task=docs_per_task,
        held_out_per_task=held_out_per_task, max_epochs=max_epochs, batch_size=batch_size,
        gradient_accumulation=gradient_accumulation, learning_rate=learning_rate, lora_rank=lora_rank,
        gradient_checkpointing=gradient_checkpointing, target_regurgitation=target_regurgitation,
        target_knowledge=target_knowledge, seed=seed, device=device, mixed_precision=mixed_precision,
        log_with=log_with), setting)
    manifest = memorize(out, config, oracle=oracle, overwrite=overwrite, wait=wait)
    log.info(f"target written to {out} ({manifest.result['stopped']}; "
             f"{sum(len(v) for v in manifest.trained.values())} documents trained, {len(manifest.held_out)} held out)"
             + (f"; its oracle in {out}/oracle" if oracle else ""))


def _unlearning_sets(paths: list[str]):
    """(model in, model out, forget, retain) from `MODEL_IN MODEL_OUT` or the SemEval order."""
    from lume.stages.unlearning import read_split

    if len(paths) == 2:
        return paths[0], paths[1], None, None
    if len(paths) == 4:
        model_in, retain_path, forget_path, model_out = paths
        return model_in, model_out, read_split(forget_path, "forget"), read_split(retain_path, "retain")
    raise LumeError("expected MODEL_IN MODEL_OUT or MODEL_IN RETAIN FORGET MODEL_OUT")


@app.command("unlearn")
def unlearn_command(
    paths: Annotated[list[str], typer.Argument(
        help="MODEL_IN MODEL_OUT (forget/retain from the target's manifest) or, as in SemEval, "
             "MODEL_IN RETAIN FORGET MODEL_OUT (files or folders of .parquet/.jsonl)")],
    method: MethodName = None,
    recipe: RecipeName = None,
    recipe_target: RecipeTarget = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="Method setting NAME=VALUE (repeatable), e.g. beta=0.2")] = [],
    steps: Optional[int] = None,
    save_every: Annotated[Optional[int], typer.Option(
        help="Checkpoint every N steps to resume from (0 = none)")] = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    gradient_accumulation: Accumulation = None,
    lora_rank: LoraRank = None,
    gradient_checkpointing: Checkpointing = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of the training and of each step's forget and retain draws")] = None,
    eval_every: Annotated[Optional[int], typer.Option(
        help="Probe the model every N steps (selection data: a document slice, held-out non-members, "
             "MMLU dev); 0 = never")] = None,
    select: Annotated[Optional[str], typer.Option(
        help="The step saved: last, or best on the probes (needs --eval-every)")] = None,
    data_dir: DataDir = None,
    device: Device = None,
    mixed_precision: MixedPrecision = None,
    log_with: LogWith = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    """Unlearn the forget set from a model with a registered method, or with a recipe (a whole
    SemEval-2025 system: its method, which weights train, data schedule, runs and merge)."""
    given = dict(method_settings=_name_values(set_, "--set") or None, steps=steps, batch_size=batch_size,
                 learning_rate=learning_rate, gradient_accumulation=gradient_accumulation, lora_rank=lora_rank,
                 gradient_checkpointing=gradient_checkpointing, save_every=save_every, seed=seed, device=device,
                 mixed_precision=mixed_precision, log_with=log_with, eval_every=eval_every, select=select)
    report = _unlearned(paths, method, recipe, recipe_target, given, setting,
                        dict(data_dir=str(data_dir) if data_dir else None, overwrite=overwrite, wait=wait))
    log.info(_unlearned_line(report, paths[-1]))


def _unlearned_line(report: dict, model_out: str) -> str:
    if "runs" in report:  # a recipe whose runs were merged
        return (f"unlearned model written to {model_out} (recipe {report['recipe']}: {len(report['runs'])} runs of "
                f"{report['steps']} steps in all, merged by {report['merge']['combination']})")
    chosen = f", step {report['selection']['step']} chosen" if "selection" in report else ""
    return (f"unlearned model written to {model_out} ({report['steps']} steps{chosen}, "
            f"{report['tokens_per_second']:.0f} tokens/s, final loss {report['losses'][-1]['loss']:.4f})")


def _unlearned(paths: list[str], method, recipe, recipe_target, given: dict, setting: list[str], options: dict) -> dict:
    """`lume unlearn`'s run: with a method, or with a recipe whose settings the given options override."""
    from lume.stages.unlearning import UnlearnConfig, unlearn
    from lume.stages.unlearning.recipes.run import unlearn_with_recipe

    model_in, model_out, forget, retain = _unlearning_sets(paths)
    if recipe:
        if method:
            raise LumeError("--method and --recipe: give one (a recipe names its own method)")
        return unlearn_with_recipe(model_in, model_out, recipe, given_values(UnlearnConfig, given, setting),
                                   target=recipe_target or "auto", forget=forget, retain=retain, **options)
    if recipe_target:
        raise LumeError("--recipe-target chooses a recipe's settings: give --recipe too")
    config = configured(UnlearnConfig(method=method or UnlearnConfig.method), given, setting)
    return unlearn(model_in, model_out, config, forget=forget, retain=retain, **options)


@app.command("merge")
def merge_command(
    base: Annotated[str, typer.Argument(help="The model the adapters were trained from")],
    adapters: Annotated[list[Path], typer.Argument(help="Adapter folders (OUT/adapter of `unlearn --lora-rank`)")],
    out: Annotated[Path, typer.Option("--out", "-o")],
    combination: Annotated[Optional[str], typer.Option(help="ties (default) or linear (weighted sum)")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Comma-separated weights, one per adapter")] = None,
    density: Annotated[Optional[float], typer.Option(help="TIES: share of each adapter's weights kept (0.5)")] = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    """Merge LoRA adapters into one model (TIES or weighted sum)."""
    from lume.stages.unlearning.merge import MergeConfig, merge_adapters

    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise LumeError(f"--weights {weights!r}: expected comma-separated numbers") from None
    config = configured(MergeConfig(), dict(combination=combination, weights=parsed, density=density), setting)
    merge_adapters(base, adapters, out, config, overwrite=overwrite, wait=wait)
    log.info(f"merged model written to {out}")


@app.command("run")
def run_command(config: Annotated[Optional[Path], typer.Argument(
        help="YAML study config; none = the built-in demo")] = None, wait: Wait = False,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Redo the steps whose folders hold results they cannot resume; empty a folder that "
                                "is not a lume study")] = False):
    """A whole study: build or reuse the target, unlearn with each method, evaluate all, report."""
    from lume.pipeline import load_config, run

    out = run(load_config(config), wait=wait, overwrite=overwrite)
    log.info(f"report: {out / 'report.md'} and {out / 'report.html'}")


@app.command("sweep")
def sweep_command(config: Annotated[Path, typer.Argument(help="YAML sweep config (see configs/demo-sweep.yaml)")]):
    """Search each method's settings with Optuna on the probes, evaluate each method's best, report.

    Start it again to continue an interrupted sweep, or several times at once (sharing the
    config's `storage`) to run trials in parallel."""
    from lume.sweep import load_sweep, sweep

    out = sweep(load_sweep(config))
    log.info(f"sweep: {out / 'sweep.json'}; report: {out / 'report.md'} and {out / 'report.html'}")


@app.command("report")
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (with eval/*) or evaluation folders")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write report.md/html")] = None,
):
    """Leaderboard (Markdown) and a self-contained HTML report with figures."""
    from lume.reports.study import write_report

    eval_dirs = []
    for folder in run_dirs:
        found = sorted((p.parent for p in folder.glob("eval/*/summary.json")),
                       key=lambda p: (p.name != "target", p.name))
        eval_dirs += found or [folder]
    markdown_file, html_file = write_report(eval_dirs, out or run_dirs[0])
    console.print(markdown_file.read_text().split("\n## Figures")[0])
    log.info(f"written: {markdown_file}, {html_file}")


@app.command("attack")
def attack_command(
    model: Annotated[Path, typer.Argument(help="The unlearned model folder")],
    target: Annotated[Path, typer.Option(help="The target model it was unlearned from")],
    attack: Annotated[list[str], typer.Option(
        help=", ".join(["relearn", "relearn-public", "quantize-8", "quantize-4", "probe",
                        *plugin_names("lume.attacks")]) + ", or package.module:Class (repeatable)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for attacks.json")] = Path("runs/attack"),
    relearn_steps: Optional[int] = None,
    relearn_learning_rate: Optional[float] = None,
    mmlu: Annotated[Optional[bool], typer.Option("--mmlu/--no-mmlu", help="The MMLU change of each attack")] = None,
    mmlu_limit: Annotated[Optional[int], typer.Option(help="MMLU questions per subject (seeded; default 1)")] = None,
    seed: Optional[int] = None,
    data_dir: DataDir = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    """Does the forgotten knowledge come back? Attack an unlearned model and measure what returns."""
    from lume.reports import robustness_table
    from lume.stages.attacks import AttackConfig, attack as run_attacks

    relearn = {"learning_rate": relearn_learning_rate} if relearn_learning_rate is not None else None
    config = configured(AttackConfig(), dict(data_dir=str(data_dir) if data_dir else None, seed=seed,
                                             relearn_steps=relearn_steps, relearn=relearn, mmlu=mmlu,
                                             mmlu_limit=mmlu_limit),
                        setting)
    results = run_attacks(model, target, out, attack, config, overwrite=overwrite, wait=wait)
    console.print(robustness_table({model.name: results}))
    log.info(f"written: {out}/attacks.json")


def _end_process_group() -> None:
    """Close torch.distributed's process group (torchrun runs) before the interpreter exits: one
    left to the exit could abort the process ("terminate called without an active exception")."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


# What a full or read-only disk raises: the user's to fix, so one line (and what to do), not a traceback.
DISK_ERRORS = {errno.ENOSPC: "make room", errno.EDQUOT: "make room", errno.EROFS: "make it writable",
               errno.EACCES: "make it writable"}
# SIGTERM (a scheduler, `timeout`, a container stop) and SIGHUP (a closed terminal) stop lume as Ctrl-C does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


_received: list[int] = []


def _stop(signum: int, _frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt  # unwinds as Ctrl-C does: checkpoints stay complete, the note is printed


def _run(argv: list[str] | None) -> int:
    """The command's exit status: a user's mistake or a full disk is one line on stderr and 2."""
    import click

    from lume.errors import resume_note

    try:
        return app(args=argv, standalone_mode=False) or 0  # typer returns 130 for Ctrl-C rather than raising it
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
    except LumeError as error:
        print(f"lume: error: {error}", file=sys.stderr)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        print(f"lume: error: {error.filename or 'a write'}: {error.strerror}; "
              f"{resume_note() or DISK_ERRORS[error.errno] + ' and run the same command again'}", file=sys.stderr)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return 130
    return 2


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a user's mistake or a full disk is one line on stderr and exit status 2,
    never a traceback; Ctrl-C, SIGTERM and SIGHUP say what was kept and how to resume (exit
    status 128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM)."""
    from lume.errors import resume_note, set_resume_note
    from lume.outputs import record_command

    record_command(["lume", *(sys.argv[1:] if argv is None else argv)])
    set_resume_note(None)  # an earlier command's, in this process, is not this one's
    _received.clear()
    previous, root_level = {number: signal.signal(number, _stop) for number in STOP_SIGNALS}, logging.root.level
    try:
        code = _run(argv)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        log.handlers.clear()  # the next command (in this process, as in tests) sets up its own
        log.setLevel(logging.NOTSET)
        log.propagate = True
        logging.root.setLevel(root_level)
    _end_process_group()
    if code == 130 and _received:
        code = 128 + _received[0]
    if code > 128:
        print(f"lume: interrupted: {resume_note() or 'before any result was written; nothing to resume'}",
              file=sys.stderr)
    if code:
        sys.exit(code)
