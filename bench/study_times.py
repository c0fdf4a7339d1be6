"""What each part of a finished study took, from the study's own records: the target's and the
oracle's training (their lume_target.json), each unlearning run (lume_unlearn.json) and each
evaluation (summary.json timings). Times are those of the machine the study ran on; a part that
came from the cache shows the run that built it.

    python bench/study_times.py runs/compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lume.data.manifest import read_manifest
from lume.results import read_summary
from lume.stages.unlearning.unlearner import REPORT_NAME, read_unlearn_report


def _built_seconds(model: Path) -> tuple[str, float | None]:
    """What made MODEL and how long it took: training a target or oracle, or unlearning."""
    if (model / REPORT_NAME).is_file():
        return "unlearning", read_unlearn_report(model).seconds
    manifest = read_manifest(model)
    if manifest is not None:
        return "training", manifest.result.get("seconds")
    return "given", None


def part_times(run: Path) -> list[tuple[str, str, float | None, float]]:
    """(model, how it was made, seconds making it, seconds evaluating it), in the study's order."""
    rows = []
    for summary_file in sorted((run / "eval").glob("*/summary.json"), key=lambda f: f.stat().st_mtime):
        summary = read_summary(summary_file)
        made, seconds = _built_seconds(Path(summary.model.path))
        rows.append((summary_file.parent.name, made, seconds, summary.timings["total_s"]))
    return rows


def _minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished study's folder (lume run's `out`)")
    rows = part_times(parser.parse_args().run)
    print("| model | made by | making (min) | evaluating (min) |\n|---|---|---|---|")
    for label, made, seconds, evaluating in rows:
        print(f"| {label} | {made} | {_minutes(seconds)} | {_minutes(evaluating)} |")
    making = sum(seconds or 0 for _, _, seconds, _ in rows)
    evaluating = sum(evaluating for *_, evaluating in rows)
    print(f"\nmaking {_minutes(making)} min, evaluating {_minutes(evaluating)} min, "
          f"together {_minutes(making + evaluating)} min")


if __name__ == "__main__":
    main()
