"""Training logs through accelerate's trackers: off by default, any registered tracker by name,
one clear line for a tracker that cannot run here; logging never changes a run's key."""

import accelerate.tracking
import pytest
from accelerate.tracking import GeneralTracker

from lume.errors import LumeError
from lume.stages.unlearning import UnlearnConfig, unlearn
from lume.training import TrainingRun, TrainingSettings

LOGGED: list = []


class Recording(GeneralTracker):
    name = "lume-test-recorder"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, run_name: str, **_kwargs):
        super().__init__()
        LOGGED.append(("init", run_name))

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values: dict):
        LOGGED.append(("config", values["learning_rate"]))

    def log(self, values: dict, step: int | None = None, **_kwargs):
        LOGGED.append(("log", step, sorted(values)))


# accelerate 1.15 added trackers of one's own by name; CI also runs the lowest accelerate allowed
REGISTERS = hasattr(accelerate.tracking, "register_tracker_class")
if REGISTERS:
    accelerate.tracking.register_tracker_class(Recording)


def test_each_step_is_logged_to_the_tracker_asked_for(tmp_path, tiny_model_dir, sets):
    forget, retain = sets
    LOGGED.clear()
    if not REGISTERS:  # refused when the settings are made, before any work
        with pytest.raises(LumeError, match="a tracker of your own is registered with .* accelerate 1.15 or later"):
            TrainingSettings(batch_size=2, learning_rate=1e-3, log_with=Recording.name)
        return
    training = TrainingSettings(batch_size=2, learning_rate=1e-3, log_with=Recording.name)
    config = UnlearnConfig(method="npo+gd", steps=2, training=training, device="cpu", progress=False)
    unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    assert LOGGED[:2] == [("init", "unlearning-(npo+gd)"), ("config", 1e-3)]
    assert [entry[:2] for entry in LOGGED[2:]] == [("log", 1), ("log", 2)]
    assert {"loss", "npo", "retain_nll", "tokens_per_second"} <= set(LOGGED[2][2])


def test_logging_is_off_by_default_and_never_changes_the_runs_key(monkeypatch):
    monkeypatch.setitem(accelerate.tracking.LOGGER_TYPE_TO_CLASS, "known", Recording)  # any accelerate knows
    assert TrainingSettings().log_with is None
    assert TrainingRun(TrainingSettings(), 5).key() == TrainingRun(TrainingSettings(log_with="known"), 5).key()
    with pytest.raises(LumeError, match="log_with 'unknown': not a tracker accelerate knows"):
        TrainingSettings(log_with="unknown")  # refused when the settings are made


def test_a_tracker_that_cannot_run_here_is_one_clear_line():
    from lume.training.distributed import check_tracker

    with pytest.raises(LumeError, match="not a tracker accelerate knows"):
        check_tracker("nope")
    with pytest.raises(LumeError, match=r"log_with 'aim': its package is not installed here \(pip install aim\)"):
        check_tracker("aim")
