"""Studies: a target, unlearning methods, evaluations and a report from one YAML file (`lume run`,
run.py), or each method's settings searched on the probes first (`lume sweep`, sweep.py). Both
share their fields (config.py), their `methods:` entries worked out once (entries.py), their keyed,
resumable steps (steps.py) and their course: data loaded once, target, each model, report
(course.py); a sweep ranks its trials on objectives.py's."""
