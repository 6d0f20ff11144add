"""Submitting jobs over the API: 202 vs 200, status fields, validation, errors."""

from __future__ import annotations

import json
import re
import subprocess

import httpx

from tests.conftest import DaemonProcess


def raw(daemon: DaemonProcess, method: str, path: str, **kwargs) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)), base_url="http://x") as http:
        return http.request(method, path, **kwargs)


def test_submit_without_wait_answers_202_with_location(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "echo", "params": {"value": 1, "delay": 0.5}})
    assert resp.status_code == 202
    body = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{body['id']}" == body["location"]
    assert body["state"] in ("queued", "running") and body["done"] is False
    final = daemon.wait(body["id"])
    assert final["state"] == "succeeded" and final["result"]["value"] == 1


def test_submit_with_wait_returns_200_and_result(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "echo", "params": {"value": "hi"}, "wait": 20})
    assert resp.status_code == 200
    body = resp.json()
    assert body["state"] == "succeeded" and body["succeeded"] and body["done"]
    assert body["result"]["value"] == "hi"
    assert body["exit_code"] == 0 and body["attempt"] == 1


def test_wait_as_query_and_prefer_header(daemon: DaemonProcess) -> None:
    by_query = raw(daemon, "POST", "/v1/jobs?wait=20", json={"job": "echo", "params": {"value": 2}})
    by_header = raw(daemon, "POST", "/v1/jobs", json={"job": "echo", "params": {"value": 3}},
                    headers={"Prefer": "wait=20"})
    assert by_query.status_code == 200 and by_query.json()["result"]["value"] == 2
    assert by_header.status_code == 200 and by_header.json()["result"]["value"] == 3


def test_wait_shorter_than_job_answers_202(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "sleep", "params": {"seconds": 3}, "wait": 0.3})
    assert resp.status_code == 202
    assert resp.json()["state"] in ("queued", "running")


def test_status_object_has_contract_fields(daemon: DaemonProcess) -> None:
    status = daemon.submit("echo", {"value": 5}, wait=20)
    expected = {"id", "job", "params", "state", "done", "cancelled", "succeeded", "result", "error", "exit_code",
                "signal", "progress", "total", "percent_complete", "message", "requestor", "log_user", "batch_id",
                "attempt", "pid", "processed_by", "requested_at", "started_at", "finished_at", "updated_at",
                "location"}
    assert expected <= set(status)
    again = daemon.client.status(status["id"])
    assert again["result"] == status["result"]
    assert again["requested_at"].endswith("Z") and again["finished_at"].endswith("Z")
    assert again["processed_by"] and again["pid"] == status["result"]["pid"]


def test_invalid_params_rejected_naming_the_field_and_nothing_queued(daemon: DaemonProcess) -> None:
    before = daemon.client.list(limit=1000)["items"]
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "sleep", "params": {"seconds": "soon"}})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == 400
    assert ["params", "seconds"] in [e["loc"] for e in problem["errors"]]
    assert "(got 'soon')" in problem["errors"][0]["msg"]  # field, value and why
    assert daemon.client.list(limit=1000)["items"] == before


def test_integers_beyond_64_bits_are_400_naming_the_field(daemon: DaemonProcess) -> None:
    huge = 2**63
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "echo", "params": {"value": 1}, "priority": huge})
    assert resp.status_code == 400 and ["priority"] in [e["loc"] for e in resp.json()["errors"]]
    batch = raw(daemon, "POST", "/v1/batches", json={"job": "echo", "items": [{"value": 1}], "priority": -huge - 1})
    assert batch.status_code == 400 and ["priority"] in [e["loc"] for e in batch.json()["errors"]]
    for path in ("/v1/jobs", "/v1/batches/any"):
        page = raw(daemon, "GET", path, params={"cursor": str(huge * 10)})
        assert page.status_code == 400 and ["query", "cursor"] in [e["loc"] for e in page.json()["errors"]]
    assert daemon.client.list(limit=10)["items"] == []


def test_a_number_json_cannot_carry_is_400_not_a_silent_null(daemon: DaemonProcess) -> None:
    body = b'{"job": "echo", "params": {"value": [1, {"deep": 1e400}]}}'
    resp = raw(daemon, "POST", "/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["errors"][0]["loc"] == ["params", "value", 1, "deep"]
    for text in ("inf", "-Infinity", "nan"):  # a float field parses these strings too
        resp = raw(daemon, "POST", "/v1/jobs", json={"job": "sleep", "params": {"seconds": text}})
        assert resp.status_code == 400 and resp.json()["errors"][0]["loc"] == ["params", "seconds"], resp.text
    assert daemon.client.list(limit=10)["items"] == []


def test_malformed_json_is_400(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", content=b'{"job": "echo", ', headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert "JSON" in resp.json()["detail"]


def test_body_over_max_request_bytes_is_413_problem_and_nothing_queued(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_REQUEST_BYTES="4096")
    body = json.dumps({"job": "echo", "params": {"value": "x" * 5000}}).encode()

    def chunks():  # no Content-Length: the limit must hold while the body arrives
        yield body[:3000]
        yield body[3000:]

    for content in (body, chunks()):
        resp = raw(d, "POST", "/v1/jobs", content=content, headers={"content-type": "application/json"})
        assert resp.status_code == 413, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert "max_request_bytes (4096 bytes)" in resp.json()["detail"]
    assert d.client.list(limit=10)["items"] == []
    assert d.submit("echo", {"value": "small"}, wait=20)["result"]["value"] == "small"


def test_unknown_job_is_404(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "no_such_job"})
    assert resp.status_code == 404
    assert "no_such_job" in resp.json()["detail"]


def test_unknown_job_id_is_404(daemon: DaemonProcess) -> None:
    for job_id in ("0123456789abcdef0123", "../../etc/passwd", "x"):
        assert raw(daemon, "GET", f"/v1/jobs/{job_id}").status_code == 404


def test_failing_job_records_error_type_and_message(daemon: DaemonProcess) -> None:
    status = daemon.submit("fail", {"message": "disk on fire"}, wait=20)
    assert status["state"] == "failed" and status["done"] and not status["succeeded"]
    assert status["error"] == {"type": "ValueError", "message": "disk on fire"}
    assert status["exit_code"] == 1
    assert "ValueError: disk on fire" in daemon.client.log(status["id"])


def test_command_job_exit_code_recorded(daemon: DaemonProcess) -> None:
    status = daemon.submit("exit_with", {"code": 7}, wait=20)
    assert status["state"] == "failed" and status["exit_code"] == 7
    assert status["error"]["type"] == "CommandFailed"
    assert "exiting 7" in daemon.client.log(status["id"])


def test_curl_submit_as_in_readme(daemon: DaemonProcess) -> None:
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", str(daemon.socket), "http://x/v1/jobs?wait=20",
         "-d", '{"job": "echo", "params": {"value": "curl"}}'],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert json.loads(out.stdout)["result"]["value"] == "curl"


def test_list_paginates_newest_first_and_filters(daemon: DaemonProcess) -> None:
    ids = [daemon.submit("echo", {"value": i}, wait=20)["id"] for i in range(5)]
    failed = daemon.submit("fail", wait=20)["id"]
    page1 = daemon.client.list(limit=3, job="echo")
    assert [j["id"] for j in page1["items"]] == ids[::-1][:3]
    page2 = daemon.client.list(limit=3, job="echo", cursor=page1["next_cursor"])
    assert [j["id"] for j in page2["items"]] == ids[::-1][3:]
    assert page2["next_cursor"] is None
    assert [j["id"] for j in daemon.client.list(state="failed")["items"]] == [failed]


def test_jobtypes_lists_schema_and_openapi_is_served(daemon: DaemonProcess) -> None:
    types = {t["name"]: t for t in daemon.client.job_types()["items"]}
    home = types["create_home_dir"]
    assert home["params_schema"]["properties"]["username"]["pattern"]
    assert home["options"]["timeout"] == 600 and home["options"]["log_user"] == "username"
    echo = types["echo"]["options"]  # declares nothing: the settings' limits apply, and are shown
    assert echo["timeout"] == 3600 and echo["kill_grace"] == 1 and echo["max_memory"] is None
    names, cursor = [], None  # paged like every collection
    while True:
        page = raw(daemon, "GET", "/v1/jobtypes", params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 7
        names += [t["name"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert names == sorted(types)
    spec = raw(daemon, "GET", "/openapi.json").json()
    assert "/v1/jobs" in spec["paths"] and "/v1/jobs/{job_id}/cancel" in spec["paths"]


def test_openapi_documents_the_answers_the_api_really_gives(daemon: DaemonProcess) -> None:
    spec = raw(daemon, "GET", "/openapi.json").json()
    submit = spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert "422" not in json.dumps(spec["paths"])  # FastAPI's default; we answer 400 problem+json
    assert {"400", "404", "409", "413", "429", "503"} <= set(submit)
    assert "application/problem+json" in submit["400"]["content"] and "Location" in submit["202"]["headers"]
    page = spec["paths"]["/v1/jobs"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert page["properties"]["items"]["items"]["$ref"] == "#/components/schemas/JobStatus"
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(spec)):  # every reference resolves
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in spec["components"]["schemas"]


def test_wrong_method_is_405_naming_every_allowed_method(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "PUT", "/v1/jobs")
    assert resp.status_code == 405 and resp.headers["allow"] == "DELETE, GET, POST"
    assert "GET" in raw(daemon, "POST", "/openapi.json").headers["allow"]  # a route outside the schema
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_full_queue_is_429_with_retry_after_and_stores_nothing(make_daemon) -> None:
    d = make_daemon(RUNSPACE_MAX_CONCURRENCY="1", RUNSPACE_MAX_QUEUE="1")
    running = d.submit("sleep", {"seconds": 30})
    queued = d.submit("sleep", {"seconds": 30})
    refused = raw(d, "POST", "/v1/jobs", json={"job": "sleep", "params": {"seconds": 30}})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "max_queue is 1" in refused.json()["detail"]
    assert {j["id"] for j in d.client.list()["items"]} == {running["id"], queued["id"]}


def test_job_runs_in_own_session_with_private_tmpdir(daemon: DaemonProcess) -> None:
    status = daemon.submit("echo", {"value": 0}, wait=20)
    result = status["result"]
    assert result["tmpdir_exists"] is True
    assert result["job_id"] == status["id"]
    from pathlib import Path

    assert not Path(result["tmpdir"]).exists(), "the private tmp dir must be removed afterwards"


def test_unknown_param_is_rejected_not_ignored(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "sleep", "params": {"seconds": 1, "secs": 5}})
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert [e["loc"] for e in errors] == [["params", "secs"]]
    assert "seconds" in errors[0]["msg"]


def test_prefer_wait_is_acknowledged(daemon: DaemonProcess) -> None:
    resp = raw(daemon, "POST", "/v1/jobs", json={"job": "echo", "params": {"value": 4}}, headers={"Prefer": "wait=20"})
    assert resp.status_code == 200 and resp.headers["preference-applied"] == "wait=20"


def test_jobs_fork_from_the_warm_fork_server(daemon: DaemonProcess) -> None:
    from tests.conftest import wait_until

    wait_until(lambda: daemon.client.request("GET", "/healthz").json()["fork_server"] == "ready",
               what="the fork server to warm up")
    result = daemon.submit("echo", {"value": 1}, wait=20)["result"]
    assert daemon.proc is not None and result["ppid"] != daemon.proc.pid  # the fork server's child


def test_without_fork_server_jobs_are_spawned_by_the_daemon(make_daemon) -> None:
    daemon = make_daemon(RUNSPACE_FORK_SERVER="false")
    assert daemon.client.request("GET", "/healthz").json()["fork_server"] == "off"
    result = daemon.submit("echo", {"value": 1}, wait=20)["result"]
    assert daemon.proc is not None and result["ppid"] == daemon.proc.pid
