"""The stage commands (evaluate, memorize, unlearn, merge, attack): their options generated
from the stages' settings fields (`lume.config.setting`), so each setting's type, range and
help are written once. Imported only when one of them runs (the settings' modules import
torch), so that `lume --help` stays fast."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

from lume.cli import (STAGE_HELP, DataDir, Overwrite, Setting, Wait, configured, console, given_values, log,
                      name_values, setting_option)
from lume.config import help_of
from lume.errors import LumeError
from lume.stages.attacks import ATTACKS, AttackConfig
from lume.stages.evaluation import EvalConfig
from lume.stages.target import MemorizeConfig
from lume.stages.unlearning import METHODS, UnlearnConfig
from lume.stages.unlearning.recipes import RECIPES
from lume.stages.unlearning.merge import MergeConfig
from lume.training import TrainingSettings

app = typer.Typer()
RecipeTarget = Annotated[Optional[str], typer.Option(
    "--recipe-target", help="Which of the recipe's settings: auto (by MODEL_IN), olmo-1b, olmo-7b or lume "
                            "(a target lume built)")]
RecipeName = Annotated[Optional[str], typer.Option(
    "--recipe", help="A SemEval-2025 system instead of a method: " + ", ".join(RECIPES.listed())
    + " (docs/recipes.md); the other options given override its settings")]
MethodName = Annotated[Optional[str], typer.Option(
    "--method", help=", ".join(METHODS.listed()) + " (docs/methods.md), or package.module:Class (docs/plugins.md)")]


def _settings_field(cls, name: str) -> tuple[type, dataclasses.Field]:
    """(class, field) of setting `name`: `cls`'s own, else its `training`'s (TrainingSettings)."""
    for owner in (cls, TrainingSettings):
        fields = {item.name: item for item in dataclasses.fields(owner)}
        if name in fields:
            return owner, fields[name]
    raise KeyError(f"{name}: not a setting of {cls.__name__} or TrainingSettings")


def _generated_option(cls, name: str) -> inspect.Parameter:
    """The CLI option of a settings field: its name, its type (None: not given) and its help,
    all from the field (`lume.config.setting`)."""
    owner, item = _settings_field(cls, name)
    kind = typing.get_type_hints(owner)[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None -> X
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    flag = item.metadata.get("option") or "--" + name.replace("_", "-")
    declaration = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
    option = typer.Option(declaration, help=item.metadata["help"])
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[kind], option])


def settings_options(cls, *names: str):
    """A command taking, besides its own parameters, one option per named settings field of `cls`
    (or of its `training`), generated from the field and handed to it as `given` (None: not
    given), so that each setting's type, default, range and help are written once."""
    def wrap(command):
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "given"]
        generated = [_generated_option(cls, name) for name in names]

        @functools.wraps(command)
        def run(**values):
            return command(**{p.name: values[p.name] for p in own}, given={n: values[n] for n in names})

        del run.__wrapped__  # typer reads the signature below, not the command's
        own = [p.replace(annotation=setting_option(_example(cls, names))) if p.name == "setting" else p for p in own]
        cut = next((i for i, p in enumerate(own) if p.name == "setting"), len(own))  # --setting and after: last
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in [*own[:cut], *generated, *own[cut:]]]
        run.__signature__ = signature.replace(parameters=parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.settings = (cls, names)
        return run
    return wrap


def _example(cls, names: tuple[str, ...]) -> str:
    """A `--setting` this command takes: training's weight decay where it trains, else its first
    plain field without an option of its own (or with one, where every field has)."""
    hints = typing.get_type_hints(cls)
    if hints.get("training") is TrainingSettings:
        return "training.weight_decay=0.01"
    plain = [f for f in dataclasses.fields(cls) if hints[f.name] in (int, float, bool)]
    field = next((f for f in plain if f.name not in names), plain[0])
    return f"{field.name}={str(field.default).lower()}"


@app.command("evaluate", help=STAGE_HELP["evaluate"])
@settings_options(EvalConfig, "data_dir", "source", "docs_per_task", "seed", "batch_size", "max_new_tokens",
                  "early_exit", "backend", "sections", "mia", "mia_set", "mmlu", "mmlu_dir", "mmlu_limit",
                  "mmlu_subjects", "general", "target_mmlu", "dtype", "device")
def evaluate_command(
    model: Annotated[str, typer.Argument(
        help="Model folder, hub id, .gguf file, or a built-in: smollm2-135m, lume-olmo-1b, lume-olmo-7b")],
    given: dict,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumes if it exists)")] = Path("runs/eval"),
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    from lume.reports import summary_table
    from lume.stages.evaluation import evaluate

    summary = evaluate(model, out, configured(EvalConfig(), given, setting), overwrite=overwrite, wait=wait)
    console.print(summary_table(summary))
    log.info(f"written: {out}/summary.json, {out}/items.jsonl")


@app.command("memorize", help=STAGE_HELP["memorize"])
@settings_options(MemorizeConfig, "base", "data_dir", "docs_per_task", "held_out_per_task", "max_epochs",
                  "batch_size", "gradient_accumulation", "learning_rate", "lora_rank", "gradient_checkpointing",
                  "target_regurgitation", "target_knowledge", "seed", "device", "mixed_precision", "log_with")
def memorize_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the target model (resumes if it exists)")],
    given: dict,
    preset: Annotated[Optional[str], typer.Option(help="Settings preset: demo or smoke")] = None,
    oracle: Annotated[bool, typer.Option(
        "--oracle", help="Also build its retrained oracle in OUT/oracle: the same settings, the forget documents "
                         "left out (a target already built so is kept)")] = False,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    from lume.stages.target import memorize, preset as memorize_preset

    config = configured(memorize_preset(preset) if preset else MemorizeConfig(), given, setting)
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


@app.command("unlearn", help=STAGE_HELP["unlearn"])
@settings_options(UnlearnConfig, "steps", "save_every", "batch_size", "learning_rate", "gradient_accumulation",
                  "lora_rank", "gradient_checkpointing", "seed", "eval_every", "select", "device", "mixed_precision",
                  "log_with")
def unlearn_command(
    paths: Annotated[list[str], typer.Argument(
        help="MODEL_IN MODEL_OUT (forget/retain from the target's manifest) or, as in SemEval, "
             "MODEL_IN RETAIN FORGET MODEL_OUT (files or folders of .parquet/.jsonl)")],
    given: dict,
    method: MethodName = None,
    recipe: RecipeName = None,
    recipe_target: RecipeTarget = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="Method setting NAME=VALUE (repeatable), e.g. beta=0.2")] = [],
    data_dir: DataDir = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    given = {**given, "method_settings": dict(name_values(set_, "--set")) or None}
    report = _unlearned(paths, method, recipe, recipe_target, given, setting,
                        dict(data=str(data_dir) if data_dir else None, overwrite=overwrite, wait=wait))
    log.info(_unlearned_line(report, paths[-1]))


def _unlearned_line(report, model_out: str) -> str:
    if report.runs is not None:  # a recipe whose runs were merged
        return (f"unlearned model written to {model_out} (recipe {report.recipe}: {len(report.runs)} runs of "
                f"{report.steps} steps in all, merged by {report.merge['combination']})")
    chosen = f", step {report.selection.step} chosen" if report.selection else ""
    return (f"unlearned model written to {model_out} ({report.steps} steps{chosen}, "
            f"{report.tokens_per_second:.0f} tokens/s, final loss {report.losses[-1]['loss']:.4f})")


def _unlearned(paths: list[str], method, recipe, recipe_target, given: dict, setting: list[str], options: dict):
    """`lume unlearn`'s run: with a method, or with a recipe whose settings the given options override."""
    from lume.stages.unlearning import METHODS, UnlearnConfig, unlearn
    from lume.stages.unlearning.recipes import target_kind
    from lume.stages.unlearning.recipes.run import unlearn_with_recipe
    from lume.stages.unlearning.tuned import method_config, tuned_record

    model_in, model_out, forget, retain = _unlearning_sets(paths)
    if recipe:
        if method:
            raise LumeError("--method and --recipe: give one (a recipe names its own method)")
        return unlearn_with_recipe(model_in, model_out, recipe, given_values(UnlearnConfig, given, setting),
                                   target=recipe_target or "auto", forget=forget, retain=retain, **options)
    if recipe_target:
        raise LumeError("--recipe-target chooses a recipe's settings: give --recipe too")
    fields, kind = given_values(UnlearnConfig, given, setting), target_kind(model_in)
    config = method_config(method or UnlearnConfig.method, fields, kind)
    if kind == "lume" and (record := tuned_record(METHODS[config.method].name, fields)):
        log.info(f"{config.method}: lume's tuned defaults for a target it built (sweep {record['sweep']}, trial "
                 f"{record['trial']}), under the settings given")
    return unlearn(model_in, model_out, config, forget=forget, retain=retain, **options)


@app.command("merge", help=STAGE_HELP["merge"])
@settings_options(MergeConfig, "combination", "density")
def merge_command(
    base: Annotated[str, typer.Argument(help="The model the adapters were trained from")],
    adapters: Annotated[list[Path], typer.Argument(help="Adapter folders (OUT/adapter of `unlearn --lora-rank`)")],
    out: Annotated[Path, typer.Option("--out", "-o")],
    given: dict,
    weights: Annotated[Optional[str], typer.Option(
        help=help_of(MergeConfig, "weights") + ", comma-separated")] = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    from lume.stages.unlearning.merge import merge_adapters

    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise LumeError(f"--weights {weights!r}: expected comma-separated numbers") from None
    config = configured(MergeConfig(), {**given, "weights": parsed}, setting)
    merge_adapters(base, adapters, out, config, overwrite=overwrite, wait=wait)
    log.info(f"merged model written to {out}")


@app.command("attack", help=STAGE_HELP["attack"])
@settings_options(AttackConfig, "relearn_steps", "mmlu", "mmlu_limit", "seed", "data_dir")
def attack_command(
    model: Annotated[Path, typer.Argument(help="The unlearned model folder")],
    target: Annotated[Path, typer.Option(help="The target model it was unlearned from")],
    attack: Annotated[list[str], typer.Option(
        help=", ".join(ATTACKS.listed()) + ", or package.module:Class (repeatable)")],
    given: dict,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for attacks.json")] = Path("runs/attack"),
    relearn_learning_rate: Annotated[Optional[float], typer.Option(
        help="relearn.learning_rate: " + help_of(TrainingSettings, "learning_rate"))] = None,
    setting: Setting = [],
    overwrite: Overwrite = False,
    wait: Wait = False,
):
    from lume.reports import robustness_table
    from lume.stages.attacks import attack as run_attacks

    relearn = {"learning_rate": relearn_learning_rate} if relearn_learning_rate is not None else None
    config = configured(AttackConfig(), {**given, "relearn": relearn}, setting)
    results = run_attacks(model, target, out, attack, config, overwrite=overwrite, wait=wait)
    console.print(robustness_table({model.name: results}))
    log.info(f"written: {out}/attacks.json")


