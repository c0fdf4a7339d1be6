"""The `lume` command: a thin layer over the Python API."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from lume.data.paths import DATA_DIR_HELP
from lume.errors import LumeError

# The commands whose options are generated from the stages' settings (lume.cli.stages, which
# imports torch for them): built only when one of them runs, listed by `lume --help` from here.
STAGE_HELP = {
    "evaluate": "Score a model with the official LUME protocol (plus extra attacks beside it).",
    "memorize": "Fine-tune a base model until it has memorised LUME documents: a target to unlearn from.",
    "unlearn": "Unlearn the forget set from a model with a registered method, or with a recipe (a whole "
               "SemEval-2025 system: its method, which weights train, data schedule, runs and merge).",
    "merge": "Merge LoRA adapters into one model (TIES or weighted sum).",
    "attack": "Does the forgotten knowledge come back? Attack an unlearned model and measure what returns.",
}


class _Commands(TyperGroup):
    """lume's commands; a stage command is built from its settings only when it is the one run
    (`lume --help` lists the stand-ins registered below)."""

    def resolve_command(self, ctx, args):
        if args and args[0] in STAGE_HELP and getattr(self.commands[args[0]].callback, "stand_in", False):
            from lume.cli import stages

            self.commands.update(typer.main.get_command(stages.app).commands)
        return super().resolve_command(ctx, args)


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, cls=_Commands,
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
        warnings.simplefilter("ignore")  # the libraries' warnings too (main restores the filters after the command)


@app.callback()
def options(quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final table")] = False,
            verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug detail too")] = False):
    """Build, unlearn and evaluate models on the LUME benchmark."""
    set_up_logging(quiet, verbose)

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help=DATA_DIR_HELP)]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Replace what the output folder holds (it is refused otherwise)")]
Wait = Annotated[bool, typer.Option(
    "--wait", help="While another lume command writes the output folder, wait for it (default: stop at once)")]


def setting_option(example: str):
    """The `--setting` option, its help giving an example the command accepts."""
    return Annotated[list[str], typer.Option(
        "--setting", help=f"Any other setting NAME=VALUE (repeatable); nested ones dotted, e.g. {example}")]


Setting = setting_option("training.weight_decay=0.01")


def name_values(values: list[str], option: str) -> list[tuple[str, object]]:
    """`NAME=VALUE` pairs as (NAME, VALUE read as YAML); NAME may be dotted (training.seed)."""
    from lume.config import yaml_value

    parsed = []
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise LumeError(f"{option} {value!r}: expected NAME=VALUE")
        parsed.append((name, yaml_value(text)))
    return parsed


def given_values(cls, given: dict, settings: list[str]) -> dict:
    """The options given on the command line (None = not given) and every `--setting`, as
    checked fields of config dataclass `cls`; a given TrainingSettings field goes to its
    `training`. Values are checked as a YAML file's are."""
    import dataclasses

    from lume.config import coerce_fields, with_dotted
    from lume.training import TrainingSettings

    values = {key: list(value) if isinstance(value, tuple) else value  # a repeatable option: a tuple on older typer
              for key, value in given.items() if value is not None}
    own = {f.name for f in dataclasses.fields(cls)}
    training = {key: values.pop(key) for key in list(values)
                if key not in own and key in {f.name for f in dataclasses.fields(TrainingSettings)}}
    if training:
        values["training"] = training
    values = with_dotted(values, name_values(settings, "--setting"))
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


def _stand_in(name: str) -> None:
    """`lume NAME` in `lume --help`, until NAME runs (see _Commands)."""
    @app.command(name, help=STAGE_HELP[name], add_help_option=False,
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def stand_in() -> None:
        raise AssertionError(f"the stand-in of `lume {name}` ran")  # _Commands replaces it first

    stand_in.stand_in = True


for _name in ("evaluate", "memorize", "unlearn", "merge"):
    _stand_in(_name)


@app.command("run")
def run_command(config: Annotated[Optional[Path], typer.Argument(
        help="YAML study config; none = the built-in demo")] = None, wait: Wait = False,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Redo the steps whose folders hold results they cannot resume; empty a folder that "
                                "is not a lume study")] = False):
    """A whole study: build or reuse the target, unlearn with each method, evaluate all, report."""
    from lume.study.run import load_config, run

    out = run(load_config(config), wait=wait, overwrite=overwrite)
    log.info(f"report: {out / 'report.md'} and {out / 'report.html'}")


@app.command("sweep")
def sweep_command(config: Annotated[Path, typer.Argument(help="YAML sweep config (see configs/demo-sweep.yaml)")]):
    """Search each method's settings with Optuna on the probes, evaluate each method's best, report.

    Start it again to continue an interrupted sweep, or several times at once (sharing the
    config's `storage`) to run trials in parallel."""
    import optuna

    from lume.study.sweep import load_sweep, sweep

    optuna.logging.set_verbosity(log.getEffectiveLevel())  # its [I] lines follow -q and -v
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


@app.command("verify")
def verify_command(
    folders: Annotated[list[Path], typer.Argument(help="Evaluation folders, or study folders (each eval/*)")],
):
    """Recompute every official number of finished evaluations from their per-item files, by the
    protocol's definitions and none of the evaluator's code; exit 1 when one differs from summary.json."""
    from lume.reports.verify import evaluations, verify_evaluation

    differing = 0
    for folder in folders:
        for evaluation in evaluations(folder):
            checks = verify_evaluation(evaluation)
            differing += sum(not check.equal for check in checks)
            console.print(f"[bold]{evaluation}[/bold]")
            for check in checks:
                console.print(f"  {check.line()}", markup=False, highlight=False)
    if differing:
        log.error(f"{differing} number(s) differ from summary.json")
        raise typer.Exit(1)
    log.info("every official number equals its recomputation")


_stand_in("attack")


def _end_process_group() -> None:
    """Close torch.distributed's process group (torchrun runs) before the interpreter exits: one
    left to the exit could abort the process ("terminate called without an active exception")."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


# What a full or read-only disk raises: the user's to fix, so one line (and what to do), not a traceback.
DISK_ERRORS = {errno.ENOSPC: "make room", errno.EDQUOT: "make room", errno.EROFS: "make it writable",
               errno.EACCES: "make it writable"}
# SIGTERM (a scheduler, `timeout`, a container stop) and SIGHUP (a closed terminal) stop lume as Ctrl-C does,
# unless ignored when lume starts: `nohup lume run ...` must outlive its terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


_received: list[int] = []


def _stop(signum: int, _frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt  # unwinds as Ctrl-C does: checkpoints stay complete, the note is printed


def usage_error_class() -> type[Exception]:
    """The base class of the usage errors typer raises: click's ClickException, found through what
    typer exposes (typer before 0.26 raises the installed click's; 0.26 and later vendor a click of their own)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def _run(argv: list[str] | None) -> int:
    """The command's exit status: a user's mistake or a full disk is one line on stderr and 2."""
    from lume.errors import resume_note

    try:
        return app(args=argv, standalone_mode=False) or 0  # typer returns 130 for Ctrl-C rather than raising it
    except typer.Exit as done:
        return done.exit_code
    except usage_error_class() as error:
        error.show()
    except LumeError as error:
        print(f"lume: error: {error}", file=sys.stderr)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        kept = f": {resume_note()}" if resume_note() else ""  # what was kept, after what to do first
        print(f"lume: error: {error.filename or 'a write'}: {error.strerror}; {DISK_ERRORS[error.errno]} and run the "
              f"same command again{kept}", file=sys.stderr)
    except (KeyboardInterrupt, typer.Abort):
        return 130
    return 2


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a user's mistake or a full disk is one line on stderr and exit status 2,
    never a traceback; Ctrl-C, SIGTERM and SIGHUP say what was kept and how to resume (exit
    status 128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM)."""
    from lume.errors import resume_note, set_resume_note, set_study_note
    from lume.outputs import record_command

    for stream in (sys.stdout, sys.stderr):  # a C locale's ASCII terminal: "–" and non-UTF-8 paths as \u2013, \udcff
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    record_command(["lume", *(sys.argv[1:] if argv is None else argv)])
    set_resume_note(None)  # an earlier command's, in this process, is not this one's
    set_study_note(None)
    _received.clear()
    previous = {number: signal.signal(number, _stop) for number in STOP_SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}
    root_level = logging.root.level
    try:
        with warnings.catch_warnings():
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
