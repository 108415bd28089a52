"""The console in the template: public page routes, the hosted-UI client, the schedules list."""

from __future__ import annotations

import json
from pathlib import Path

from infra.local.template import load_template
from tests.test_template import load

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = load("template.yaml")
API = TEMPLATE["Resources"]["ApiFunction"]["Properties"]


def test_the_console_and_swagger_are_reachable_without_a_token() -> None:
    open_routes = {(e["Properties"]["Method"], e["Properties"]["Path"])
                   for e in API["Events"].values()
                   if e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"}
    assert {("GET", "/console"), ("GET", "/console/{proxy+}"), ("GET", "/swagger"),
            ("GET", "/openapi.json")} <= open_routes


def test_the_console_client_uses_the_code_flow_with_its_own_address() -> None:
    client = TEMPLATE["Resources"]["ConsoleClient"]["Properties"]
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["GenerateSecret"] is False
    assert client["CallbackURLs"] == [{"Ref": "ConsoleUrl"}]
    audience = TEMPLATE["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]["Jwt"][
        "JwtConfiguration"]["audience"]
    assert '{"Ref": "ConsoleClient"}' in json.dumps(audience)


def test_the_listed_schedules_are_the_template_schedules() -> None:
    listed = json.loads(API["Environment"]["Variables"]["OFFLOAD_SCHEDULES"])
    actual = {s.name: s.expression for s in load_template(ROOT / "template.yaml").schedules
              if s.enabled}
    assert listed == actual


def test_the_admin_group_exists_with_the_user_pool() -> None:
    group = TEMPLATE["Resources"]["AdminGroup"]
    assert group["Type"] == "AWS::Cognito::UserPoolGroup"
    assert group["Properties"]["GroupName"] == "admin"
    assert group["Condition"] == "UseCognito"
