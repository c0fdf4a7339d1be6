"""The study's tables in Markdown: headline numbers, the 12 task numbers, paired differences,
the SemEval-file MIA beside ours, and the published numbers (each labelled as what it is)."""

from __future__ import annotations

import numpy as np

from lume.metrics import AGGREGATE_ORDER, MIA_ATTACKS
from lume.metrics.aggregate import MMLU_THRESHOLD
from lume.metrics.oracle import forget_losses, forget_quality, privleak, task_distances
from lume.metrics.uncertainty import interval, paired_difference
from lume.models.released import RELEASED
from lume.reports import ModelEntry, mia_set_label, number, with_interval
from lume.results import EvaluationSummary, Headline, PublishedScores, UnlearnReport
from lume.stages.evaluation import SECTIONS
from lume.stages.evaluation.general_section import general_nll
from lume.stages.unlearning.recipes import RECIPES, target_kind

# The LUME paper's baselines on the released OLMo-7B target, final protocol (published, not
# ours). The SemEval-2025 teams' numbers live on their recipes (`Recipe.published`).
BASELINES = {"olmo-7b": {
    "Gradient Ascent": PublishedScores(0.394, 0.0, 0.912, 0.269, below_threshold=True),
    "Gradient Difference": PublishedScores(0.243, 0.0, 0.382, 0.348),
    "KL minimisation": PublishedScores(0.395, 0.0, 0.916, 0.269, below_threshold=True),
    "NPO": PublishedScores(0.188, 0.021, 0.080, 0.463)}}
SHORT_NAMES = [f"{s[0].upper()}-{t[-1]}-{'R' if m == 'regurgitation' else 'K'}" for s, t, m in AGGREGATE_ORDER]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def _paired_replicates(first: ModelEntry, second: ModelEntry, name: str) -> tuple[list, list] | None:
    """Both entries' resampled values of `name`; None where either lacks them or they were drawn
    over different data (never paired then)."""
    a, b = first.summary.replicates(name), second.summary.replicates(name)
    return None if a is None or b is None or first.summary.bootstrap.units != second.summary.bootstrap.units \
        else (a, b)


def paired(first: ModelEntry, second: ModelEntry, name: str) -> tuple[float, float, float, bool] | None:
    """first − second on `name`: the point, its paired 95 % interval and whether that excludes 0;
    None where they cannot be paired."""
    both = _paired_replicates(first, second, name)
    if both is None:
        return None
    result = paired_difference(*both)
    low, high = result["interval"]
    return _point(first.summary, name) - _point(second.summary, name), low, high, result["significant"]


def difference(first: ModelEntry, second: ModelEntry, name: str) -> str:
    """first − second on `name`, with its paired 95 % interval; `*` when it excludes 0."""
    found = paired(first, second, name)
    if found is None:
        return "–"
    point, low, high, significant = found
    return f"{point:+.3f} [{low:+.3f}, {high:+.3f}]{' *' if significant else ''}"


def _point(summary: EvaluationSummary, name: str) -> float:
    """The number a Headline name (or a split/task/metric key) stands for."""
    points = {Headline.TASK_AGGREGATE: lambda: summary.task_aggregate, Headline.FINAL: lambda: summary.final,
              Headline.MMLU: lambda: summary.mmlu_accuracy, Headline.MIA_SCORE: lambda: summary.mia_score,
              Headline.MIA_AUC: lambda: summary.mia.auc_loss,
              Headline.GENERAL_NLL: lambda: general_nll(summary),
              Headline.FORGET_MEAN: lambda: summary.split_mean("forget"),
              Headline.RETAIN_MEAN: lambda: summary.split_mean("retain")}
    return points[name]() if name in points else summary.scores[name]


def mmlu_rule(entry: ModelEntry, target: ModelEntry | None) -> str:
    """The official point rule (MMLU below 75 % of the target's), and whether it holds significantly."""
    if not (entry.summary.mmlu and entry.summary.mmlu.below_threshold):
        return ""
    a, b = entry.summary.replicates(Headline.MMLU), target.summary.replicates(Headline.MMLU) if target else None
    if a is None or b is None:
        return " ⚠ below 75 % of target"
    significant = paired_difference(a, [MMLU_THRESHOLD * v for v in b])["significant"]
    return f" ⚠ below 75 % of target ({'significant' if significant else 'not significant'})"


def headline(models: list[ModelEntry], target: ModelEntry | None) -> list[str]:
    rows = []
    for entry in sorted(models, key=lambda e: -(e.summary.final or -1)):
        summary = entry.summary
        rows.append([entry.label, with_interval(summary.task_aggregate, summary, Headline.TASK_AGGREGATE),
                     with_interval(summary.mia_score, summary, Headline.MIA_SCORE),
                     with_interval(summary.mmlu_accuracy, summary, Headline.MMLU) + mmlu_rule(entry, target),
                     with_interval(summary.final, summary, Headline.FINAL)])
    return markdown_table(["model", "task aggregate", "MIA score", "MMLU", "final"], rows)


def task_numbers(models: list[ModelEntry]) -> list[str]:
    rows = [[entry.label] + [with_interval(entry.summary.scores["/".join(k)], entry.summary, "/".join(k))
                                for k in AGGREGATE_ORDER] for entry in models]
    return markdown_table(["model"] + SHORT_NAMES, rows)


def differences(models: list[ModelEntry], target: ModelEntry | None) -> list[str]:
    methods = [m for m in models if m is not target and m.summary.final is not None]
    if target is None or not methods:
        return []
    best = max(methods, key=lambda m: m.summary.final)
    general = general_nll(target.summary) is not None  # where it was measured
    rows = [[m.label, difference(m, target, Headline.FORGET_MEAN), difference(m, target, Headline.RETAIN_MEAN),
             *([difference(m, target, Headline.GENERAL_NLL)] if general else []),
             difference(m, target, Headline.FINAL), "–" if m is best else difference(m, best, Headline.FINAL)]
            for m in methods]
    header = ["model", "forget mean − target", "retain mean − target",
              *(["general NLL − target"] if general else []), "final − target", f"final − {best.label}"]
    return ["", "## Differences (paired bootstrap, 95 %)", "",
            f"Each method against the target and against the best method ({best.label}): the difference and its "
            "interval over the same resamples; `*` marks a difference whose interval excludes 0.", ""] + markdown_table(
        header, rows)


TOP_PAIRED = 5  # methods whose every pair the report compares


def top_pairs(models: list[ModelEntry]) -> list[str]:
    """final − final of every pair among the best methods, then of the best against every other
    method, each with its paired 95 % interval: whether the best beats each one beyond noise."""
    ranked = sorted((m for m in models if m.label not in ("target", "oracle") and m.summary.final is not None),
                    key=lambda m: -m.summary.final)
    methods = ranked[:TOP_PAIRED]
    if len(methods) < 3:  # two are compared in the Differences table already
        return []
    pairs = [(first, second) for i, first in enumerate(methods) for second in methods[i + 1:]]
    pairs += [(ranked[0], other) for other in ranked[TOP_PAIRED:]]
    rows = [[first.label, second.label, difference(first, second, Headline.FINAL)] for first, second in pairs]
    rest = ", then the best against every other" if len(ranked) > TOP_PAIRED else ""
    return ["", f"## The best {len(methods)} methods, pair by pair{rest} (final score, paired bootstrap, 95 %)", "",
            "`*`: the interval excludes 0, so the first method's final score is higher than the second's beyond "
            "the evaluation's own uncertainty.", ""] + markdown_table(["method", "against", "final difference"], rows)


MMLU_CHANCE = 0.25  # four choices


def mmlu_at_chance(models: list[ModelEntry]) -> list[str]:
    """A line naming the models whose MMLU interval contains chance: there the final score's
    utility part cannot see damage."""
    found = [m.label for m in models if (bounds := m.summary.interval(Headline.MMLU))
             and bounds[0] <= MMLU_CHANCE <= bounds[1]]
    if not found:
        return []
    return ["", f"MMLU at chance: the 95 % interval of {', '.join(found)} contains {MMLU_CHANCE} (four choices), so "
                "the final score's utility part cannot see damage there; the general-text NLL (Extra measures, and "
                "its difference to the target above) can."]


def membership_finding(models: list[ModelEntry], target: ModelEntry | None) -> list[str]:
    """Said plainly: which methods moved the MIA AUC from the target's beyond its interval."""
    methods = [m for m in models if m is not target and m.summary.mia]
    if target is None or not target.summary.mia or not methods:
        return []
    moved = [m.label for m in methods if difference(m, target, Headline.MIA_AUC).endswith("*")]
    auc = target.summary.mia.auc_loss
    if moved:
        return ["", f"Membership: {', '.join(moved)} moved the MIA AUC from the target's ({auc:.3f}) beyond its "
                "95 % interval; the others did not."]
    return ["", f"Membership: no method moved the MIA AUC from the target's ({auc:.3f}) beyond its 95 % interval: "
            "the forget documents can still be told apart from never-seen ones as well as before unlearning."]


RETAIN_TOLERANCE = 0.15  # how far below the target's the retain mean may fall for a method that "keeps"


def _forgets_and_keeps(entry: ModelEntry, target: ModelEntry) -> str:
    """forgets-and-keeps, damages, keeps-only or unknown, each beyond its interval."""
    forget, retain = paired(entry, target, Headline.FORGET_MEAN), paired(entry, target, Headline.RETAIN_MEAN)
    if forget is None or retain is None:
        return "unknown"
    forgets, keeps = forget[2] < 0, retain[1] > -RETAIN_TOLERANCE
    verdicts = {(True, True): "forgets and keeps", (True, False): "forgets, damages"}
    return verdicts.get((forgets, keeps), "does not forget")


def forgetting_finding(models: list[ModelEntry], target: ModelEntry | None) -> list[str]:
    """Said plainly: which methods forget (forget mean below the target's) and keep (retain mean
    within RETAIN_TOLERANCE of it), both beyond their paired 95 % intervals, with a task
    aggregate whose interval excludes 0."""
    methods = [m for m in models if m is not target and m.summary.final is not None]
    if target is None or not methods:
        return []
    verdicts = {m.label: _forgets_and_keeps(m, target) for m in methods}
    for m in methods:
        low = (m.summary.interval(Headline.TASK_AGGREGATE) or [0])[0]
        if verdicts[m.label] == "forgets and keeps" and not low > 0:
            verdicts[m.label] = "forgets and keeps, task aggregate not beyond 0"
    groups = {verdict: [label for label, v in verdicts.items() if v == verdict] for verdict in verdicts.values()}
    said = "; ".join(f"{verdict}: {', '.join(labels)}" for verdict, labels in groups.items())
    return ["", f"Forgetting: {said} (forget mean below the target's, retain mean within {RETAIN_TOLERANCE} of it, "
            "each beyond its paired 95 % interval)."]


def attack_aucs(models: list[ModelEntry]) -> list[str]:
    """Every membership attack's AUC with its 95 % interval (the loss attack's is the official one)."""
    measured = [m for m in models if m.summary.mia]
    attacks = [a for a in MIA_ATTACKS if measured and all(a in m.summary.mia.aucs for m in measured)]
    if not attacks:
        return []
    rows = [[m.label] + [with_interval(m.summary.mia.aucs[a], m.summary, Headline.attack_auc(a)) for a in attacks]
            for m in measured]
    return ["", "## Membership attacks (AUC, 95 % intervals; only the loss attack is in the final score)", "",
            "0.5: members and non-members cannot be told apart (docs/metrics.md gives each attack's formula).",
            ""] + markdown_table(["model"] + [a.replace("_", " ").replace("plus plus", "++") for a in attacks],
                                 rows) + widest_auc_interval(measured)


def widest_auc_interval(models: list[ModelEntry]) -> list[str]:
    """How finely the study tells membership apart: the widest 95 % interval of the loss attack's AUC."""
    widths = [(bounds[1] - bounds[0], m.label) for m in models if (bounds := m.summary.interval(Headline.MIA_AUC))]
    if not widths:
        return []
    width, label = max(widths)
    return ["", f"The widest loss-attack AUC interval is {width:.3f} wide ({label}): AUCs closer than that are not "
                "told apart by this study."]


def _privleak(entry: ModelEntry, oracle: ModelEntry) -> str:
    """privleak in percent, with its paired 95 % interval over the same resamples when there is one."""
    if not entry.summary.mia or not oracle.summary.mia:
        return "–"
    point = privleak(entry.summary.mia.auc_loss, oracle.summary.mia.auc_loss)
    if point is None:
        return "– (oracle AUC 0)"
    both = _paired_replicates(entry, oracle, Headline.MIA_AUC)
    leaks = [privleak(a, b) for a, b in zip(*both)] if both else [None]
    if None in leaks:  # no pairing, or resamples where the oracle's AUC is 0: the point alone
        return f"{point:+.1f} %"
    low, high = interval(np.asarray(leaks))
    return f"{point:+.1f} % [{low:+.1f}, {high:+.1f}]"


def beyond_official(models: list[ModelEntry]) -> list[str]:
    """Against the retrained oracle (lume.metrics.oracle): privleak, distance per task, forget
    quality; kept out of the final score. Only in a study that built the oracle."""
    oracle = next((m for m in models if m.label == "oracle"), None)
    if oracle is None:
        return []
    oracle_losses = list(forget_losses(oracle.mia_rows).values())
    rows = []
    for entry in models:
        summary = entry.summary
        leak = _privleak(entry, oracle)
        distances = task_distances(summary.scores, oracle.summary.scores)
        losses = list(forget_losses(entry.mia_rows).values())
        quality = forget_quality(losses, oracle_losses) if losses and oracle_losses else None
        rows.append([entry.label, leak]
                    + [number(distances[task]) for task in sorted(distances)] + [number(quality)])
    return ["", "## Beyond the official score: against the retrained oracle (not in the final score)", "",
            "The oracle is the target's base trained with the target's settings without the forget documents. "
            "privleak: (AUC − oracle's AUC) / oracle's AUC, loss attack (0 ideal; above: the forget set still "
            "leaks). Distance: mean |model − oracle| over a task's four numbers (0 ideal). Forget quality: "
            "KS-test p-value, per-document forget losses against the oracle's (1 ideal).", ""] + markdown_table(
        ["model", "privleak", "distance Task1", "distance Task2", "distance Task3", "forget quality (p)"], rows)


def semeval_mia(models: list[ModelEntry]) -> list[str]:
    beside = [m for m in models if m.summary.mia_semeval]
    if not beside:
        return []
    rows = [[m.label, number(m.summary.mia_semeval.auc_loss),
             number(m.summary.mia_semeval.mia_score)] for m in beside]
    return ["", "## MIA on the SemEval files (extra, not in the final score)", "",
            "Not part of the final score: " + beside[0].summary.mia_semeval.note + ".", ""] + markdown_table(
        ["model", "AUC", "MIA score"], rows)


def extra_sections(models: list[ModelEntry]) -> list[str]:
    """The numbers of registered sections that are not part of the final score."""
    rows = [[entry.label, label, note, value]
            for section in (cls() for cls in SECTIONS.values()) if not section.final_part
            for entry in models if section.present(entry.summary)
            for label, note, value in section.table_rows(entry.summary)]
    if not rows:
        return []
    header = ["model", "measure", "", "value"]
    return ["", "## Extra measures (not in the final score)", ""] + markdown_table(header, rows)


def published_rows(kind: str) -> list[tuple[str, PublishedScores]]:
    """The published numbers for a released target of `kind`: the paper's baselines, then the
    teams' (ranked first, by final score)."""
    teams = [(f"{recipe.team}{', ' + scores.place if scores.place else ''} (recipe {recipe.name})", scores)
             for recipe in map(RECIPES.__getitem__, RECIPES) if (scores := recipe.published.get(kind))]
    ranked = sorted(teams, key=lambda row: (row[1].below_threshold, -row[1].final))
    return list(BASELINES.get(kind, {}).items()) + ranked


def published(models: list[ModelEntry]) -> list[str]:
    """The published numbers for the released target evaluated here (labelled as published), or,
    for a target lume built, the 7B ones for scale."""
    sizes = [RELEASED[m.summary.model.name].size for m in models if m.summary.model.name in RELEASED]
    if sizes:
        title = f"## Published numbers for this target (OLMo-{sizes[0]}, not computed here)"
    else:
        title = "## Published numbers (OLMo-7B target, not computed here; a different target, for scale)"
    rows = [[name, number(s.final), number(s.task_aggregate), number(s.mia_score),
             number(s.mmlu) + (" (below threshold)" if s.below_threshold and s.mmlu is not None else "")]
            for name, s in published_rows(f"olmo-{(sizes[0] if sizes else '7B').lower()}")]
    return ["", title, "", "The baselines from the LUME paper; each team's numbers from the SemEval-2025 Task 4 "
            "leaderboard.", ""] + markdown_table(["method", "final", "task aggregate", "MIA score", "MMLU"], rows)


def recipe_of(training: UnlearnReport | None) -> tuple[str, str] | None:
    """(recipe, target kind) of an unlearning report that came from a recipe, else None."""
    if not training:
        return None
    name = training.recipe or training.config.get("recipe")
    if name not in RECIPES:
        return None
    return name, training.target_kind or target_kind(training.model_in or "")


def published_recipes(models: list[ModelEntry]) -> list[str]:
    """Each recipe's numbers here beside its team's published leaderboard ones for the same
    released target (labelled as published; none for a target lume built)."""
    rows = []
    for entry in models:
        found = recipe_of(entry.training)
        published = RECIPES[found[0]].published.get(found[1]) if found else None
        if not published:
            continue
        summary = entry.summary
        ours = [summary.final, summary.task_aggregate, summary.mia_score, summary.mmlu_accuracy]
        theirs = [published.final, published.task_aggregate, published.mia_score, published.mmlu]
        rows.append([f"{entry.label} ({found[0]}, {found[1]})", *(number(v) for v in ours),
                     *(number(v) for v in theirs)])
    if not rows:
        return []
    return ["", "## Recipes beside their teams' published numbers", "",
            "lume's run of each recipe on this target, and the team's own numbers on the SemEval-2025 Task 4 "
            "leaderboard for the same released target (published, not computed here).", ""] + markdown_table(
        ["model", "final", "task aggregate", "MIA score", "MMLU", "published final", "published task aggregate",
         "published MIA score", "published MMLU"], rows)


RERUN_NUMBERS = {Headline.TASK_AGGREGATE: "task aggregate", Headline.MIA_SCORE: "MIA score", Headline.MMLU: "MMLU",
                 Headline.FINAL: "final"}  # compared between reruns, as the headline table names them


def provenance(models: list[ModelEntry]) -> list[str]:
    """What each number depends on beside the settings: where and with what it was made."""
    rows = []
    for entry in models:
        summary, training = entry.summary, entry.training
        versions = summary.versions
        trained = (f"{training.num_processes or 1} × {training.device}, "
                   f"{(training.precision or {}).get('mixed_precision', '–')}, "
                   f"seed {training.config.get('training', {}).get('seed', '–')}") if training else "–"
        rows.append([entry.label, (summary.model.fingerprint or "–")[:12], (summary.data.fingerprint or "–")[:12],
                     trained, f"{summary.model.device or '–'}, {summary.model.dtype or '–'}",
                     " ".join(f"{name} {versions[name]}" for name in ("torch", "transformers", "lume-unlearning")
                              if name in versions)])
    return ["", "## How each model was made", "",
            "What a rerun needs beside the settings: the model's and the data's fingerprints, where it trained "
            "(processes × device, mixed precision, training seed) and was evaluated, and the versions.",
            ""] + markdown_table(
        ["model", "model fingerprint", "data fingerprint", "trained on", "evaluated on", "versions"], rows)


def _first_run(models: list[ModelEntry], index: int) -> ModelEntry | None:
    """The earlier entry of the same folder name (a rerun's later folder is labelled by its path)."""
    name = models[index].label.rsplit("/", 1)[-1]
    return next((m for m in models[:index] if m.label.rsplit("/", 1)[-1] == name), None)


def _rerun_cell(first: ModelEntry, rerun: ModelEntry, name: str) -> tuple[str, str]:
    """rerun − first on `name`, and whether either number lies outside the other's 95 % interval
    (a difference the evaluation's own uncertainty does not cover)."""
    points = [_point(entry.summary, name) for entry in (first, rerun)]
    spans = [(entry.summary.intervals or {}).get(name) for entry in (first, rerun)]
    if None in points:
        return "–", "not measured"
    if None in spans:
        return f"{points[1] - points[0]:+.3f}", "no intervals"
    outside = any(not low <= point <= high for point, (low, high) in zip(points, reversed(spans)))
    return f"{points[1] - points[0]:+.3f}", "differs" if outside else "within its interval"


def reruns(models: list[ModelEntry]) -> list[str]:
    """Models evaluated in two folders of the same name (a study rerun, on another machine or
    number of processes): where their numbers differ beyond their 95 % intervals."""
    rows = []
    for index, rerun in enumerate(models):
        first = _first_run(models, index)
        for name, shown_as in RERUN_NUMBERS.items() if first else ():
            change, verdict = _rerun_cell(first, rerun, name)
            rows.append([rerun.label, shown_as, number(_point(first.summary, name)),
                         number(_point(rerun.summary, name)), change, verdict])
    if not rows:
        return []
    return ["", "## Reruns", "",
            "Each model that appears in two folders of the same name, the later against the first: the "
            "difference, and whether either number lies outside the other's 95 % interval.", ""] + markdown_table(
        ["model", "number", "first", "rerun", "difference", ""], rows)


def tuning_note(models: list[ModelEntry]) -> list[str]:
    """The report's first words where it scores models on a target's tuning documents."""
    tuned = [m.label for m in models if m.summary.data and m.summary.data.part == "tuning"]
    if not tuned:
        return []
    return [f"**Scored on the target's tuning documents** ({', '.join(tuned)}): a sweep chooses settings on these "
            "very documents, so these numbers flatter what was chosen. Report the chosen settings from a study on "
            "the target's test documents.", ""]


def markdown(models: list[ModelEntry], notes: list[str] = ()) -> str:
    """The leaderboard; NOTES (lines) come first, after the title."""
    target = next((m for m in models if m.label == "target"), None)
    first = models[0].summary
    boot, mia = first.bootstrap, first.mia
    limit = first.mmlu.limit_per_subject if first.mmlu else None
    lines = ["# LUME leaderboard", "", *tuning_note(models), *notes,
             "Aggregates follow the official protocol. In brackets: 95 % bootstrap intervals "
             f"({boot.resamples} resamples of documents and MMLU questions, seed {boot.seed}, "
             "the same resamples for every model)." if boot else "Aggregates follow the official protocol.", ""]
    lines += headline(models, target)
    lines += ["", f"MIA score: the loss attack, members against non-members, on {mia_set_label(mia)} "
              f"({mia.members if mia else '–'} members, {mia.non_members if mia else '–'} non-members). "
              f"Evaluated items per model: {first.data.items}; MMLU: "
              f"{'all questions' if not limit else f'{limit} question(s) per subject'}."]
    lines += mmlu_at_chance(models)
    lines += ["", "## Task numbers", "",
              "Forget (F) and retain (R) per task (1-3): R = regurgitation (ROUGE-L recall), K = knowledge (exact "
              "match). Forget numbers should fall, retain numbers stay.", ""]
    lines += task_numbers(models) + differences(models, target) + top_pairs(models)
    lines += forgetting_finding(models, target)
    lines += membership_finding(models, target)
    lines += attack_aucs(models) + beyond_official(models) + semeval_mia(models) + extra_sections(models)
    lines += published_recipes(models) + published(models) + reruns(models) + provenance(models)
    return "\n".join(lines) + "\n"
