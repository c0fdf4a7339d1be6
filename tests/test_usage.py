"""Usage mistakes on the installed `lume` command: click's usage message, exit 2, no traceback,
whatever typer (and click) the environment installed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

LUME = Path(sys.executable).parent / "lume"  # the console script pip installed


@pytest.mark.parametrize("args, message", [
    (["evaluate"], "Missing argument"),
    (["report"], "Missing argument"),
    (["unlearn", "--bogus"], "No such option:? '?--bogus"),  # click 8.5 quotes the option
    (["bogus"], "No such command '?bogus"),
    (["evaluate", "--mmlu-limit", "abc", "x"], "Invalid value for '--mmlu-limit'"),
])
def test_a_usage_mistake_is_the_usage_line_and_exit_2(args, message):
    done = subprocess.run([str(LUME), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Usage: lume" in done.stderr
    assert re.search(f"Error: {message}", done.stderr) and len(done.stderr.strip().splitlines()) <= 4
