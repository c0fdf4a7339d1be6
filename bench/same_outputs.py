"""Compare two runs of `bench/fixed_study.py`: every JSON output equal, apart from what varies
from run to run (times, package versions, peak memory, file modification times) and the
summary's schema version. Prints each file that differs and the keys that do; exit status 1
if any."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARYING = {"timings", "versions", "seconds", "probe_seconds", "train_seconds", "tokens_per_second", "peak_memory_mb",
           "schema_version"}
VARYING_FILES = {"lume_fingerprint.json"}  # sizes and modification times of the files it fingerprints


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def main(first: Path, second: Path) -> int:
    names = [sorted(p.relative_to(root / "files") for p in (root / "files").rglob("*.json"))
             for root in (first, second)]
    if names[0] != names[1]:
        print("different files:", sorted(set(names[0]) ^ set(names[1])))
        return 1
    differing = 0
    for name in names[0]:
        if name.name in VARYING_FILES:
            continue
        a, b = (_stable(json.loads((root / "files" / name).read_text())) for root in (first, second))
        if a != b:
            differing += 1
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) if isinstance(a, dict) else []
            print(f"{name}: {', '.join(keys)}")
    summaries = sum(name.name == "summary.json" for name in names[0])
    print(f"{len(names[0])} files, {summaries} summary.json; {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
