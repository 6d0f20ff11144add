"""A JSON API refuses a JSON value of the wrong type at its field (400), never coerces it; the
CLI sends key=value params as the JSON types the job type's schema asks for."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import DaemonProcess


def post(d: DaemonProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://runspace", timeout=30) as http:
        return http.post(path, content=json.dumps(body))


@pytest.mark.parametrize(("body", "loc"), [
    ({"job": "exit_with", "params": {"code": "3"}}, ["params", "code"]),
    ({"job": "exit_with", "params": {"code": True}}, ["params", "code"]),
    ({"job": "exit_with", "params": {}, "priority": "5"}, ["priority"]),
    ({"job": "exit_with", "params": {}, "priority": True}, ["priority"]),
    ({"job": "exit_with", "params": {}, "wait": "0"}, ["wait"]),
    ({"job": "sleep", "params": {"seconds": "1"}}, ["params", "seconds"]),
])
def test_a_json_value_of_the_wrong_type_is_refused_at_its_field(daemon: DaemonProcess, body: dict[str, Any],
                                                                loc: list[str]) -> None:
    resp = post(daemon, "/v1/jobs", body)
    assert resp.status_code == 400, resp.text
    assert [e["loc"] for e in resp.json()["errors"]] == [loc]
    assert daemon.client.list()["items"] == []  # nothing was queued


def test_a_batch_refuses_wrong_types_in_items_and_priority(daemon: DaemonProcess) -> None:
    resp = post(daemon, "/v1/batches", {"job": "exit_with", "items": [{"code": 1}, {"code": "2"}]})
    assert resp.status_code == 400 and [e["loc"] for e in resp.json()["errors"]] == [["items", 1, "code"]]
    resp = post(daemon, "/v1/batches", {"job": "exit_with", "items": [{"code": 1}], "priority": "5"})
    assert resp.status_code == 400 and [e["loc"] for e in resp.json()["errors"]] == [["priority"]]


def test_the_cli_sends_key_value_params_as_the_types_the_schema_asks_for(daemon: DaemonProcess) -> None:
    out = daemon.cli("submit", "exit_with", "code=0", "--wait", "30", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["state"] == "succeeded" and status["params"]["code"] == 0
    text = daemon.cli("submit", "echo", "value=7", "--wait", "30", "--json")  # int | str | ...: text stays text
    assert json.loads(text.stdout)["result"]["value"] == "7"
    bad = daemon.cli("submit", "exit_with", "code=three")
    assert bad.returncode == 2 and "code" in bad.stderr and "three" in bad.stderr


def test_the_spec_states_exact_bounds_and_the_user_name_rule(daemon: DaemonProcess) -> None:
    spec = daemon.client.request("GET", "/openapi.json").json()
    schema = spec["paths"]["/v1/batches"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    bounds = schema["properties"]["priority"]["anyOf"][0]
    assert (bounds["minimum"], bounds["maximum"]) == (-(2**63), 2**63 - 1)
    assert all(type(v) is int for v in (bounds["minimum"], bounds["maximum"]))
    (user,) = spec["paths"]["/v1/users/{user}/log"]["get"]["parameters"][:1]
    assert user["schema"]["pattern"] == "^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$"
