"""The report's model-selection parts: each method's path over its probed steps, the chosen
step, the Pareto frontier across methods, every probe curve, and a sweep's trials."""

from __future__ import annotations

from lume.reports.figures import draw_front, labelled, pareto_front, png, pyplot
from lume.reports import ModelEntry
from lume.reports.leaderboard import markdown_table
from lume.results import ProbeRow

PROBE_CURVES = ((lambda r: r.forget_mean, "forget probes (mean)"), (lambda r: r.retain_mean, "retain probes (mean)"),
                (lambda r: r.mia_auc, "MIA loss AUC (probe)"), (lambda r: r.mmlu_dev, "MMLU dev accuracy"),
                (lambda r: r.task_aggregate, "task aggregate (probes)"),
                (lambda r: r.selection_score, "selection score"))


def probed(models: list[ModelEntry]) -> list[ModelEntry]:
    """The unlearned models whose training recorded probes."""
    return [m for m in models if m.training and m.training.probes]


def _position(row: ProbeRow) -> tuple[float, float]:
    """(forgetting, retain score) of a probe row or a trial: the x and y of the trade-off plots."""
    return 1 - row.forget_mean, row.retain_mean


def _trials(sweep: dict) -> list[tuple[dict, ProbeRow]]:
    """Each sweep trial, and its chosen step's probe numbers (empty for a trial that did not finish)."""
    return [(trial, ProbeRow.from_json(trial, where="trials")) for trial in sweep["trials"]]


def trajectories(models: list[ModelEntry]):
    """Each method's path through (forgetting, retain score) over its probed steps, the chosen
    step starred, and the Pareto frontier of every probed point of every method."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    points = []
    for entry in models:
        rows, chosen = entry.training.probes, entry.training.selection.step
        xs, ys = zip(*(_position(r) for r in rows))
        line, = axis.plot(xs, ys, marker="o", markersize=3, label=f"{entry.label} (steps {rows[0].step}"
                                                                  f"–{rows[-1].step})")
        axis.plot(*_position(next(r for r in rows if r.step == chosen)), marker="*", markersize=14,
                  color=line.get_color(), markeredgecolor="black")
        points += [_position(r) for r in rows if r.step > 0]
    draw_front(axis, pareto_front(points))
    return labelled(figure, axis, xlabel="forgetting: 1 − forget probe mean", ylabel="retain probe mean",
                    title="Unlearning paths over steps (★ chosen step)")


def probe_curves(models: list[ModelEntry]):
    """Every probe number over steps, per method, the chosen step marked."""
    plt = pyplot()
    figure, axes = plt.subplots(2, 3, figsize=(12, 6))
    for axis, (value, title) in zip(axes.flat, PROBE_CURVES):
        for entry in models:
            rows, chosen = entry.training.probes, entry.training.selection.step
            kept = [r for r in rows if value(r) is not None]
            line, = axis.plot([r.step for r in kept], [value(r) for r in kept], marker="o", markersize=3,
                              label=entry.label)
            axis.plot([r.step for r in kept if r.step == chosen], [value(r) for r in kept if r.step == chosen],
                      marker="*", markersize=12, color=line.get_color(), markeredgecolor="black")
        axis.set(title=title, xlabel="step")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def selection_markdown(models: list[ModelEntry]) -> str:
    """Which step each method kept, by what rule, on which data."""
    rows = []
    for entry in models:
        training = entry.training
        chosen = training.selection
        row = next(r for r in training.probes if r.step == chosen.step)
        rule = "met" if chosen.rule_met else "NOT met by any step: the last kept"
        rows.append([entry.label, f"{chosen.step} of {training.steps}", chosen.select,
                     f"{row.selection_score:.3f}", rule])
    data = models[0].training.selection.data
    lines = ["", "## Model selection", "",
             "Each method was probed every few steps; the step kept is the last, or with `select: best` the one "
             "with the highest selection score (the final-score formula on the probe numbers) among those whose "
             "MMLU (dev) is at least 75 % of the starting model's.", "",
             *markdown_table(["model", "step kept", "select", "selection score", "75 % MMLU rule"], rows), "",
             "Selection data, and how it relates to the final numbers above: "
             f"forget probes on {data['forget_documents']} forget documents (part of the forget set: by LUME's "
             "design the forget set itself is scored, its forgetting being the goal); retain probes on "
             f"{data['retain_documents']} retain documents (part of the retain set, all of which the final retain "
             f"score covers); MIA on {data['mia_members']} forget documents against {data['mia_non_members']} "
             "held-out non-members (of those the final MIA uses); MMLU on "
             f"{data['mmlu_dev_questions']} dev questions, never the test questions of the final score."]
    return "\n".join(lines) + "\n"


def sweep_markdown(sweep: dict) -> str:
    """Every trial and the best per method."""
    header = ["method", "trial", "state", "settings", "score", "step", "forget", "retain", "MMLU dev"]
    rows = [[t["method"], str(t["trial"]), t["state"], ", ".join(f"{k}={_short(v)}" for k, v in t["params"].items()),
             _score(t), *(_short(v) for v in (row.step if row.forget_mean is not None else None,
                                               row.forget_mean, row.retain_mean, row.mmlu_dev))]
            for t, row in _trials(sweep)]
    best = [[label, str(b["trial"]), ", ".join(f"{k}={_short(v)}" for k, v in b["params"].items()), _score(b)]
            for label, b in sweep["best"].items()]
    objectives = sweep.get("objectives")
    ranked = (f"A trial's scores are its chosen step's {', '.join(objectives)} (probes only); each method's Pareto "
              f"front ({_fronts(sweep)}) was kept and its trial with the best final-score formula evaluated in full"
              if objectives else "A trial's score is its chosen step's selection score (probes only); the best "
              "trial of each method was then evaluated in full")
    lines = ["", "## Sweep", "",
             f"{sweep['sampler']} sampler, {sweep['pruner']} pruner, {sweep['trials_per_method']} trials per method. "
             f"{ranked} (the tables above).", "",
             *markdown_table(["method", "best trial", "settings", "score"], best), "",
             *markdown_table(header, rows), "",
             "The Pareto plot shows every finished trial's chosen step at (1 − forget probe mean, retain probe mean)."]
    return "\n".join(lines) + "\n"


def _score(trial: dict) -> str:
    """A trial's value, or its values (several objectives) joined."""
    return " / ".join(map(_short, trial["values"])) if "values" in trial else _short(trial["value"])


def _fronts(sweep: dict) -> str:
    return "; ".join(f"{method}: trials {', '.join(map(str, numbers))}" for method, numbers in sweep["pareto"].items())


def _short(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def sweep_pareto(sweep: dict):
    """Every finished trial on its probes, by method, at (forgetting, retain) and at (forgetting,
    MMLU dev): each panel's frontier and the bests starred."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    finished = [(t, row) for t, row in _trials(sweep) if row.forget_mean is not None]
    panels = ((axes[0], _position, "retain probe mean"),
              (axes[1], lambda row: (1 - row.forget_mean, row.mmlu_dev), "MMLU dev accuracy (probes)"))
    for axis, position, ylabel in panels:
        placed = [(t, row) for t, row in finished if None not in position(row)]
        for method in sorted({t["method"] for t, _ in placed}):
            mine = [(t, row) for t, row in placed if t["method"] == method]
            dots = axis.scatter(*zip(*(position(row) for _, row in mine)), label=method, s=25)
            best = next((row for t, row in mine if t["trial"] == sweep["best"].get(method, {}).get("trial")), None)
            if best:
                axis.scatter(*position(best), marker="*", s=200, edgecolors="black", color=dots.get_facecolor()[0])
        draw_front(axis, pareto_front([position(row) for _, row in placed]))
        axis.set(xlabel="forgetting: 1 − forget probe mean", ylabel=ylabel, title="Sweep trials (★ best per method)")
    return labelled(figure, axes[1])


def selection_parts(models: list[ModelEntry], sweep: dict | None) -> tuple[str, dict[str, bytes]]:
    """The Markdown and figures of model selection and of a sweep, when the study has them."""
    text, images = "", {}
    with_probes = probed(models)
    if with_probes:
        text += selection_markdown(with_probes)
        images["trajectories"] = png(trajectories(with_probes))
        images["probe_curves"] = png(probe_curves(with_probes))
    if sweep:
        text += sweep_markdown(sweep)
        if any(row.forget_mean is not None for _, row in _trials(sweep)):  # some trial finished
            images["sweep_pareto"] = png(sweep_pareto(sweep))
    return text, images
