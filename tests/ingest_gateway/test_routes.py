"""The route table, the app's routes and the generated OpenAPI document describe the same API,
and the documented request schemas say what the handlers' validation does (broker-free)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from ingest_gateway import api_models, ingest_api, openapi, pagination, routes, validation
from ingest_gateway.auth import PUBLIC_ROUTES
from ingest_gateway.errors import ApiError, validation_error
from schemas import records
from webhookmaster.subscription_table import Subscription

DOC = openapi.document(routes.ROUTES)
OPERATIONS = {
    (path, method.upper()): op
    for path, item in DOC["paths"].items()
    for method, op in item.items()
    if method != "parameters"
}
TABLE = {(route.path, route.method): route for route in routes.ROUTES}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose ``$ref``s resolve in the document's components."""
    return Draft202012Validator({**schema, "components": DOC["components"]})


def _request_schema(operation_id: str) -> Draft202012Validator:
    [op] = [op for op in OPERATIONS.values() if op["operationId"] == operation_id]
    return _validator(op["requestBody"]["content"]["application/json"]["schema"])


def _param_schema(operation_id: str, name: str) -> Draft202012Validator:
    [op] = [op for op in OPERATIONS.values() if op["operationId"] == operation_id]
    [param] = [p for p in op["parameters"] if p["name"] == name]
    return _validator(param["schema"])


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


def test_every_route_is_documented_and_every_operation_is_a_route() -> None:
    assert len(TABLE) == len(routes.ROUTES)  # no (path, method) twice
    assert set(OPERATIONS) == set(TABLE)
    ids = [route.operation_id for route in routes.ROUTES]
    assert len(set(ids)) == len(ids)
    for key, route in TABLE.items():
        op = OPERATIONS[key]
        assert op["operationId"] == route.operation_id and op["tags"] == [route.tag]
        assert set(op["responses"]) == {str(status) for status in route.responses}
        assert ("requestBody" in op) == (route.body is not None), key
        declared = {p["name"] for p in op.get("parameters", ()) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", route.path)), key


def test_links_name_operations_and_parameters_that_exist() -> None:
    by_id = {op["operationId"]: op for op in OPERATIONS.values()}
    links = [
        link
        for op in OPERATIONS.values()
        for reply in op["responses"].values()
        for link in reply.get("links", {}).values()
    ]
    assert links
    for link in links:
        params = {p["name"] for p in by_id[link["operationId"]].get("parameters", ())}
        assert set(link["parameters"]) <= params, link


def test_the_app_registers_exactly_the_table() -> None:
    app = web.Application()
    routes.register(app)
    registered = [
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None
    ]
    head = {(r.path, "HEAD") for r in routes.ROUTES if r.head}
    assert sorted(registered) == sorted([*TABLE, *head])
    assert orjson.loads(app[openapi.DOCUMENT]) == orjson.loads(orjson.dumps(DOC))


def test_public_routes_are_those_documented_without_an_api_key() -> None:
    for route in routes.ROUTES:
        if route.path.startswith("/api/"):
            assert (route.name in PUBLIC_ROUTES) == (route.security != openapi.API_KEY), route.path
    names = {route.name for route in routes.ROUTES}
    assert PUBLIC_ROUTES <= names


def test_models_have_the_fields_the_handlers_take() -> None:
    writable = list(validation.SUBSCRIPTION_FIELDS)
    assert list(api_models.SubscriptionCreate.__struct_fields__) == writable
    assert list(api_models.SubscriptionPatch.__struct_fields__) == writable
    assert set(writable) < set(api_models.Subscription.__struct_fields__)
    assert api_models.FanoutEvent.__struct_fields__ == ("event_type", "payload", "event_id")


def _subscription_verdict(body: Any, require_target_url: bool) -> bool:
    try:
        validation.subscription_body(body, require_target_url=require_target_url)
    except ApiError as exc:
        assert exc.status == 400
        return False
    return True


def _fanout_verdict(body: Any) -> bool:
    try:
        ingest_api._fanout_members(orjson.dumps(body))
    except ApiError as exc:
        assert exc.status == 400
        return False
    return True


def _model_verdict(model: type, body: Any) -> bool:
    try:
        msgspec.json.decode(orjson.dumps(body), type=model)
    except msgspec.ValidationError:
        return False
    return True


URL = "https://example.com/hook"
WEBHOOK_ID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
# (body, valid): cases the schema, the model and the handler's validation all judge alike. Not
# here: what a JSON Schema cannot say (an ftp: URL, a host-less URL, an IPv4 host as 127.1).
SUBSCRIPTION_CASES = [
    ({"target_url": URL}, True),
    ({"target_url": "http://192.0.2.1:8080/x", "secret_key": "s", "event_types": ["a.b", "c d"],
      "is_active": False}, True),
    ({"target_url": URL, "event_types": []}, True),
    ({}, False),
    ({"target_url": ""}, False),
    ({"target_url": 5}, False),
    ({"target_url": URL + "x" * validation.MAX_URL_LENGTH}, False),
    ({"target_url": URL, "unknown": 1}, False),
    ({"target_url": URL, "secret_key": ""}, False),
    ({"target_url": URL, "event_types": "a"}, False),
    ({"target_url": URL, "event_types": [" a"]}, False),
    ({"target_url": URL, "event_types": ["a\n"]}, False),
    ({"target_url": URL, "event_types": ["a" * (records.MAX_EVENT_TYPE_LENGTH + 1)]}, False),
    ({"target_url": URL, "event_types": [""]}, False),
    ({"target_url": URL, "event_types": ["é"]}, False),
    ({"target_url": URL, "is_active": "yes"}, False),
    ([URL], False),
]  # fmt: skip
PATCH_CASES = [
    ({}, True),
    ({"is_active": False}, True),
    ({"event_types": ["x" * records.MAX_EVENT_TYPE_LENGTH]}, True),
    ({"nope": 1}, False),
    ({"event_types": [""]}, False),
    ({"target_url": None}, False),
]
FANOUT_CASES = [
    ({"event_type": "order.created", "payload": {"a": 1}}, True),
    ({"event_type": "e", "payload": None}, True),
    ({"event_type": "e"}, False),
    ({"payload": 1}, False),
    ({"event_type": "e\r\n", "payload": 1}, False),
    ({"event_type": "e ", "payload": 1}, False),
    ({"event_type": 1, "payload": 1}, False),
    ({"event_type": "e", "payload": 1, "more": 2}, False),
    (["e", 1], False),
    ({"event_type": "e", "payload": 1, "event_id": "order-42:v1.x~y_z"}, True),
    ({"event_type": "e", "payload": 1, "event_id": ""}, False),
    ({"event_type": "e", "payload": 1, "event_id": "-x"}, False),
    ({"event_type": "e", "payload": 1, "event_id": "a/b"}, False),
    ({"event_type": "e", "payload": 1, "event_id": "x" * 201}, False),
    ({"event_type": "e", "payload": 1, "event_id": 5}, False),
]


@pytest.mark.parametrize("operation_id", ["createSubscription", "replaceSubscription"])
@pytest.mark.parametrize(("body", "valid"), SUBSCRIPTION_CASES)
def test_subscription_schema_judges_as_the_handler(
    operation_id: str, body: Any, valid: bool
) -> None:
    assert _request_schema(operation_id).is_valid(body) is valid
    assert _model_verdict(api_models.SubscriptionCreate, body) is valid
    assert _subscription_verdict(body, require_target_url=True) is valid


@pytest.mark.parametrize(("body", "valid"), PATCH_CASES)
def test_patch_schema_judges_as_the_handler(body: Any, valid: bool) -> None:
    assert _request_schema("updateSubscription").is_valid(body) is valid
    assert _model_verdict(api_models.SubscriptionPatch, body) is valid
    assert _subscription_verdict(body, require_target_url=False) is valid


@pytest.mark.parametrize(("body", "valid"), FANOUT_CASES)
def test_fanout_schema_judges_as_the_handler(body: Any, valid: bool) -> None:
    assert _request_schema("fanOut").is_valid(body) is valid
    assert _model_verdict(api_models.FanoutEvent, body) is valid
    assert _fanout_verdict(body) is valid


def test_query_parameter_schemas_judge_as_the_handlers() -> None:
    for operation_id, default in (
        ("listSubscriptions", pagination.DEFAULT_LIMIT),
        ("listWebhooks", 20),
    ):
        limit = _param_schema(operation_id, "limit")
        for value in (1, default, pagination.MAX_LIMIT, 0, pagination.MAX_LIMIT + 1, -1):
            try:
                pagination.limit({"limit": str(value)})
                accepted = True
            except ApiError:
                accepted = False
            assert limit.is_valid(value) is accepted, (operation_id, value)
    event_type = _param_schema("ingest", "event_type")
    for value in ("a", "a b", "a ", "", "a\tb", "x" * 201):
        try:
            validation.event_type(value)
            accepted = True
        except ApiError:
            accepted = False
        assert event_type.is_valid(value) is accepted, value
    status = _param_schema("listWebhooks", "status")
    assert all(status.is_valid(s.value) for s in records.Status)
    assert not status.is_valid("LOST")


def test_answers_match_their_response_schemas() -> None:
    now = records.now_iso()
    sub = Subscription(WEBHOOK_ID, URL, "whsec_x", ("a",), True, now, now)
    view = {**sub.to_record(), "circuit": {"state": "open", "since": now}}
    answers = [
        ("getSubscription", "200", view),
        ("ingest", "202", api_models.IngestAccepted(id=WEBHOOK_ID, status="accepted")),
        ("fanOut", "202", api_models.FanoutAccepted("order-42", "accepted")),
        ("ingest", "400", validation_error("no", "event_type", allowed=["a"]).body()),
    ]
    by_id = {op["operationId"]: op for op in OPERATIONS.values()}
    for operation_id, status, body in answers:
        content = by_id[operation_id]["responses"][status]["content"]["application/json"]
        errors = list(_validator(content["schema"]).iter_errors(msgspec.to_builtins(body)))
        assert not errors, (operation_id, errors)
    assert not _validator(
        by_id["getSubscription"]["responses"]["200"]["content"]["application/json"]["schema"]
    ).is_valid({**view, "created_at": "yesterday"})
    assert not _validator(
        by_id["getSubscription"]["responses"]["200"]["content"]["application/json"]["schema"]
    ).is_valid({**view, "circuit": {"state": "ajar", "since": None}})
