"""`report`: a leaderboard in Markdown and a one-file HTML page with embedded figures."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from lume.errors import LumeError
from lume.files import read_json, read_jsonl, write_text_atomic
from lume.results import AttackResults, read_summary
from lume.outputs import refuse_unfinished
from lume.reports import ROBUSTNESS_HEADER, ModelEntry, robustness_rows
from lume.reports.figures import figures, robustness_figure
from lume.reports.leaderboard import markdown, markdown_table
from lume.reports.selection import selection_parts
from lume.stages.attacks import RESULT_NAME
from lume.stages.unlearning import REPORT_NAME, read_unlearn_report


def load_study(eval_dirs: list[Path]) -> list[ModelEntry]:
    """Per model: label, summary, MIA rows and (for unlearned models) the training report."""
    models = []
    for folder, label in zip(map(Path, eval_dirs), distinct_labels(eval_dirs)):
        refuse_unfinished(folder)
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise LumeError(f"{folder}: no summary.json (not an evaluation folder, or not finished)")
        summary = read_summary(summary_file)
        mia_file = folder / "mia.jsonl"  # only when this evaluation wrote it, never an older run's
        mia = read_jsonl(mia_file, what="membership rows") if "mia.jsonl" in summary.files else []
        training = None
        if summary.model.path and (Path(summary.model.path) / REPORT_NAME).is_file():
            training = read_unlearn_report(summary.model.path)
        models.append(ModelEntry(label, summary, mia, training))
    return models


def distinct_labels(folders: list) -> list[str]:
    """Each folder's name; a later folder of a name already taken is labelled from the last part
    where their paths differ (runA/eval/npo, then runB/eval/npo as `runB/eval/npo`), so the first
    study's `target` stays the report's target."""
    parts = [Path(folder).resolve().parts for folder in folders]
    labels = []
    for index, path in enumerate(parts):
        depth = 1
        for earlier in (q for q in parts[:index] if q[-1] == path[-1]):
            shortest = min(len(path), len(earlier))
            depth = max(depth, next((k for k in range(1, shortest + 1) if path[-k] != earlier[-k]), shortest))
        labels.append("/".join(path[-depth:]))
    return labels


TUNED_RECORD = "tuned.json"  # a study's: where each method's settings were chosen (its entries' `tuned_by`)


def tuned_notes(out_dir: Path, models: list[ModelEntry], eval_dirs: list[Path]) -> list[str]:
    """For each method whose settings a sweep chose: the sweep, and how many of the documents scored
    here it tuned on (none, in a study of a target's test documents)."""
    path = Path(out_dir) / TUNED_RECORD
    tuned = read_json(path, what="tuned settings record") if path.is_file() else {}
    lines = []
    for folder, entry in zip(map(Path, eval_dirs), models):
        record = tuned.get(entry.label)
        if not record:
            continue
        scored = {row["doc_id"] for row in read_jsonl(folder / "items.jsonl", what="evaluation items")}
        scored |= {row["id"].rsplit("/", 1)[-1] for row in entry.mia_rows if row.get("set") == "held-out"}
        whose = "lume's defaults for a target it built, " if record.get("defaults") else ""
        where = (f"- {entry.label}: {whose}settings chosen by sweep {record.get('sweep')} "
                 f"(trial {record.get('trial')}) on the {record.get('part')} documents of {record.get('target')}; ")
        if record.get("documents") is None:
            lines.append(where + "the documents it tuned on are not recorded")
            continue
        shared = scored & set(record["documents"])
        lines.append(where + (f"**{len(shared)} of the {len(scored)} documents scored here were tuned on**" if shared
                              else f"none of the {len(scored)} documents scored here was tuned on"))
    return ["Where the settings were chosen:", "", *lines, ""] if lines else []


def load_attacks(run_dir: Path) -> dict[str, AttackResults]:
    """{model label: its attacks.json} for every `RUN_DIR/attacks/<label>/attacks.json`."""
    return {path.parent.name: AttackResults.from_json(read_json(path, what="attack results"), source=path)
            for path in sorted(Path(run_dir).glob(f"attacks/*/{RESULT_NAME}"))}


def robustness_markdown(attacks: dict[str, AttackResults]) -> str:
    lines = ["", "## Robustness (is it really forgotten?)", "",
             "Recovered fraction = (after attack − unlearned) / (target − unlearned), on the forget set; "
             "retain and MMLU change are after attack − unlearned.", ""]
    return "\n".join(lines + markdown_table(ROBUSTNESS_HEADER, robustness_rows(attacks))) + "\n"


def write_report(eval_dirs: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Write report.md (with figures/*.png beside it) and a self-contained report.html."""
    models = load_study(eval_dirs)
    text = markdown(models, tuned_notes(out_dir, models, eval_dirs))
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


# Markdown that would let a label (a folder's or a method's name) become markup: raw HTML and every
# kind of link; without them, all text the report quotes reaches the page escaped
_MARKUP = {"preprocessors": ("html_block",),
           "inlinePatterns": ("html", "link", "image_link", "reference", "image_reference", "short_reference",
                              "short_image_ref", "autolink", "automail")}


def _html_of_markdown(text: str) -> str:
    """The report's Markdown as HTML, its tables and emphasis only: whatever text it quotes is escaped."""
    import markdown as markdown_lib

    converter = markdown_lib.Markdown(extensions=["tables"])
    for registry, names in _MARKUP.items():
        for name in names:
            getattr(converter, registry).deregister(name)
    return converter.convert(text)


def _html(text: str, images: dict[str, bytes]) -> str:
    """The Markdown report as one HTML file, figures embedded as data URIs."""
    body = _html_of_markdown(text)
    body += "<h2>Figures</h2>" + "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>" for name, data in images.items())
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>LUME report</title><style>{style}</style>"
            f"</head><body>{body}</body></html>\n")
