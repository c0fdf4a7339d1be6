"""Mutation testing of the unlearning methods and the metrics (`make mutants`, mutmut).

    python bench/mutants.py [--max-children 2] [--report-only]

mutmut plants one small change at a time (an operator, a constant, a dropped argument) in
the files `[tool.mutmut]` in pyproject.toml names, and runs the fast tests that reach the
changed function. A mutant no test notices "survives". Each survivor must be listed in
docs/equivalent-mutants.md (one `- `name`: reason` line each), under "Equivalent" (it changes
nothing observable) or "Not killed yet" (a known gap in the tests); the script prints the kill
rate and exits 1 if an unlisted mutant survives.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "docs" / "equivalent-mutants.md"


def statuses(mutmut: str) -> dict[str, str]:
    """{mutant name: killed, survived, timeout, ...} from `mutmut results --all`."""
    output = subprocess.run([mutmut, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    return dict(re.findall(r"^\s+(\S+): (.+)$", output, flags=re.M))


def listed(section: str) -> dict[str, str]:
    """{mutant: reason} of the `- `name`: reason` lines under the `## {section}` heading."""
    text = EQUIVALENT.read_text(encoding="utf-8") if EQUIVALENT.is_file() else ""
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0] if f"## {section}" in text else ""
    return dict(re.findall(r"^- `([^`]+)`: (.+)$", part, flags=re.M))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report-only", action="store_true", help="summarise the last run without running")
    args = parser.parse_args()
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    if not args.report_only:
        from lume.data.paths import resolve_data_dir

        # The tests run inside mutants/, where ../shared/data is not beside them. mutmut forks a
        # child per mutant from a process that already ran torch: one thread each, or a forked
        # child can hang in a thread pool it inherited half-held.
        env = {**os.environ, "LUME_DATA_DIR": str(resolve_data_dir()), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run([mutmut, "run", "--max-children", str(args.max_children)], cwd=ROOT, env=env, check=False)
    found = statuses(mutmut)
    counts = Counter(found.values())
    equivalent, gaps = listed("Equivalent"), listed("Not killed yet")
    survivors = sorted(name for name, status in found.items() if status != "killed")
    unexplained = [name for name in survivors if name not in equivalent and name not in gaps]
    decided = len(found) - len([n for n in survivors if n in equivalent])
    print(f"mutants: {len(found)}; " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    print(f"kill rate: {counts['killed'] / max(len(found), 1):.1%} of all mutants, "
          f"{counts['killed'] / max(decided, 1):.1%} of those not listed as equivalent; "
          f"{len([n for n in survivors if n in gaps])} listed as not killed yet")
    for name in unexplained:
        print(f"  survived, not listed in {EQUIVALENT.relative_to(ROOT)}: {name} ({found[name]})")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
