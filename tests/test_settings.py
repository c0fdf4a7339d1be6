"""Settings written once: each stage setting's type, default, range and help live on its field
(`lume.config.setting`); the CLI's options and their --help are generated from the fields."""

import dataclasses
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from lume.cli import app
from lume.study.config import TargetConfig
from lume.study.run import RunConfig
from lume.study.sweep import SweepConfig
from lume.cli import stages
from lume.stages.attacks import AttackConfig
from lume.stages.evaluation import EvalConfig
from lume.stages.target import MemorizeConfig
from lume.stages.unlearning import UnlearnConfig
from lume.stages.unlearning.merge import MergeConfig
from lume.stages.unlearning.schedule import ScheduleSettings
from lume.stages.unlearning.selection import ProbeSettings
from lume.training import TrainingSettings

CONFIGS = [EvalConfig, MemorizeConfig, UnlearnConfig, AttackConfig, MergeConfig, TrainingSettings, ScheduleSettings,
           ProbeSettings, RunConfig, TargetConfig, SweepConfig]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda cls: cls.__name__)
def test_every_setting_documents_itself(cls):
    undocumented = [item.name for item in dataclasses.fields(cls) if not item.metadata.get("help")]
    assert not undocumented, undocumented


def _generated():
    """(command, option parameter, settings field) of every generated option."""
    for name, command in typer.main.get_command(stages.app).commands.items():
        cls, names = command.callback.settings
        for field_name in names:
            _, field = stages._settings_field(cls, field_name)
            yield name, next(p for p in command.params if p.name == field_name), field


def test_each_generated_options_help_is_its_fields_and_shows_in_help():
    seen = 0
    for command, parameter, field in _generated():
        assert parameter.help == field.metadata["help"], (command, parameter.name)
        assert parameter.default is None  # not given: the config's (or preset's) own value stands
        text = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
                        .output.split())
        assert field.metadata["help"] in text, (command, parameter.name)
        seen += 1
    assert seen >= 50  # every stage command's settings


def test_a_changed_fields_help_changes_the_cli(monkeypatch):
    """The option is built from the field when the command is: nothing else holds the text."""
    field = next(f for f in dataclasses.fields(EvalConfig) if f.name == "mmlu_limit")
    option = stages._generated_option(EvalConfig, "mmlu_limit")
    assert option.annotation.__metadata__[0].help == field.metadata["help"]
    monkeypatch.setattr(field, "metadata", {**field.metadata, "help": "a new help text"})
    assert stages._generated_option(EvalConfig, "mmlu_limit").annotation.__metadata__[0].help == "a new help text"


def test_a_list_setting_is_a_repeatable_option(tmp_path):
    """`--section A --section B` is the list [A, B] (a list field is not read as its item type)."""
    seen = {}
    command = typer.main.get_command(stages.app).commands["evaluate"]
    context = command.make_context("evaluate", ["model", "--section", "a", "--section", "b", "--mmlu-limit", "3"])
    seen.update(context.params)
    from lume.cli import given_values

    given = given_values(EvalConfig, {"sections": seen["sections"], "mmlu_limit": seen["mmlu_limit"]}, [])
    assert given["sections"] == ["a", "b"] and given["mmlu_limit"] == 3  # typer 0.18 gives a tuple


def test_a_range_declared_on_a_field_is_checked():
    with pytest.raises(Exception, match="mmlu_limit must be at least 1, got 0"):
        EvalConfig(mmlu_limit=0)
    with pytest.raises(Exception, match="density must be between 0 and 1, got 2"):
        MergeConfig(density=2.0)
    with pytest.raises(Exception, match="epochs must be above 0, got 0"):
        ScheduleSettings(epochs=0.0)


RANGES = ("at_least", "at_most", "above", "between", "choices", "check")


def _method_settings():
    from lume.stages.unlearning.methods import METHODS

    return sorted({METHODS[name].Settings for name in METHODS}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", [TrainingSettings, *_method_settings()], ids=lambda cls: cls.__name__)
def test_every_method_and_training_setting_declares_its_range_or_choices(cls):
    """A number without a range (NPO's beta at 0 divides by zero after loading) or a name without
    choices (a scheduler transformers lacks) would be found only once the work has started.
    Files are the exception: they are checked when read."""
    import typing

    hints = typing.get_type_hints(cls)
    open_ended = [item.name for item in dataclasses.fields(cls)
                  if hints[item.name] not in (bool, list[int] | None, list[str] | None)
                  and not item.name.endswith("_file") and not any(item.metadata.get(k) is not None for k in RANGES)]
    assert not open_ended, open_ended
    assert all(item.metadata.get("help") for item in dataclasses.fields(cls))


@pytest.mark.parametrize("method, settings, message", [
    ("npo", {"beta": 0}, "beta must be above 0"),
    ("simnpo", {"beta": -1}, "beta must be above 0"),
    ("npo+gd", {"alpha": -1}, "alpha must be at least 0"),
    ("rmu", {"tokens": "some"}, "tokens must be one of all, answer"),
])
def test_a_method_setting_out_of_range_is_refused_when_the_config_is_built(method, settings, message):
    with pytest.raises(Exception, match=re.escape(f"method {method!r}: method_settings.{message}")):
        UnlearnConfig(method=method, method_settings=settings)


def test_a_scheduler_transformers_cannot_run_without_more_arguments_is_refused_and_the_others_run():
    import torch
    from transformers import get_scheduler

    from lume.training.settings import SCHEDULERS

    with pytest.raises(Exception, match="scheduler must be one of constant"):
        TrainingSettings(scheduler="bogus")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    for name in SCHEDULERS:
        schedule = get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=4)
        optimizer.step()
        schedule.step()  # no metric, no extra argument


def test_a_lora_rank_above_the_hidden_size_is_refused_before_any_adapter(tiny_model):
    from lume.errors import LumeError
    from lume.training.scope import with_lora

    hidden = tiny_model.config.hidden_size
    with pytest.raises(LumeError, match=f"lora_rank {hidden + 1} is above the model's hidden size {hidden}"):
        with_lora(tiny_model, TrainingSettings(lora_rank=hidden + 1))


def test_lume_help_stays_fast_without_importing_torch():
    """The stage commands, whose options need the stages' settings (and so torch), are built only
    when one of them runs."""
    probe = ("import sys; from typer.testing import CliRunner; from lume.cli import app; "
             "out = CliRunner().invoke(app, ['--help']).output; "
             "print('torch' in sys.modules, 'unlearn' in out and 'evaluate' in out)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"], done.stderr


def test_each_commands_setting_example_is_one_it_accepts():
    """`evaluate --help` and `merge --help` gave training.weight_decay, which both refuse."""
    from lume.cli import given_values

    for command in typer.main.get_command(stages.app).commands.values():
        cls, _ = command.callback.settings
        option = next(p for p in command.params if p.name == "setting")
        example = option.help.rsplit("e.g. ", 1)[1]
        given_values(cls, {}, [example])  # raises if the command's config refuses it


def test_the_settings_reference_page_is_written_from_the_fields_and_current():
    """docs/settings.md is `python -m lume.cli.reference`'s output: a new field, default or help
    text fails here until the page is written again."""
    from pathlib import Path

    from lume.cli.reference import reference

    page = Path(__file__).parent.parent / "docs" / "settings.md"
    assert page.read_text(encoding="utf-8") == reference(), \
        "docs/settings.md is stale: python -m lume.cli.reference > docs/settings.md"
    text = reference()
    assert "| `also_train` |" in text and "| `progress` | bool | `True` |  | Progress bars (changes no result) |" \
        in text
