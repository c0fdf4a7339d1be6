"""`report`: a leaderboard in Markdown and a one-file HTML page with embedded figures."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from lume.errors import LumeError
from lume.files import read_json, read_jsonl, write_text_atomic
from lume.metrics import AGGREGATE_ORDER
from lume.results import EvaluationSummary, Headline, read_summary
from lume.metrics.oracle import task_distances
from lume.outputs import refuse_unfinished
from lume.reports import ROBUSTNESS_HEADER, ModelEntry, robustness_rows
from lume.reports.figures import png, pyplot as _pyplot
from lume.reports.leaderboard import markdown, markdown_table
from lume.reports.selection import selection_parts
from lume.stages.attacks import RESULT_NAME
from lume.stages.evaluation.membership_section import official_rows
from lume.stages.unlearning import REPORT_NAME


def load_study(eval_dirs: list[Path]) -> list[ModelEntry]:
    """Per model: label, summary, MIA rows and (for unlearned models) the training report."""
    models = []
    for folder in eval_dirs:
        folder = Path(folder)
        refuse_unfinished(folder)
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise LumeError(f"{folder}: no summary.json (not an evaluation folder, or not finished)")
        summary = read_summary(summary_file)
        mia_file = folder / "mia.jsonl"  # only when this evaluation wrote it, never an older run's
        mia = read_jsonl(mia_file, what="membership rows") if "mia.jsonl" in summary.files else []
        training = None
        if summary.model.path and (Path(summary.model.path) / REPORT_NAME).is_file():
            training = read_json(Path(summary.model.path) / REPORT_NAME, what="unlearning report")
        models.append(ModelEntry(folder.name, summary, mia, training))
    return models


def _error(summary: EvaluationSummary, name: str, value: float, flip: bool = False) -> list[float]:
    """Distances below and above `value` to its interval's ends (for error bars); 0 without one."""
    low, high = summary.interval(name) or (value, value)
    low, high = (1 - high, 1 - low) if flip else (low, high)
    return [max(value - low, 0.0), max(high - value, 0.0)]


def forget_vs_retain(models: list[ModelEntry]):
    """Each model at (1 − mean forget number, mean retain number) with 95 % intervals; labelled in
    the legend, so labels never overlap."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    markers = "osD^vP*Xh<>"
    for index, entry in enumerate(models):
        summary = entry.summary
        forget, retain = summary.split_mean("forget"), summary.split_mean("retain")
        if forget is None or retain is None:
            continue
        x, y = 1 - forget, retain
        axis.errorbar(x, y, xerr=[[e] for e in _error(summary, Headline.FORGET_MEAN, x, flip=True)],
                      yerr=[[e] for e in _error(summary, Headline.RETAIN_MEAN, y)], fmt=markers[index % len(markers)],
                      capsize=3, label=entry.label)
    axis.set(xlabel="forgetting: 1 − mean forget score", ylabel="utility: mean retain score",
             xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="Forgetting against utility (95 % intervals)")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def per_task_bars(models: list[ModelEntry]):
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    width = 0.8 / max(len(models), 1)
    for axis, split in zip(axes, ("forget", "retain")):
        keys = ["/".join(k) for k in AGGREGATE_ORDER if k[0] == split]
        for i, entry in enumerate(models):
            summary = entry.summary
            values = [summary.scores[k] or 0 for k in keys]
            errors = list(zip(*(_error(summary, k, v) for k, v in zip(keys, values))))
            axis.bar([j + i * width for j in range(len(keys))], values, width, yerr=errors, capsize=2,
                     label=entry.label)
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))],
                        [f"{k.split('/')[1]}\n{k.split('/')[2][:6]}." for k in keys], fontsize=7)
        axis.set_title(f"{split} set")
    axes[0].set_ylabel("score")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def mia_histograms(models: list[ModelEntry]):
    """Loss histograms of the members and non-members the official MIA score used."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3), sharey=True, squeeze=False)
    for axis, entry in zip(axes[0], models):
        rows = official_rows(entry.summary, entry.mia_rows)
        for member, name in ((True, "members"), (False, "non-members")):
            axis.hist([r["loss"] for r in rows if r["member"] == member], bins=20, alpha=0.6, label=name)
        axis.set(title=entry.label, xlabel="mean token NLL")
    axes[0][0].legend(fontsize=7)
    return figure


def training_losses(models: list[ModelEntry]):
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for entry in models:
        runs = entry.training.get("runs") or {"": entry.training}  # a merging recipe: each of its runs
        for run, training in runs.items():
            losses = training["losses"]
            axis.plot([r["step"] for r in losses], [r["loss"] for r in losses],
                      label=f"{entry.label}: {run}" if run else entry.label)
    axis.set(xlabel="step", ylabel="training loss", title="Unlearning loss")
    axis.legend(fontsize=7)
    return figure


def oracle_distances(models: list[ModelEntry], oracle: ModelEntry):
    """Bars of each model's distance to the retrained oracle per task (0 is the ideal)."""
    plt = _pyplot()
    others = [m for m in models if m is not oracle]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(others), 1)
    tasks = sorted(task_distances(oracle.summary.scores, oracle.summary.scores))
    for i, entry in enumerate(others):
        distances = task_distances(entry.summary.scores, oracle.summary.scores)
        axis.bar([j + i * width for j in range(len(tasks))], [distances[t] for t in tasks], width,
                 label=entry.label)
    axis.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks)
    axis.set(ylabel="mean |model − oracle|", title="Distance to the retrained oracle (0 is ideal)")
    axis.legend(fontsize=7)
    return figure


def figures(models: list[ModelEntry]) -> dict[str, bytes]:
    """PNG figures: forget vs retain scatter, per-task bars, MIA histograms, training losses."""
    out = {"forget_vs_retain": png(forget_vs_retain(models)), "per_task": png(per_task_bars(models))}
    with_mia = [m for m in models if m.mia_rows and m.summary.mia]
    if with_mia:
        out["mia_histograms"] = png(mia_histograms(with_mia))
    oracle = next((m for m in models if m.label == "oracle"), None)
    if oracle is not None:
        out["oracle_distance"] = png(oracle_distances(models, oracle))
    trained = [m for m in models if m.training]
    if trained:
        out["training_loss"] = png(training_losses(trained))
    return out


def load_attacks(run_dir: Path) -> dict[str, dict]:
    """{model label: attacks.json} for every `RUN_DIR/attacks/<label>/attacks.json`."""
    return {path.parent.name: read_json(path, what="attack results")
            for path in sorted(Path(run_dir).glob(f"attacks/*/{RESULT_NAME}"))}


def robustness_markdown(attacks: dict[str, dict]) -> str:
    lines = ["", "## Robustness (is it really forgotten?)", "",
             "Recovered fraction = (after attack − unlearned) / (target − unlearned), on the forget set; "
             "retain and MMLU change are after attack − unlearned.", ""]
    return "\n".join(lines + markdown_table(ROBUSTNESS_HEADER, robustness_rows(attacks))) + "\n"


def robustness_figure(attacks: dict[str, dict]) -> bytes:
    """Bars of recovered fraction (regurgitation and knowledge together) per method and attack."""
    plt = _pyplot()
    names = sorted({name for result in attacks.values() for name in result["attacks"] if name != "probe"})
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(attacks), 1)
    for i, (model, result) in enumerate(attacks.items()):
        values = []
        for name in names:
            recovered = result["attacks"].get(name, {}).get("recovered", {})
            parts = [v for k, v in recovered.items() if k.startswith("forget/all/") and v is not None]
            values.append(sum(parts) / len(parts) if parts else 0.0)
        axis.bar([j + i * width for j in range(len(names))], values, width, label=model)
    axis.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, fontsize=8)
    axis.set(ylabel="recovered fraction", title="What comes back after each attack")
    axis.axhline(0, color="black", linewidth=0.5)
    axis.legend(fontsize=7)
    return png(figure)


def write_report(eval_dirs: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Write report.md (with figures/*.png beside it) and a self-contained report.html."""
    models = load_study(eval_dirs)
    text = markdown(models)
    images = figures(models)
    sweep_file = Path(out_dir) / "sweep.json"
    selection_text, selection_images = selection_parts(
        models, read_json(sweep_file, what="sweep results") if sweep_file.is_file() else None)
    text += selection_text
    images.update(selection_images)
    attacks = load_attacks(out_dir)
    if attacks:
        text += robustness_markdown(attacks)
        images["robustness"] = robustness_figure(attacks)
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (out_dir / "figures" / f"{name}.png").write_bytes(data)
    figure_links = "".join(f"\n![{name}](figures/{name}.png)\n" for name in images)
    write_text_atomic(out_dir / "report.md", text + "\n## Figures\n" + figure_links)
    write_text_atomic(out_dir / "report.html", _html(text, images))
    return out_dir / "report.md", out_dir / "report.html"


def _html(text: str, images: dict[str, bytes]) -> str:
    """The Markdown report as one HTML file, figures embedded as data URIs."""
    import markdown as markdown_lib

    body = markdown_lib.markdown(text, extensions=["tables"])
    body += "<h2>Figures</h2>" + "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>" for name, data in images.items())
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>LUME report</title><style>{style}</style>"
            f"</head><body>{body}</body></html>\n")
