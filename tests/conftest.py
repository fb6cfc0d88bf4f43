"""Shared test set-up: the ``Machine`` fixture and the hypothesis profiles.

Every rule test is written once against the public API and runs against both
implementations of it (scipy-style backend parametrisation):

* ``core``: ``pymmu.Machine``, the Cython core;
* ``reference``: ``pymmu.reference.Machine``, the pure-Python oracle.

An implementation that cannot be imported, or that is still the placeholder
raising ``NotImplementedError``, makes its params skip with a reason that says
so. Any other problem (an import that fails inside the module, a constructor that
raises something else) is an error, never a silent skip.

Hypothesis profiles, picked with the ``HYPOTHESIS_PROFILE`` environment variable:

* ``dev`` (the default): about 50 examples;
* ``ci``: 500 examples, 60 stateful steps, no deadline (``.ci/run``);
* ``sanitize``: 150 examples, 60 stateful steps, no deadline: ``.ci/sanitize``,
  whose AddressSanitizer build runs two to three times slower;
* ``long``: 20,000 examples, 100 stateful steps, no deadline: the differential
  fuzzer's long local run (docs/testing.md), hours rather than minutes.
"""
from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=50,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "ci",
    max_examples=500,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "sanitize",
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=20_000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


IMPLEMENTATIONS = {
    "core": ("pymmu", "Machine"),
    "reference": ("pymmu.reference", "Machine"),
}


def _load(name: str):
    """Return the Machine class of implementation ``name``, or skip with a reason."""
    module_name, attr = IMPLEMENTATIONS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:   # the module exists but something it imports is missing
            raise
        pytest.skip(f"{name}: {module_name} is not importable yet ({e})")
    cls = getattr(module, attr)
    try:
        cls(1)
    except NotImplementedError as e:
        pytest.skip(f"{name}: {module_name}.{attr} is still a placeholder ({e})")
    return cls


@pytest.fixture(params=list(IMPLEMENTATIONS), scope="session")
def Machine(request):  # noqa: N802  (a class, named like one)
    """The ``Machine`` class of one implementation (``core`` or ``reference``)."""
    return _load(request.param)
