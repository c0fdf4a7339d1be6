"""The `lume` command: a thin layer over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from lume.errors import LumeError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build, unlearn and evaluate models on the LUME benchmark.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect, validate and fetch the LUME data.")
app.add_typer(data_app, name="data")
console = Console()

DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Data folder (default: $LUME_DATA_DIR, ../shared/data, the cache).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace what the output folder holds (it is refused otherwise)")]


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
        console.print(f"{path}: ok ({len(records)} rows)")


@data_app.command("fetch")
def data_fetch(target: Annotated[Optional[Path], typer.Option(help="Folder to fill (default: the cache)")] = None):
    """Download the LUME release from its public GitHub location into the cache."""
    from lume.data.fetch import fetch_release

    folder = fetch_release(target)
    console.print(f"LUME release ready in {folder}")


@app.command("evaluate")
def evaluate_command(
    model: Annotated[str, typer.Argument(help="Model folder, hub id, .gguf file, or smollm2-135m")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumes if it exists)")] = Path("runs/eval"),
    data_dir: DataDir = None,
    source: Annotated[str, typer.Option(help="lume, semeval-train or semeval-validation")] = "lume",
    docs_per_task: Annotated[Optional[int], typer.Option(help="Documents per task and split (seeded)")] = None,
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(help="Prompts decoded together")] = 64,
    max_new_tokens: int = 256,
    early_exit: Annotated[bool, typer.Option(help="Stop QA rows that can no longer match")] = True,
    backend: Annotated[str, typer.Option(help="hf (transformers) or vllm (if installed; GPU)")] = "hf",
    mia: Annotated[bool, typer.Option(help="Membership inference")] = True,
    mia_set: Annotated[str, typer.Option(help="final or validation SemEval MIA files")] = "final",
    mmlu: Annotated[bool, typer.Option(help="MMLU 5-shot")] = True,
    mmlu_dir: Annotated[Optional[str], typer.Option(help="Hendrycks-layout MMLU folder")] = None,
    mmlu_limit: Annotated[Optional[int], typer.Option(help="Questions per subject (seeded)")] = None,
    target_mmlu: Annotated[Optional[float], typer.Option(help="The target model's MMLU, for the 75% flag")] = None,
    dtype: Annotated[Optional[str], typer.Option(
        help="float32, bfloat16, float16 or auto (the checkpoint's) for every part; default: the reference's per "
             "part on a GPU (generation and MIA bfloat16, MMLU auto), float32 on a CPU")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ...")] = None,
    overwrite: Overwrite = False,
):
    """Score a model with the official LUME protocol (plus extra attacks beside it)."""
    from lume.evaluation import EvalConfig, evaluate
    from lume.reports import summary_table

    config = EvalConfig(data_dir=str(data_dir) if data_dir else None, source=source,
                        docs_per_task=docs_per_task, seed=seed, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, early_exit=early_exit, backend=backend, mia=mia, mia_set=mia_set,
                        mmlu=mmlu, mmlu_dir=mmlu_dir, mmlu_limit=mmlu_limit, target_mmlu=target_mmlu,
                        dtype=dtype, device=device)
    summary = evaluate(model, out, config, overwrite=overwrite)
    console.print(summary_table(summary))
    console.print(f"written: {out}/summary.json, {out}/items.jsonl")


@app.command("memorize")
def memorize_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the target model (resumes if it exists)")],
    base: Annotated[Optional[str], typer.Option(help="Base model: folder, hub id, .gguf, or smollm2-135m")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Settings preset: demo or smoke")] = None,
    data_dir: DataDir = None,
    docs_per_task: Annotated[Optional[int], typer.Option(help="Documents per task and split (seeded); default all")] = None,
    held_out_per_task: Annotated[Optional[int], typer.Option(help="Documents per task never trained on")] = None,
    max_epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    gradient_accumulation: Optional[int] = None,
    learning_rate: Optional[float] = None,
    lora_rank: Annotated[Optional[int], typer.Option(help="LoRA rank; 0 = full fine-tuning")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    target_regurgitation: Optional[float] = None,
    target_knowledge: Optional[float] = None,
    seed: Optional[int] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu to force the CPU")] = None,
    overwrite: Overwrite = False,
):
    """Fine-tune a base model until it has memorised LUME documents: a target to unlearn from."""
    from lume.models.memorize import MemorizeConfig, memorize, preset as memorize_preset

    overrides = dict(base=base, data_dir=str(data_dir) if data_dir else None, docs_per_task=docs_per_task,
                     held_out_per_task=held_out_per_task, max_epochs=max_epochs, batch_size=batch_size,
                     gradient_accumulation=gradient_accumulation, learning_rate=learning_rate,
                     lora_rank=lora_rank, gradient_checkpointing=gradient_checkpointing,
                     target_regurgitation=target_regurgitation, target_knowledge=target_knowledge,
                     seed=seed, device=device)
    if preset:
        config = memorize_preset(preset, **overrides)
    else:
        config = MemorizeConfig(**{k: v for k, v in overrides.items() if v is not None})
    manifest = memorize(out, config, overwrite=overwrite)
    console.print(f"target written to {out} ({manifest.result['stopped']}; "
                  f"{sum(len(v) for v in manifest.trained.values())} documents trained, "
                  f"{len(manifest.held_out)} held out)")


def _method_settings(values: list[str]) -> dict:
    import yaml

    settings = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise LumeError(f"--set {value!r}: expected NAME=VALUE")
        settings[name] = yaml.safe_load(text)
    return settings


@app.command("unlearn")
def unlearn_command(
    paths: Annotated[list[str], typer.Argument(
        help="MODEL_IN MODEL_OUT (forget/retain from the target's manifest) or, as in SemEval, "
             "MODEL_IN RETAIN FORGET MODEL_OUT (files or folders of .parquet/.jsonl)")],
    method: Annotated[str, typer.Option(help="ga, gd, kl, npo, npo+gd, npo+kl, simnpo, rmu, idk, sequential-gd")] = "npo",
    set_: Annotated[list[str], typer.Option("--set", help="Method setting NAME=VALUE (repeatable), e.g. beta=0.2")] = [],
    steps: int = 40,
    batch_size: int = 4,
    learning_rate: float = 5e-5,
    gradient_accumulation: int = 1,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank; 0 = full fine-tuning")] = 0,
    gradient_checkpointing: bool = False,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps to resume from (0 = none)")] = 0,
    seed: int = 0,
    data_dir: DataDir = None,
    device: Annotated[Optional[str], typer.Option(help="cpu to force the CPU")] = None,
    overwrite: Overwrite = False,
):
    """Unlearn the forget set from a model with a registered method."""
    from lume.unlearning import UnlearnConfig, read_split, unlearn

    config = UnlearnConfig(method=method, method_settings=_method_settings(set_), steps=steps,
                           batch_size=batch_size, learning_rate=learning_rate,
                           gradient_accumulation=gradient_accumulation, lora_rank=lora_rank,
                           gradient_checkpointing=gradient_checkpointing, save_every=save_every, seed=seed,
                           device=device)
    if len(paths) == 2:
        model_in, model_out = paths
        forget = retain = None
    elif len(paths) == 4:
        model_in, retain_path, forget_path, model_out = paths
        retain, forget = read_split(retain_path, "retain"), read_split(forget_path, "forget")
    else:
        raise LumeError("expected MODEL_IN MODEL_OUT or MODEL_IN RETAIN FORGET MODEL_OUT")
    report = unlearn(model_in, model_out, config, forget=forget, retain=retain,
                     data_dir=str(data_dir) if data_dir else None, overwrite=overwrite)
    console.print(f"unlearned model written to {model_out} ({report['steps']} steps, "
                  f"{report['tokens_per_second']:.0f} tokens/s, final loss {report['losses'][-1]['loss']:.4f})")


@app.command("merge")
def merge_command(
    base: Annotated[str, typer.Argument(help="The model the adapters were trained from")],
    adapters: Annotated[list[Path], typer.Argument(help="Adapter folders (OUT/adapter of `unlearn --lora-rank`)")],
    out: Annotated[Path, typer.Option("--out", "-o")],
    combination: Annotated[str, typer.Option(help="ties or linear (weighted sum)")] = "ties",
    weights: Annotated[Optional[str], typer.Option(help="Comma-separated weights, one per adapter")] = None,
    density: Annotated[float, typer.Option(help="TIES: fraction of each adapter's weights kept")] = 0.5,
    overwrite: Overwrite = False,
):
    """Merge LoRA adapters into one model (TIES or weighted sum)."""
    from lume.unlearning.merge import merge_adapters

    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise LumeError(f"--weights {weights!r}: expected comma-separated numbers") from None
    merge_adapters(base, adapters, out, combination=combination, weights=parsed, density=density, overwrite=overwrite)
    console.print(f"merged model written to {out}")


@app.command("run")
def run_command(config: Annotated[Optional[Path], typer.Argument(help="YAML study config; none = the built-in demo")] = None):
    """A whole study: build or reuse the target, unlearn with each method, evaluate all, report."""
    from lume.pipeline import load_config, run

    out = run(load_config(config))
    console.print(f"report: {out / 'report.md'} and {out / 'report.html'}")


@app.command("report")
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (with eval/*) or evaluation folders")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write report.md/html")] = None,
):
    """Leaderboard (Markdown) and a self-contained HTML report with figures."""
    from lume.reports.study import write_report

    eval_dirs = []
    for folder in run_dirs:
        found = sorted((p.parent for p in folder.glob("eval/*/summary.json")), key=lambda p: (p.name != "target", p.name))
        eval_dirs += found or [folder]
    markdown_file, html_file = write_report(eval_dirs, out or run_dirs[0])
    console.print(markdown_file.read_text().split("\n## Figures")[0])
    console.print(f"written: {markdown_file}, {html_file}")


@app.command("attack")
def attack_command(
    model: Annotated[Path, typer.Argument(help="The unlearned model folder")],
    target: Annotated[Path, typer.Option(help="The target model it was unlearned from")],
    attack: Annotated[list[str], typer.Option(help="relearn, relearn-public, quantize-8, quantize-4, probe (repeatable)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for attacks.json")] = Path("runs/attack"),
    relearn_steps: int = 10,
    relearn_learning_rate: float = 1e-5,
    mmlu_limit: Annotated[int, typer.Option(help="MMLU questions per subject for the MMLU change; 0 skips")] = 1,
    seed: int = 0,
    data_dir: DataDir = None,
    overwrite: Overwrite = False,
):
    """Does the forgotten knowledge come back? Attack an unlearned model and measure what returns."""
    from lume.evaluation.attacks import AttackConfig
    from lume.evaluation.attacks import attack as run_attacks
    from lume.reports import robustness_table

    config = AttackConfig(data_dir=str(data_dir) if data_dir else None, seed=seed, relearn_steps=relearn_steps,
                          relearn_learning_rate=relearn_learning_rate, mmlu_limit=mmlu_limit)
    results = run_attacks(model, target, out, attack, config, overwrite=overwrite)
    console.print(robustness_table({model.name: results}))
    console.print(f"written: {out}/attacks.json")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a user's mistake is one line on stderr and exit status 2, never a traceback;
    Ctrl-C says what was kept and how to resume (exit status 130)."""
    import click

    from lume.errors import resume_note

    try:
        # typer returns 130 for Ctrl-C rather than raising it
        code = app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as error:
        error.show()
        code = 2
    except LumeError as error:
        print(f"lume: error: {error}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = 130
    if code == 130:
        print(f"lume: {resume_note() or 'interrupted before any result was written; nothing to resume'}",
              file=sys.stderr)
    if code:
        sys.exit(code)
