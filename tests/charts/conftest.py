"""Fixtures of the admission-policy tests: the injector chart installed in
each form of the tracer, and the app pod each install injects."""

from __future__ import annotations

import pytest

try:
    from . import policy_setup as setup
except ImportError:
    import policy_setup as setup


@pytest.fixture(scope="module")
def installs() -> dict[str, setup.Installed]:
    return {form: setup.Installed(values) for form, values in setup.FORMS.items()}


@pytest.fixture(scope="module")
def injected(installs) -> dict[str, dict]:
    """APP_POD injected in each form, with the service account token mounted."""
    return {form: setup.with_service_account_token(i.inject(setup.APP_POD)[0]) for form, i in installs.items()}
