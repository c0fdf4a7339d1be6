"""The study report's figures (forget against retain, per-task bars, MIA histograms, training
losses, distance to the oracle, robustness), as PNG bytes for report.md's files and
report.html; matplotlib without a display."""

from __future__ import annotations

import io

from lume.metrics import AGGREGATE_ORDER
from lume.metrics.oracle import task_distances
from lume.reports import ModelEntry
from lume.results import AttackResults, EvaluationSummary, Headline
from lume.stages.evaluation.general_section import general_nll
from lume.stages.evaluation.membership_section import official_rows


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return buffer.getvalue()


def labelled(figure, axis, **labels):
    """The figure, its axis labelled and its legend outside on the right (labels never cover points)."""
    axis.set(**labels)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (both higher is better), by x."""
    front, best_y = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return sorted(front)


def draw_front(axis, front: list[tuple[float, float]]) -> None:
    """The frontier's points ringed and joined (one point alone still shows)."""
    if front:
        axis.plot(*zip(*front), linestyle="--", color="grey", marker="o", markersize=13, markerfacecolor="none",
                  label="Pareto frontier")


def _error(summary: EvaluationSummary, name: str, value: float, flip: bool = False) -> list[float]:
    """Distances below and above `value` to its interval's ends (for error bars); 0 without one."""
    low, high = summary.interval(name) or (value, value)
    low, high = (1 - high, 1 - low) if flip else (low, high)
    return [max(value - low, 0.0), max(high - value, 0.0)]


def forget_vs_retain(models: list[ModelEntry]):
    """Each model at (1 − mean forget number, mean retain number) with 95 % intervals, the Pareto
    frontier of the models ringed; labelled in the legend, so labels never overlap."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    markers, points = "osD^vP*Xh<>", []
    for index, entry in enumerate(models):
        summary = entry.summary
        forget, retain = summary.split_mean("forget"), summary.split_mean("retain")
        if forget is None or retain is None:
            continue
        x, y = 1 - forget, retain
        axis.errorbar(x, y, xerr=[[e] for e in _error(summary, Headline.FORGET_MEAN, x, flip=True)],
                      yerr=[[e] for e in _error(summary, Headline.RETAIN_MEAN, y)], fmt=markers[index % len(markers)],
                      capsize=3, label=entry.label)
        points.append((x, y))
    draw_front(axis, pareto_front(points))
    return labelled(figure, axis, xlabel="forgetting: 1 − mean forget score", ylabel="utility: mean retain score",
                    xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="Forgetting against utility (95 % intervals)")


def forget_vs_general(models: list[ModelEntry]):
    """Each model at (1 − mean forget number, general-text NLL) with 95 % intervals, the models'
    Pareto frontier ringed: forgetting against the damage MMLU cannot see in a small model (lower
    NLL: less damage)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    points = []
    for index, entry in enumerate(models):
        summary, forget = entry.summary, entry.summary.split_mean("forget")
        general = general_nll(summary)
        if forget is None or general is None:
            continue
        axis.errorbar(1 - forget, general, xerr=[[e] for e in _error(summary, Headline.FORGET_MEAN, 1 - forget, True)],
                      yerr=[[e] for e in _error(summary, Headline.GENERAL_NLL, general)],
                      fmt="osD^vP*Xh<>"[index % 11], capsize=3, label=entry.label)
        points.append((1 - forget, -general))  # lower NLL is better: the frontier of its negation
    draw_front(axis, [(x, -y) for x, y in pareto_front(points)])
    return labelled(figure, axis, xlabel="forgetting: 1 − mean forget score",
                    ylabel="general-text NLL (lower: less damage)",
                    title="Forgetting against general ability (95 % intervals)")


def leaderboard_figure(models: list[ModelEntry]):
    """The final score of each model, best first, with its 95 % interval."""
    plt = pyplot()
    ranked = sorted((m for m in models if m.summary.final is not None), key=lambda m: m.summary.final)
    figure, axis = plt.subplots(figsize=(6.5, 0.4 * len(ranked) + 1.2))
    for row, entry in enumerate(ranked):
        final = entry.summary.final
        axis.errorbar(final, row, xerr=[[e] for e in _error(entry.summary, Headline.FINAL, final)], fmt="o", capsize=3,
                      color="black")
    axis.set_yticks(range(len(ranked)), [m.label for m in ranked], fontsize=8)
    axis.set(xlabel="final score (95 % interval)", title="Leaderboard")
    return figure


def per_task_bars(models: list[ModelEntry]):
    plt = pyplot()
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
    plt = pyplot()
    figure, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3), sharey=True, squeeze=False)
    for axis, entry in zip(axes[0], models):
        rows = official_rows(entry.summary, entry.mia_rows)
        for member, name in ((True, "members"), (False, "non-members")):
            axis.hist([r["loss"] for r in rows if r["member"] == member], bins=20, alpha=0.6, label=name)
        axis.set(title=entry.label, xlabel="mean token NLL")
    axes[0][0].legend(fontsize=7)
    return figure


def training_losses(models: list[ModelEntry]):
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for entry in models:
        runs = entry.training.runs or {"": entry.training}  # a merging recipe: each of its runs
        for run, training in runs.items():
            losses = training.losses
            axis.plot([r["step"] for r in losses], [r["loss"] for r in losses],
                      label=f"{entry.label}: {run}" if run else entry.label)
    axis.set(xlabel="step", ylabel="training loss", title="Unlearning loss")
    axis.legend(fontsize=7)
    return figure


def oracle_distances(models: list[ModelEntry], oracle: ModelEntry):
    """Bars of each model's distance to the retrained oracle per task (0 is the ideal)."""
    plt = pyplot()
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
    if any(m.summary.final is not None for m in models):
        out["leaderboard"] = png(leaderboard_figure(models))
    if any(general_nll(m.summary) is not None for m in models):
        out["forget_vs_general"] = png(forget_vs_general(models))
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


def robustness_figure(attacks: dict[str, AttackResults]) -> bytes:
    """Bars of recovered fraction (regurgitation and knowledge together) per method and attack."""
    plt = pyplot()
    names = sorted({name for result in attacks.values() for name, part in result.attacks.items()
                    if not part.by_view})
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(attacks), 1)
    for i, (model, result) in enumerate(attacks.items()):
        values = []
        for name in names:
            part = result.attacks.get(name)
            recovered = part.recovered if part else {}
            parts = [v for k, v in recovered.items() if k.startswith("forget/all/") and v is not None]
            values.append(sum(parts) / len(parts) if parts else 0.0)
        axis.bar([j + i * width for j in range(len(names))], values, width, label=model)
    axis.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, fontsize=8)
    axis.set(ylabel="recovered fraction", title="What comes back after each attack")
    axis.axhline(0, color="black", linewidth=0.5)
    axis.legend(fontsize=7)
    return png(figure)
