"""`sweep`: search each method's settings with Optuna, on the probes, then evaluate the best.

Every trial is an ordinary study step (`RUN/trials/<method>-<settings key>`, keyed and
resumable like `lume run`'s). A trial's value is the selection score of its chosen step, from
the probes (selection data, never the final numbers); each probe is reported to Optuna, so a
pruner can stop a poor trial early. Optuna's storage (SQLite in RUN by default, any database
URL) holds the trials: several `lume sweep` processes on the same storage share the work, and an
interrupted sweep continues (a trial whose worker died is retried with the same settings, and
its step resumes from its last checkpoint). Once the trials are done, each method's best trial
is evaluated in full (unless `evaluate_best` is false) and the study report gains the trial table
and the Pareto plot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from lume.config import MAX_SEED, coerce_fields, restated, setting, settings_key, shown, with_dotted
from lume.data import LumeData
from lume.data.manifest import read_manifest, target_selection
from lume.data.paths import cache_dir
from lume.errors import InputError, LumeError, set_study_note
from lume.files import write_json_atomic, write_text_atomic
from lume.outputs import one_writer, own_folder
from lume.results import ProbeRow
from lume.stages.evaluation import EvalConfig
from lume.stages.unlearning import UnlearnConfig, read_unlearn_report
from lume.stages.unlearning.unlearner import probed
from lume.study.config import StudyConfig, read_study
from lume.study.course import OpenStudy, build_oracle, evaluated_course, open_study
from lume.study.entries import StudyMethod, study_methods
from lume.study.objectives import check_objectives, directions, front, needs_oracle, representative, trial_values
from lume.study.steps import unlearned_step

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "cmaes": "CmaEsSampler",
            "qmc": "QMCSampler", "gp": "GPSampler", "nsga2": "NSGAIISampler"}
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
           "hyperband": "HyperbandPruner", "successive-halving": "SuccessiveHalvingPruner"}
SWEEP_NAME = "sweep.json"

log = logging.getLogger(__name__)


@dataclass
class SweepConfig(StudyConfig):
    name: str = restated(StudyConfig, "name", "sweep", help="The sweep's name")
    out: str = restated(StudyConfig, "out", "runs/sweep")
    methods: list = restated(StudyConfig, "methods", help=(
        "Each: UnlearnConfig fields (eval_every set, so that trials are scored on the probes), an optional "
        "`name`, and `search`: {dotted field: {low, high[, log]} or {choices: [...]}}"), factory=list)
    evaluation: EvalConfig = restated(StudyConfig, "evaluation", help="How each method's best trial is evaluated",
                                      factory=lambda: EvalConfig(mia_set="validation", mmlu_limit=1))
    trials: int = setting(8, "Trials per method, finished or pruned, all workers together")
    sampler: str = setting("tpe", "One of SAMPLERS (grid: every search entry needs `choices`)")
    pruner: str = setting("none", "One of PRUNERS")
    storage: str | None = setting(None, "An Optuna storage URL; default sqlite:///RUN/optuna.db")
    seed: int = setting(0, "The sampler's seed")
    heartbeat: int = setting(60, "Seconds between a running trial's heartbeats; silent for 3 of them = its worker "
                                 "died")
    keep_weights: str = setting("front", "Weights kept of finished trials: front (each method's best trial, or its "
                                         "Pareto front: the only ones a sweep evaluates) or all",
                                choices=("front", "all"))
    objectives: list[str] = setting(help="What trials are ranked on, from their chosen step's probes: [final] (the "
                                         "final-score formula), or several of forget, retain, mia, mmlu, and with "
                                         "the target's oracle privleak (|privleak|) and forget_quality (a "
                                         "multi-objective search; its Pareto front is kept; pruner none)",
                                    factory=lambda: ["final"])
    evaluate_best: bool = setting(True, "Once the trials are done, evaluate each method's best trial in full on the "
                                        "tuning documents beside the target (the report's leaderboard); false "
                                        "evaluates the target only: a sweep whose choices a study reports anyway")


def _checked_search(search, method: StudyMethod, index: int, path: Path) -> dict:
    """`search` entries, each a range or a list of choices of a real UnlearnConfig field whose ends
    (or choices) the entry takes (a recipe's: on every run)."""
    where = f"methods[{index}]"
    if not isinstance(search, dict) or not search:
        raise InputError(path, "expected a mapping of settings to search, e.g. {training.learning_rate: "
                               "{low: 1.0e-5, high: 1.0e-4, log: true}}", field=f"{where}.search")
    for name, space in search.items():
        here = f"{where}.search.{name}"
        if not isinstance(space, dict) or not (set(space) == {"choices"} or {"low", "high"} <= set(space) <= RANGE):
            given = f", got {', '.join(map(str, space))}" if isinstance(space, dict) else ""
            raise InputError(path, f"expected {{low: ..., high: ...[, log: true]}} or {{choices: [...]}}, nothing "
                                   f"else{given}", field=here)
        _check_space(space, here, path)
        for value in space.get("choices") or (space["low"], space["high"]):
            try:
                trial_entry(method, {name: value}, source=path, where=where)
            except InputError:
                raise
            except LumeError as error:
                raise InputError(path, str(error), field=here) from None
    return search


def trial_entry(method: StudyMethod, params: dict, part: str = "test", source="the sweep", where: str = ""):
    """METHOD's entry with the drawn PARAMS ({dotted field: value}) over its settings, each value
    of its field's type (a float drawn for an int setting becomes the int), on PART of the
    target's documents."""
    overrides = with_dotted({} if part == "test" else {"part": part}, params.items())
    return method.entry.with_overrides(coerce_fields(UnlearnConfig, overrides, where=where, source=source))


RANGE = {"low", "high", "log"}  # a searched range's keys (a list of choices stands alone)


def _check_space(space: dict, where: str, path: Path) -> None:
    """A range is two numbers, low below high, positive when log-spaced; choices a non-empty list."""
    if "choices" in space:
        if not isinstance(space["choices"], list) or not space["choices"]:
            raise InputError(path, f"choices: expected a non-empty list, got {shown(space['choices'])}", field=where)
        return
    low, high = space["low"], space["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise InputError(path, f"low and high must be numbers, got {shown(low)} and {shown(high)}", field=where)
    if not low < high:
        raise InputError(path, f"low ({low}) must be below high ({high})", field=where)
    if not isinstance(space.get("log", False), bool):
        raise InputError(path, f"log: expected true or false, got {shown(space['log'])}", field=where)
    if space.get("log") and low <= 0:
        raise InputError(path, f"a log-spaced range needs low above 0, got {low}", field=where)


def load_sweep(path: str | Path) -> SweepConfig:
    """A sweep YAML file, every field checked and every `methods:` entry worked out before any work."""
    raw, specs, source = read_study(SweepConfig, path)
    searches = [spec.pop("search", None) if isinstance(spec, dict) else None for spec in specs]
    methods = study_methods(specs, raw["target"], source)
    if not methods:
        raise InputError(path, "no methods to sweep", field="methods")
    for index, method in enumerate(methods):
        _check_sweepable(method, f"methods[{index}]", source)
        search = _checked_search(searches[index], method, index, source)
        methods[index] = dataclasses.replace(method, written={**method.written, "search": search})
    for name in ("trials", "heartbeat"):
        if raw.get(name, 1) < 1:
            raise InputError(path, f"must be at least 1, got {raw[name]}", field=name)
    for name, choices in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if raw.get(name, getattr(SweepConfig, name)) not in choices:
            raise InputError(path, f"unknown {name} {raw[name]!r} (choose from {', '.join(choices)})", field=name)
    if raw.get("sampler") == "grid":
        _check_grid(methods, path)
    check_objectives(raw.get("objectives", ["final"]), raw.get("pruner", "none"), raw.get("sampler", "tpe"),
                     raw["target"].oracle, path)
    if raw.get("storage") is not None:
        check_storage(raw["storage"], path)
    if not 0 <= raw.get("seed", 0) <= MAX_SEED:
        raise InputError(path, f"must be between 0 and {MAX_SEED}, got {raw['seed']}", field="seed")
    return dataclasses.replace(SweepConfig(), **{**raw, "methods": methods})


def tuning_part(target: Path, data: LumeData) -> str:
    """The documents a sweep tunes on: the target's tuning part (a released target's: the SemEval
    public folds); the test documents (said) of a target without one."""
    if target_selection(read_manifest(target), data).tuning is not None:
        return "tuning"
    log.warning(f"{target} has no tuning documents: the sweep chooses settings on the documents a study of this "
                "target reports (build the target with tuning_per_task to keep them apart)")
    return "test"


def _check_sweepable(method: StudyMethod, where: str, path: Path) -> None:
    """A trial is scored on the probes: every run of it probed as it trains, or a merged recipe's
    model probed once, as merged."""
    if method.entry.merges:
        return
    if not all(config.eval_every for config in method.entry.runs.values()):
        raise InputError(path, "a sweep scores trials on the probes: set eval_every", field=f"{where}.eval_every")


DRIVERS = {"postgresql": "lume-unlearning[postgres]", "mysql": "a MySQL driver (pip install pymysql)"}


def check_storage(url: str, path: Path | str = "the sweep") -> None:
    """A storage URL that parses and whose database driver is installed; else one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:  # before ArgumentError, of which it is a kind
        raise InputError(path, f"no database dialect for {url.split(':')[0]!r}", field="storage") from None
    except (ArgumentError, ValueError) as error:
        raise InputError(path, f"not a database URL ({str(error).splitlines()[0]})", field="storage") from None
    except ImportError as error:
        backend = parsed.get_backend_name()
        advice = DRIVERS.get(backend, f"the {backend} driver")
        raise InputError(path, f"the {backend} driver is not installed ({error.name or error}); install "
                               f"{advice}", field="storage") from None


def _suggest(trial: optuna.Trial, name: str, space: dict):
    if "choices" in space:
        return trial.suggest_categorical(name, space["choices"])
    low, high, log = space["low"], space["high"], bool(space.get("log", False))
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(name, low, high, log=log)
    return trial.suggest_float(name, float(low), float(high), log=log)


class _InterruptedTrials(logging.Filter):
    """Optuna's lines on a trial stopped by Ctrl-C (a traceback, then its value), which lume's own
    interruption note replaces."""

    def __init__(self):
        super().__init__()
        self.numbers: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        found = re.match(r"Trial (\d+) failed with", str(record.msg))
        if found and record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.numbers.add(found[1])
            return False
        return not (found and found[1] in self.numbers)


def _objective(opened: OpenStudy, method: StudyMethod, trials: int, objectives: list[str]):
    """A trial: the method's settings with the sampled values, unlearned as a study step, scored
    by its chosen step's selection score; each probe is reported, so the pruner may stop it. A
    trial started when `trials` were already claimed (by another worker) stops at once, marked surplus."""
    def objective(trial: optuna.Trial) -> float:
        if claimed(trial.study, before=trial.number) >= trials:
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned()
        params = {name: _suggest(trial, name, space) for name, space in method.search.items()}
        label = f"{method.label}-{settings_key(params, 8)}"
        folder = opened.out / "trials" / label
        trial.set_user_attr("folder", str(folder))

        entry = trial_entry(method, params, opened.config.evaluation.part)  # the documents the sweep tunes on
        oracle = _oracle_row(opened, entry, method.label) if needs_oracle(objectives) else None

        def on_probe(step: int, row: ProbeRow) -> None:
            if len(objectives) == 1:  # Optuna prunes single-objective studies only
                trial.report(trial_values(row, objectives, oracle), step)
                if step and trial.should_prune():
                    raise optuna.TrialPruned()

        with one_writer(folder, wait=True):  # two workers drawing the same settings share one run
            try:
                unlearned_step(opened.steps, opened.target, entry, label, folder, opened.data, on_probe=on_probe)
            except KeyboardInterrupt:  # the next start runs these settings first, resuming their checkpoint
                trial.study.enqueue_trial(params, user_attrs={"retried_after_interrupt": trial.number})
                raise
        chosen = _ranked_row(folder, entry, opened)
        trial.set_user_attr("chosen", chosen.chosen_numbers())
        return trial_values(chosen, objectives, oracle)

    return _failures_marked(objective)


def _oracle_row(opened: OpenStudy, entry, label: str) -> ProbeRow:
    """The target's oracle probed once on the probe documents of the method's trials (the oracle's
    objectives compare each trial with it), kept in RUN/oracle-probes/ for later trials and workers."""
    config = next(iter(entry.runs.values()))
    key = settings_key([config.part, dataclasses.asdict(config.probes)], 8)
    path = opened.out / "oracle-probes" / f"{label}-{key}.json"
    if path.is_file():
        return ProbeRow.from_json(json.loads(path.read_text(encoding="utf-8")), source=path)
    row = probed(build_oracle(opened.target, opened.data), opened.target, config, 0, opened.data)
    write_json_atomic(path, row.to_json())
    return row


def _ranked_row(folder: Path, entry, opened: OpenStudy) -> ProbeRow:
    """The probe row a trial is ranked on: its run's kept step; a merged recipe's model probed once
    as merged, on the selection data its runs would probe."""
    report = read_unlearn_report(folder)
    if entry.merges:
        return probed(folder, opened.target, next(iter(entry.runs.values())), report.steps, opened.data)
    return next(r for r in report.probes if r.step == report.selection.step)


def _failures_marked(objective):
    """A trial that fails by a LumeError (a diverging loss, settings its drawn values break) is
    marked, so that it takes its place among `trials` (the sweep goes on without retrying it)."""
    def run(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except LumeError as error:
            trial.set_user_attr(FAILED, str(error)[:500])
            raise

    return run


def _check_grid(methods: list[StudyMethod], path: Path) -> None:
    """The grid sampler walks a list of choices for every searched setting."""
    for index, method in enumerate(methods):
        ranged = next((name for name, space in method.search.items() if "choices" not in space), None)
        if ranged is not None:
            raise InputError(path, "the grid sampler needs `choices` for every searched setting",
                             field=f"methods[{index}].search.{ranged}")


def _sampler(config: SweepConfig, method: StudyMethod, seed: int) -> optuna.samplers.BaseSampler:
    sampler_class = getattr(optuna.samplers, SAMPLERS[config.sampler])
    with warnings.catch_warnings():  # Optuna calls QMC and GP samplers experimental: the user chose one
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if config.sampler == "qmc":  # scrambled: an unscrambled Sobol sequence starts at every range's low end
            return sampler_class(seed=seed, scramble=True, warn_independent_sampling=False)
        if config.sampler != "grid":
            return sampler_class(seed=seed)
        return sampler_class({name: space["choices"] for name, space in method.search.items()}, seed=seed)


def _search_key(config: SweepConfig, method: StudyMethod) -> str:
    """What makes a method's trials comparable: its settings and search, the sampler, pruner and
    seed, the target and the objectives (not `trials`, which a continued sweep may raise, nor where
    it writes)."""
    ranked = {} if config.objectives == ["final"] else {"objectives": config.objectives}
    return settings_key({"spec": method.written, "sampler": config.sampler, "pruner": config.pruner,
                         "seed": config.seed, "target": dataclasses.asdict(config.target), **ranked})


def _study(config: SweepConfig, method: StudyMethod, storage) -> optuna.Study:
    """The method's Optuna study, joined or created; one the storage holds under the same name
    for another search is refused (its trials are not this sweep's)."""
    study = optuna.create_study(study_name=f"{config.name}/{method.label}", storage=storage,
                                pruner=getattr(optuna.pruners, PRUNERS[config.pruner])(),
                                directions=directions(config.objectives),
                                load_if_exists=True)
    key, found = _search_key(config, method), study.user_attrs.get(SEARCH_KEY)
    if found is None:
        study.set_user_attr(SEARCH_KEY, key)
    elif found != key:
        raise LumeError(f"sweep {config.name!r}: its storage already holds a sweep of that name whose "
                        f"{method.label} search differs (settings, ranges, sampler, pruner, seed or target); "
                        "give this sweep another `name`, or another `storage`")
    # seeded by the trials so far: a continued sweep draws new settings, not its first ones again.
    # The grid gives trial n the n-th point of one seeded order: every worker must share that order.
    study.sampler = _sampler(config, method, config.seed + (0 if config.sampler == "grid" else len(study.trials)))
    return study


RUNNING = optuna.trial.TrialState.RUNNING
CLAIMED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, RUNNING)
SEARCH_KEY, SURPLUS, FAILED = "lume_search_key", "lume_surplus", "lume_failed"


def claimed(study: optuna.Study, before: int | None = None) -> int:
    """Trials finished, pruned, failed by their settings (a diverging loss) or running (all
    workers together), of number below `before`. Neither a surplus trial (one a worker started
    when `trials` were already claimed) counts, nor one whose worker died (its retry does)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if (t.state in CLAIMED or t.user_attrs.get(FAILED)) and not t.user_attrs.get(SURPLUS)
               and (before is None or t.number < before))


def _run_trials(config: SweepConfig, opened: OpenStudy, storage) -> dict[str, optuna.Study]:
    """Each method's trials until exactly `trials` are finished or pruned by all workers
    together: a trial takes its place by its number, so two workers never both run the last one."""
    studies = {method.label: _study(config, method, storage) for method in config.methods}
    while True:
        for method, study in zip(config.methods, studies.values()):
            while claimed(study) < config.trials:
                study.optimize(_objective(opened, method, config.trials, config.objectives), n_trials=1,
                               catch=(LumeError,))
                if config.keep_weights == "front":
                    _drop_weights(study)
        if _settled(studies, config):
            return studies


def _drop_weights(study: optuna.Study) -> None:
    """The weights of every finished or pruned trial off the method's front deleted (a trial that
    leaves the front never returns to it): a sweep evaluates the front only, and a large model's
    trials would fill the disk. Their reports and probes stay."""
    kept = {trial.user_attrs.get("folder") for trial in front(study)}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                          optuna.trial.TrialState.PRUNED)):
        folder = trial.user_attrs.get("folder")
        if folder and folder not in kept:
            for weights in Path(folder).rglob("*.safetensors"):
                weights.unlink()


def _settled(studies: dict[str, optuna.Study], config: SweepConfig) -> bool:
    """Whether no trial is still running: one whose worker (or the database) died is failed once
    its heartbeat is stale, and retried; one running in another worker is waited for."""
    running = []
    for study in studies.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # each failed one is retried (a waiting copy)
        running += [f"{study.study_name} #{t.number}" for t in study.get_trials(deepcopy=False, states=(RUNNING,))]
    if running:
        log.info(f"waiting for {', '.join(running)} (in another worker, or its worker died: known within "
                 f"{3 * config.heartbeat} s)")
        time.sleep(config.heartbeat)
        return False
    return all(claimed(study) >= config.trials for study in studies.values())


def trial_rows(studies: dict[str, optuna.Study]) -> list[dict]:
    """Every trial of every method: its settings, state, value and chosen step's probe numbers
    (surplus trials, which never ran, left out)."""
    return [{"method": label, "trial": trial.number, "state": trial.state.name, "params": trial.params,
             **_values(trial), **trial.user_attrs.get("chosen", {}), "folder": trial.user_attrs.get("folder")}
            for label, study in studies.items() for trial in study.get_trials(deepcopy=False)
            if not trial.user_attrs.get(SURPLUS)]


def _values(trial: optuna.trial.FrozenTrial) -> dict:
    """{"value": v} of a single-objective trial; {"values": [...]} of a multi-objective one."""
    if trial.values is not None and len(trial.values) > 1:
        return {"values": trial.values}
    return {"value": trial.values[0] if trial.values else None}


def _finish(config: SweepConfig, opened: OpenStudy, studies: dict[str, optuna.Study]) -> None:
    """Write sweep.json and tuned.yaml; evaluate the target and (with evaluate_best) each method's
    best trial (of several objectives: the Pareto front's best by the final-score formula) in full;
    the report."""
    best = {label: trial for label, study in studies.items() if (trial := representative(study)) is not None}
    several = {"objectives": config.objectives,
               "pareto": {label: [t.number for t in front(study)] for label, study in studies.items()}} \
        if len(config.objectives) > 1 else {}
    write_json_atomic(opened.out / SWEEP_NAME, {
        "sampler": config.sampler, "pruner": config.pruner, "trials_per_method": config.trials, **several,
        "best": {label: {"trial": trial.number, "params": trial.params, **_values(trial)}
                 for label, trial in best.items()},
        "trials": trial_rows(studies)})
    write_text_atomic(opened.out / TUNED_NAME, tuned_methods(config, opened, best))
    chosen = ((label, Path(trial.user_attrs["folder"])) for label, trial in best.items())
    evaluated_course(opened, chosen if config.evaluate_best else ())


TUNED_NAME = "tuned.yaml"  # each method's chosen settings, as a study's `methods:` (`methods: RUN/tuned.yaml`)


def tuned_methods(config: SweepConfig, opened: OpenStudy, best: dict[str, optuna.trial.FrozenTrial]) -> str:
    """Each method's entry with its chosen trial's values and how far through its run the step it
    kept lies (`stop_fraction`, unprobed: a study picks no step on the documents it reports),
    named, and where they were chosen: the sweep, the trial, the target and the documents tuned on
    (a report compares them with the documents it scores)."""
    part = opened.config.evaluation.part
    selection = target_selection(read_manifest(opened.target), opened.data).part(part)
    documents = sorted({d.doc_id for d in selection.chosen + selection.held_out})
    methods = []
    for method in config.methods:
        if method.label not in best:
            continue
        entry = with_dotted({k: v for k, v in method.written.items() if k != "search"},
                            best[method.label].params.items())
        kept = None if method.entry.merges else _kept_fraction(best[method.label])
        if kept:  # the kept step, reached without probing; step 0 (nothing unlearned) trains the whole run
            entry = {**entry, "stop_fraction": kept, "select": "last", "eval_every": 0}
        methods.append({**entry, "name": method.label, "tuned_by": {
            "sweep": config.name, "trial": best[method.label].number, "target": _portable(opened.target),
            "part": part, "documents": documents}})
    return yaml.safe_dump({"methods": methods}, sort_keys=False, allow_unicode=True)


def _kept_fraction(trial: optuna.trial.FrozenTrial) -> float:
    """How far through its run TRIAL's kept step lies (0: step 0, nothing unlearned): a fraction
    carries to the test documents, whose forget set sets another length for epochs and chunks."""
    report = read_unlearn_report(trial.user_attrs["folder"])
    return round(report.selection.step / report.steps, 4)


def _portable(target: Path) -> str:
    """A target as any machine can name it: a built one by its place in lume's cache, which its
    settings key (`$LUME_CACHE/targets/<key>`), else its path or name as given."""
    try:
        return f"$LUME_CACHE/{target.resolve().relative_to(cache_dir().resolve())}"
    except ValueError:
        return str(target)


def _storage(config: SweepConfig, out: Path) -> optuna.storages.RDBStorage:
    """The shared trial storage; a trial whose worker stopped beating is retried with the same
    settings (so its study step resumes from its last checkpoint)."""
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    url = _storage_url(config, out)
    # a host that does not answer is said within seconds, not after the system's TCP timeout
    engine = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}} if url.startswith(("postgresql", "mysql")) else {}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=config.heartbeat, grace_period=3 * config.heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
        except IntegrityError:  # workers starting together both set up a new database: the loser joins
            time.sleep(0.2 * (attempt + 1))
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise LumeError(f"storage {_without_password(url)}: cannot use the database ({reason})") from None
    raise LumeError(f"storage {_without_password(url)}: workers kept colliding while setting up the database")


CONNECT_TIMEOUT = 10  # seconds a sweep waits for its storage database to answer


def _storage_url(config: SweepConfig, out: Path) -> str:
    return config.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"


def _database_error(error: BaseException):
    """The database error behind `error`, if any: Optuna may raise another one while handling it
    (an UnboundLocalError when the database is lost while a trial is told its result)."""
    from sqlalchemy.exc import SQLAlchemyError

    while error is not None and not isinstance(error, SQLAlchemyError):
        error = error.__cause__ or error.__context__
    return error


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL was refused earlier; never print a password
        return "(the storage URL)"


def sweep(config: SweepConfig) -> Path:
    """Run (or join, or continue) the sweep (CONFIG as load_sweep read it); returns the run folder
    with its report."""
    if not all(isinstance(method, StudyMethod) for method in config.methods):
        raise LumeError("a sweep's methods are worked out with their searches when its file is read: "
                        "give sweep() what load_sweep(path) returns")
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _InterruptedTrials) for f in handler.filters):
            handler.addFilter(_InterruptedTrials())
    out = own_folder(config.out)
    out.mkdir(parents=True, exist_ok=True)
    opened = open_study(config)
    opened.config = dataclasses.replace(config, evaluation=dataclasses.replace(  # trials and evaluations alike
        config.evaluation, part=tuning_part(opened.target, opened.data)))
    set_study_note(f"the finished trials are kept in the sweep's storage and {out}; the same command continues")
    try:
        studies = _run_trials(config, opened, _storage(config, out))
    except Exception as error:
        lost = _database_error(error)
        if lost is None:
            raise
        reason = str(getattr(lost, "orig", None) or lost).strip().splitlines()[0]
        raise LumeError(f"storage {_without_password(_storage_url(config, out))}: lost the database mid-sweep "
                        f"({reason}); start the same sweep again once it answers: finished trials are kept, the "
                        "interrupted one is retried") from None
    with one_writer(out, wait=True):  # one worker at a time evaluates and reports
        _finish(config, opened, studies)
    return out
