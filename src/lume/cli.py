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
    batch_size: Annotated[int, typer.Option(help="Prompts decoded together")] = 32,
    max_new_tokens: int = 256,
    early_exit: Annotated[bool, typer.Option(help="Stop QA rows that can no longer match")] = True,
    mia: Annotated[bool, typer.Option(help="Membership inference")] = True,
    mia_set: Annotated[str, typer.Option(help="final or validation SemEval MIA files")] = "final",
    mmlu: Annotated[bool, typer.Option(help="MMLU 5-shot")] = True,
    mmlu_dir: Annotated[Optional[str], typer.Option(help="Hendrycks-layout MMLU folder")] = None,
    mmlu_limit: Annotated[Optional[int], typer.Option(help="Questions per subject (seeded)")] = None,
    target_mmlu: Annotated[Optional[float], typer.Option(help="The target model's MMLU, for the 75% flag")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32, bfloat16 or float16")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ...")] = None,
):
    """Score a model with the official LUME protocol (plus extra attacks beside it)."""
    from lume.evaluation import EvalConfig, evaluate
    from lume.reports import summary_table

    config = EvalConfig(data_dir=str(data_dir) if data_dir else None, source=source,
                        docs_per_task=docs_per_task, seed=seed, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, early_exit=early_exit, mia=mia, mia_set=mia_set,
                        mmlu=mmlu, mmlu_dir=mmlu_dir, mmlu_limit=mmlu_limit, target_mmlu=target_mmlu,
                        dtype=dtype, device=device)
    summary = evaluate(model, out, config)
    console.print(summary_table(summary))
    console.print(f"written: {out}/summary.json, {out}/items.jsonl")


def main() -> None:
    try:
        app()
    except LumeError as error:
        print(f"lume: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("lume: interrupted; finished work is kept and a rerun resumes", file=sys.stderr)
        sys.exit(130)
