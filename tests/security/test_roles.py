"""Roles: company-wide jobs need the admin role, read from a configurable claim."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.identity import roles_from
from shared.config import Settings
from tests.test_api import Api, LambdaContainer, assert_error

REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


@pytest.fixture
def roles_api(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Api]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    box = LambdaContainer(settings.model_copy(update=overrides))
    yield Api(box)
    box.close()


def report(api: Api, groups: str | None, **claims: str) -> Any:
    return api("POST", "/jobs/generate_sales_report", body=REPORT, groups=groups, claims=claims)


@pytest.mark.parametrize("groups", [None, "[]", "[ops]", "[administrators]"])
def test_the_company_wide_report_without_the_admin_role_is_403(roles_api: Api,
                                                                 groups: str | None) -> None:
    refused = report(roles_api, groups)
    error = assert_error(refused, 403, "forbidden")
    assert "'admin' role" in error["message"]
    assert "cognito:groups" in error["message"]


@pytest.mark.parametrize("groups", ["[admin]", "[ops admin]", "admin"])
def test_the_admin_role_enqueues_it(roles_api: Api, groups: str) -> None:
    assert report(roles_api, groups).status == 202


def test_jobs_that_need_no_role_are_open_to_every_caller(roles_api: Api) -> None:
    placed = roles_api("POST", "/jobs/fetch_external_data",
                       body={"url": "https://allowed.example/x"}, groups=None)
    assert placed.status in (202, 422), placed.text  # never 403 for a role
    assert placed.status != 403


@pytest.mark.parametrize("roles_api", [{"admin_role": "sales-admins"}], indirect=True)
def test_the_admin_role_name_is_configurable(roles_api: Api) -> None:
    assert_error(report(roles_api, "[admin]"), 403, "forbidden")
    assert report(roles_api, "[sales-admins]").status == 202


@pytest.mark.parametrize("roles_api", [{"roles_claim": "scope"}], indirect=True)
def test_roles_can_come_from_the_scope_claim(roles_api: Api) -> None:
    assert_error(report(roles_api, "[admin]", scope="jobs/read"), 403, "forbidden")
    assert report(roles_api, None, scope="jobs/read admin").status == 202


@pytest.mark.parametrize(("claims", "claim", "expected"), [
    ({"cognito:groups": ["admin", "ops"]}, "cognito:groups", ("admin", "ops")),
    ({"cognito:groups": "[admin ops]"}, "cognito:groups", ("admin", "ops")),
    ({"scope": "jobs/read admin"}, "scope", ("admin", "jobs/read")),
    ({"roles": "a,b"}, "roles", ("a", "b")),
    ({"cognito:groups": 7}, "cognito:groups", ()),
    ({}, "cognito:groups", ()),
])
def test_roles_are_read_from_every_form_idps_use(claims: dict[str, Any], claim: str,
                                                  expected: tuple[str, ...]) -> None:
    assert roles_from(claims, claim) == expected
