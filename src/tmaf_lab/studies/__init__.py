"""The registry of studies: one module per study, each defining ``STUDY`` (a
:class:`tmaf_lab.study.Study`). Adding a study is adding a module and its name here."""

from __future__ import annotations

import importlib

from tmaf_lab.study import Study

NAMES = ("approx", "train", "converged", "tuning", "calibration", "gpt", "cifar", "gpt_baselines",
         "gpu", "full")
STUDIES: dict[str, Study] = {
    (study := importlib.import_module(f"tmaf_lab.studies.{name}").STUDY).name: study
    for name in NAMES}


def get(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; expected one of {', '.join(STUDIES)}")
    return STUDIES[name]
