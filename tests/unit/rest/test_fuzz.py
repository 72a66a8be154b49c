"""Fuzz every operation of the OpenAPI document with schemathesis: no input, valid or not,
may produce a server error, and input that violates the document must be refused (4xx).

The app under test is the real all-in-one stack (client library, scheduler, volume worker
with a loopback backend, SQLite). The caller is an admin of the URL's project at the
highest microversion, so no call stops at the authorization or version gate before its
input is looked at; ``project_id`` in the path is fixed for the same reason. Each operation
gets a bounded number of examples (positive and negative; about 25 s of CPU for the whole
run, under a minute of wall clock on two idle cores); the examples are derandomized so a
failure is reproducible.

Checks, and why these: ``not_a_server_error`` (the requirement), ``negative_data_rejection``
(bad input is a 4xx), ``content_type_conformance`` and ``response_schema_conformance``
(answers match what the document declares). ``status_code_conformance`` is left out on
purpose: Cinder's fault statuses (400, 403, 404, 409, 413) are not declared per operation
in FastAPI's generated document, and ``positive_data_acceptance`` cannot hold for ids that
name nothing (404 is the right answer there).
"""

from __future__ import annotations

import time
import traceback

import schemathesis
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from tests.unit.rest.conftest import PROJECT
from tests.unit.rest.conftest import Api

#: Examples per operation and generation mode.
MAX_EXAMPLES = 10
HEADERS = {"X-User-Id": "fuzzer", "X-Project-Id": PROJECT, "X-Roles": "admin",
           "OpenStack-API-Version": "volume 3.14"}
CHECKS = [schemathesis.checks.not_a_server_error,
          openapi_checks.negative_data_rejection,
          openapi_checks.content_type_conformance,
          openapi_checks.response_schema_conformance]
#: Hypothesis without shrinking (a failure is reported as found, with its request) and
#: without the example database (runs do not depend on earlier runs).
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                         database=None, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))


def test_no_server_error_and_bad_input_is_refused(stack, http):
    """Every operation, positive and negative examples with generated ids, then positive
    examples again on ids of real resources (so actions reach the client library's rules)."""
    real = {"project_id": PROJECT, "target_project": PROJECT, **_resources(http)}
    schema = schemathesis.openapi.from_asgi("/openapi.json", stack.app)
    failures, operations, started = [], 0, (time.monotonic(), time.process_time())
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        names = {p.name for p in operation.path_parameters}
        runs = [(GenerationMode.POSITIVE, {"project_id"}),
                (GenerationMode.NEGATIVE, {"project_id"})]
        if names - {"project_id", "target_project"}:
            runs.append((GenerationMode.POSITIVE, set(real)))
        for mode, fixed in runs:
            strategy = operation.as_strategy(
                mode, path_parameters={k: real[k] for k in names & fixed} or None)
            try:
                _fuzz(strategy)
            except Unsatisfiable:
                continue  # no input can violate this operation's document (e.g. GET /)
            except Exception as exc:  # collect, so one run reports every broken operation
                failures.append("%s (%s, fixed %s): %s" % (
                    operation.label, mode.value, sorted(names & fixed),
                    "".join(traceback.format_exception_only(exc)).strip()))
    print("fuzzed %d operations in %.1f s (%.1f s CPU)" % (
        operations, time.monotonic() - started[0], time.process_time() - started[1]))
    assert operations >= 20, "the document lists only %d operations" % operations
    assert not failures, "\n\n".join(failures)


def _resources(http) -> dict:
    """A volume in a group, its group snapshot (with its member snapshot), ready."""
    api = Api(http, PROJECT, admin=True, version="3.14")
    group = api.post("groups", {"group": {"name": "fuzz"}}).json()["group"]
    api.wait("groups/%s" % group["id"], "group", {"available"})
    volume = api.post("volumes", {"volume": {"size": 1, "group_id": group["id"]}}).json()
    volume_id = volume["volume"]["id"]
    api.wait("volumes/%s" % volume_id, "volume", {"available"})
    gsnap = api.post("group_snapshots", {"group_snapshot": {"group_id": group["id"]}})
    gsnap_id = gsnap.json()["group_snapshot"]["id"]
    api.wait("group_snapshots/%s" % gsnap_id, "group_snapshot", {"available"})
    (snapshot,) = api.get("snapshots?volume_id=%s" % volume_id).json()["snapshots"]
    return {"volume_id": volume_id, "snapshot_id": snapshot["id"], "group_id": group["id"],
            "group_snapshot_id": gsnap_id}


def _fuzz(strategy) -> None:
    @FUZZ_SETTINGS
    @given(case=strategy)
    def run(case):
        response = case.call(headers=HEADERS)
        assert response.status_code < 500, "%s %s %r -> %d %s" % (
            case.method, case.formatted_path, case.body, response.status_code,
            response.text[:300])
        case.validate_response(response, checks=CHECKS, headers=HEADERS)

    run()
