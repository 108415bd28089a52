"""The job catalogue and the worker agree: same names, same input models, same options."""

from __future__ import annotations

import typing
from datetime import timedelta

import pytest

from shared.config import Settings
from shared.jobs import CATALOGUE, TASK_NAMES
from worker.app import STREAQ_TIMEOUT_MARGIN_SECONDS, build_worker, load_task_modules

# Nothing here connects: building a worker only registers tasks.
SETTINGS = Settings(env="test", result_retention_seconds=4321)


def test_the_worker_registers_exactly_the_catalogue_tasks() -> None:
    worker = build_worker(SETTINGS)
    assert set(worker.registry) == TASK_NAMES
    assert not {name for name, spec in CATALOGUE.items() if spec.is_pipeline} & set(
        worker.registry)


def test_every_pipeline_step_is_a_registered_task() -> None:
    worker = build_worker(SETTINGS)
    pipelines = {name: spec.steps for name, spec in CATALOGUE.items() if spec.is_pipeline}
    assert pipelines  # place_order at least
    for steps in pipelines.values():
        assert len(steps) >= 2
        assert all(step in worker.registry for step in steps)


@pytest.mark.parametrize("name", sorted(TASK_NAMES))
def test_catalogue_options_are_applied(name: str) -> None:
    spec = CATALOGUE[name]
    task = build_worker(SETTINGS).registry[name]
    assert task.timeout == timedelta(seconds=spec.timeout_seconds + STREAQ_TIMEOUT_MARGIN_SECONDS)
    # The policy counts tries itself (a fair-share deferral is not one): Streaq has no limit.
    assert task.max_tries is None
    retention = spec.result_ttl_seconds or SETTINGS.result_retention_seconds
    assert task.ttl == timedelta(seconds=retention)


@pytest.mark.parametrize("name", sorted(TASK_NAMES))
def test_each_implementation_takes_its_catalogue_input_model(name: str) -> None:
    implementation = load_task_modules()[name]
    hints = typing.get_type_hints(implementation)
    params = list(hints)
    assert params[:2] == ["ctx", "inp"], params
    assert hints["inp"] is CATALOGUE[name].input_model
