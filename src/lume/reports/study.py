"""`report`: a leaderboard in Markdown and a one-file HTML page with embedded figures."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from lume.errors import LumeError
from lume.io import write_text_atomic
from lume.metrics import AGGREGATE_ORDER
from lume.unlearning import REPORT_NAME

# LUME / SemEval-2025 Task 4 paper, OLMo-7B target, final protocol (published, not ours).
PUBLISHED_OLMO_7B = [
    ("Gradient Ascent", 0.394, 0.0, 0.912, 0.269, True),
    ("Gradient Difference", 0.243, 0.0, 0.382, 0.348, False),
    ("KL minimisation", 0.395, 0.0, 0.916, 0.269, True),
    ("NPO", 0.188, 0.021, 0.080, 0.463, False),
    ("best team, 7B (sequential GD on chunks)", 0.706, 0.827, 0.847, 0.443, False),
    ("best team, 1B", 0.688, 0.964, 0.857, 0.242, False),
]


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def load_study(eval_dirs: list[Path]) -> list[dict]:
    """Per model: label, summary, MIA rows and (for unlearned models) the training report."""
    models = []
    for folder in eval_dirs:
        folder = Path(folder)
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise LumeError(f"{folder}: no summary.json (not an evaluation folder, or not finished)")
        summary = json.loads(summary_file.read_text())
        mia_file = folder / "mia.jsonl"  # only when this evaluation wrote it, never an older run's
        mia = ([json.loads(line) for line in mia_file.read_text().splitlines()]
               if "mia.jsonl" in summary.get("files", []) else [])
        model_path = summary["model"].get("path")
        training = None
        if model_path and (Path(model_path) / REPORT_NAME).is_file():
            training = json.loads((Path(model_path) / REPORT_NAME).read_text())
        models.append({"label": folder.name, "summary": summary, "mia": mia, "training": training})
    return models


def _split_mean(summary: dict, split: str) -> float | None:
    values = [summary["scores"][f"{s}/{t}/{m}"] for s, t, m in AGGREGATE_ORDER if s == split]
    return None if None in values else sum(values) / len(values)


def leaderboard_rows(models: list[dict]) -> list[dict]:
    rows = []
    for entry in models:
        summary = entry["summary"]
        mmlu = summary.get("mmlu", {})
        rows.append({"model": entry["label"], **{"/".join(k): summary["scores"]["/".join(k)] for k in AGGREGATE_ORDER},
                     "task_aggregate": summary["task_aggregate"], "mia_score": summary.get("mia", {}).get("mia_score"),
                     "mmlu": mmlu.get("accuracy"), "final": summary["final"],
                     "below_threshold": mmlu.get("below_threshold")})
    return rows


def markdown(models: list[dict]) -> str:
    rows = leaderboard_rows(models)
    short = [f"{s[0].upper()}-{t[-1]}-{'R' if m == 'regurgitation' else 'K'}" for s, t, m in AGGREGATE_ORDER]
    lines = ["# LUME leaderboard", "",
             "Forget (F) and retain (R) scores per task (1-3): regurgitation R = ROUGE-L recall, knowledge K = exact "
             "match. Forget scores should fall, retain scores stay. Aggregates follow the official protocol.", "",
             "| model | " + " | ".join(short) + " | task agg. | MIA score | MMLU | final |",
             "|---" * (len(short) + 5) + "|"]
    for row in sorted(rows, key=lambda r: -(r["final"] or -1)):
        flag = " ⚠ below 75 % of target" if row["below_threshold"] else ""
        cells = [_fmt(row["/".join(k)]) for k in AGGREGATE_ORDER]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {_fmt(row['task_aggregate'])} | "
                     f"{_fmt(row['mia_score'])} | {_fmt(row['mmlu'])}{flag} | {_fmt(row['final'])} |")
    lines += ["", "## Published numbers (OLMo-7B target, from the LUME paper; not computed here)", "",
              "| method | final | task aggregate | MIA score | MMLU |", "|---|---|---|---|---|"]
    for name, final, aggregate, mia, mmlu, below in PUBLISHED_OLMO_7B:
        lines.append(f"| {name} | {final:.3f} | {aggregate:.3f} | {mia:.3f} | {mmlu:.3f}"
                     f"{' (below threshold)' if below else ''} |")
    notes = {m["label"]: m["summary"] for m in models}
    first = next(iter(notes.values()))
    mmlu_note = first.get("mmlu", {}).get("limit_per_subject")
    lines += ["", f"Evaluated items per model: {first['data']['items']}; MIA set: {first['config']['mia_set']}; "
              f"MMLU: {'all questions' if not mmlu_note else f'{mmlu_note} question(s) per subject'}."]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def figures(models: list[dict]) -> dict[str, bytes]:
    """PNG figures: forget vs retain scatter, per-task bars, MIA histograms, training losses."""
    plt = _pyplot()
    out = {}
    figure, axis = plt.subplots(figsize=(5, 4))
    for entry in models:
        forget, retain = _split_mean(entry["summary"], "forget"), _split_mean(entry["summary"], "retain")
        if forget is not None and retain is not None:
            axis.scatter(1 - forget, retain)
            axis.annotate(entry["label"], (1 - forget, retain), fontsize=8, xytext=(3, 3), textcoords="offset points")
    axis.set(xlabel="forgetting: 1 − mean forget score", ylabel="utility: mean retain score",
             xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="Forgetting against utility")
    out["forget_vs_retain"] = png(figure)

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    width = 0.8 / max(len(models), 1)
    for axis, split in zip(axes, ("forget", "retain")):
        keys = [k for k in AGGREGATE_ORDER if k[0] == split]
        for i, entry in enumerate(models):
            values = [entry["summary"]["scores"]["/".join(k)] or 0 for k in keys]
            axis.bar([j + i * width for j in range(len(keys))], values, width, label=entry["label"])
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))],
                        [f"{t}\n{m[:6]}." for _, t, m in keys], fontsize=7)
        axis.set_title(f"{split} set")
    axes[0].set_ylabel("score")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    out["per_task"] = png(figure)

    with_mia = [m for m in models if m["mia"]]
    if with_mia:
        figure, axes = plt.subplots(1, len(with_mia), figsize=(3.2 * len(with_mia), 3), sharey=True, squeeze=False)
        for axis, entry in zip(axes[0], with_mia):
            rows = [r for r in entry["mia"] if r["set"] == "semeval"] or entry["mia"]
            for member, name in ((True, "members"), (False, "non-members")):
                axis.hist([r["loss"] for r in rows if r["member"] == member], bins=20, alpha=0.6, label=name)
            axis.set(title=entry["label"], xlabel="mean token NLL")
        axes[0][0].legend(fontsize=7)
        out["mia_histograms"] = png(figure)

    trained = [m for m in models if m["training"]]
    if trained:
        figure, axis = plt.subplots(figsize=(5, 3.5))
        for entry in trained:
            losses = entry["training"]["losses"]
            axis.plot([r["step"] for r in losses], [r["loss"] for r in losses], label=entry["label"])
        axis.set(xlabel="step", ylabel="training loss", title="Unlearning loss")
        axis.legend(fontsize=7)
        out["training_loss"] = png(figure)
    return out


def load_attacks(run_dir: Path) -> dict[str, dict]:
    """{model label: attacks.json} for every `RUN_DIR/attacks/<label>/attacks.json`."""
    from lume.evaluation.attacks import RESULT_NAME

    return {path.parent.name: json.loads(path.read_text())
            for path in sorted(Path(run_dir).glob(f"attacks/*/{RESULT_NAME}"))}


def robustness_markdown(attacks: dict[str, dict]) -> str:
    from lume.reports import ROBUSTNESS_HEADER, robustness_rows

    lines = ["", "## Robustness (is it really forgotten?)", "",
             "Recovered fraction = (after attack − unlearned) / (target − unlearned), on the forget set; "
             "retain and MMLU change are after attack − unlearned.", "",
             "| " + " | ".join(ROBUSTNESS_HEADER) + " |", "|---" * len(ROBUSTNESS_HEADER) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in robustness_rows(attacks)]
    return "\n".join(lines) + "\n"


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
