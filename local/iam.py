"""IAM locally: each function's AWS calls are checked against the grants its deployed role has.

On AWS every function runs with a least-privilege role built from `streamer.catalog`
(`catalog.Function.tables`, `posts_to_connections`, `puts_lifecycle_events`; the
components turn them into statements, `components/policies.py`). Locally nothing stood
between a function and every table, so a call its role lacks worked here and failed
there. This module derives the same grants from the same catalog entry and refuses any
other call as AWS does, before it leaves the process.

The seam is botocore's event system: a `before-call` handler on the services the
functions call (DynamoDB, the `@connections` management API, EventBridge), installed
in every botocore session of the process (`local.calls.register_botocore_handler`).
It answers a refused call in the service's place with the service's own wire answer,
parsed by botocore's own parser, so the caller gets exactly the `ClientError` the SDK
raises on AWS (code `AccessDeniedException`; HTTP 400 for DynamoDB and EventBridge,
403 for the management API) and the function's error handling runs as it would there.

Who is calling: a worker process serves one function (`enforce`, at its start); in
`--invocations threads` the invocation's thread says (`acting_as`). A function the
catalog does not declare (tests' own handlers) is not checked. Calls of other services,
and calls on threads a threads-mode function starts itself, are not checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from streamer import catalog, config, endpoints

log = logging.getLogger("local.iam")

ACCESS_DENIED = "AccessDeniedException"
#: What `execute-api:ManageConnections` covers: the `@connections` calls, by HTTP method
#: in the resource ARN (apigateway-websocket-control-access-iam.html).
MANAGE_CONNECTIONS = "execute-api:ManageConnections"
PUT_EVENTS = "events:PutEvents"
#: The services checked, by botocore's event name (the hyphenized service id).
SERVICES = ("dynamodb", "apigatewaymanagementapi", "eventbridge")
#: What a refusal answers, by service: HTTP status and the error's wire form. DynamoDB:
#: "AccessDeniedException ... HTTP status code 400" (developerguide/Programming.Errors);
#: EventBridge: AccessDeniedException, HTTP 400 (APIReference/CommonErrors); the
#: management API is API Gateway, which refuses IAM with 403 (aws-cdk issue 18410,
#: aws-solutions/innovation-sandbox-on-aws PR 59: "An error occurred
#: (AccessDeniedException) when calling the PostToConnection operation: User: ...").
_STATUS = {"dynamodb": 400, "eventbridge": 400, "apigatewaymanagementapi": 403}
#: The action each item of a transaction is authorized as: "Permissions for Put, Update,
#: Delete, and Get actions are governed by the permissions used for the underlying
#: PutItem, UpdateItem, DeleteItem, and GetItem operations. For the ConditionCheck
#: action, you can use the dynamodb:ConditionCheckItem permission"
#: (developerguide/transaction-apis-iam.html).
_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
#: Operations naming their tables in `RequestItems`: each table is authorized.
_BATCHES = ("BatchGetItem", "BatchWriteItem")
_TRANSACTIONS = ("TransactWriteItems", "TransactGetItems")
#: Operations that may read an index (`IndexName`), authorized on the index's ARN.
_INDEX_READS = ("Query", "Scan")


@dataclass(frozen=True)
class Permission:
    """One action on one resource: a grant (its resource may hold IAM's `*` and `?`
    wildcards), or what a call asks for."""

    action: str
    resource: str


def _pattern(resource: str) -> re.Pattern[str]:
    """IAM's resource matching: `*` any run of characters (`/` included), `?` one."""
    escaped = re.escape(resource).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{escaped}$")


@dataclass(frozen=True)
class Role:
    """A function's execution role: who it is, and what its policy allows."""

    function: str
    account: str
    grants: tuple[Permission, ...]
    #: The answers `allows` gave: a function asks the same few questions (its tables and
    #: indexes, its APIs) on every call, and the stack's checking must not cost the
    #: function's CPU what AWS's does not.
    _answers: dict[Permission, bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def principal(self) -> str:
        """The assumed-role session ARN Lambda's credentials carry: the function's role,
        the function's name as the session (the role is named `<function>-role`)."""
        return f"arn:aws:sts::{self.account}:assumed-role/{self.function}-role/{self.function}"

    def allows(self, wanted: Permission) -> bool:
        answer = self._answers.get(wanted)
        if answer is None:
            answer = self._answers[wanted] = any(
                grant.action == wanted.action and _pattern(grant.resource).match(wanted.resource)
                for grant in self.grants
            )
        return answer

    def first_refused(self, wanted: Sequence[Permission]) -> Permission | None:
        """The first permission of a call its policy does not allow; None if all are."""
        return next((p for p in wanted if not self.allows(p)), None)

    def refusal(self, refused: Permission) -> str:
        """AWS's words for an implicit deny: "User user is not authorized to perform
        action on resource because context", where an implicit deny's context is "no
        type policy allows the action action" (IAM User Guide, "Troubleshoot access
        denied error messages", troubleshoot_access-denied.html)."""
        return (
            f"User: {self.principal} is not authorized to perform: {refused.action} "
            f"on resource: {refused.resource} because no identity-based policy allows "
            f"the {refused.action} action"
        )


def table_arn(region: str, account: str, table: str) -> str:
    """A table's ARN; a name that already is one (DynamoDB takes either) as it is."""
    if table.startswith("arn:"):
        return table
    return f"arn:aws:dynamodb:{region}:{account}:table/{table}"


def role_of(
    function: catalog.Function, local_name: str, account: str, settings: config.Settings
) -> Role:
    """The grants `components` builds from `function`'s catalog entry, on this stack's
    resources (`settings`: the environment every function gets).

    Tables: each grant on the table (or its index) in every region of the stack
    (`policies.table_statements`). Posting: `@connections` POST on each of the stack's
    APIs (`connections.ConnectionsAccess`); the local APIs' region and stage are not
    the deployed ones, so those two parts match any. Lifecycle events: PutEvents on the
    region's bus, when the stack has one (`notifications.Notifications.statements`).
    """
    grants: list[Permission] = []
    for access in function.tables:
        name = getattr(settings, f"{access.table}_table")
        for region in settings.regions:
            resource = table_arn(region, account, name)
            if access.index:
                resource = f"{resource}/index/{access.index}"
            grants.extend(Permission(action, resource) for action in access.actions)
    if function.posts_to_connections:
        for api_id in endpoints.parse_overrides(settings.management_endpoint):
            resource = f"arn:aws:execute-api:*:{account}:{api_id}/*/POST/@connections/*"
            grants.append(Permission(MANAGE_CONNECTIONS, resource))
    if function.puts_lifecycle_events and settings.event_bus:
        bus = f"arn:aws:events:{settings.region}:{account}:event-bus/{settings.event_bus}"
        grants.append(Permission(PUT_EVENTS, bus))
    return Role(local_name, account, tuple(grants))


def dynamodb_permissions(
    operation: str, params: Mapping[str, Any], region: str, account: str
) -> list[Permission]:
    """What one DynamoDB call is authorized as: its action on each table (or index) it names."""
    action = f"dynamodb:{operation}"
    if operation in _BATCHES:
        return [Permission(action, table_arn(region, account, t)) for t in params["RequestItems"]]
    if operation in _TRANSACTIONS:
        wanted = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            wanted.append(
                Permission(_TRANSACT_ACTIONS[kind], table_arn(region, account, body["TableName"]))
            )
        return wanted
    if "TableName" not in params:
        # Account-wide operations (ListTables, ...) are authorized on every table.
        return [Permission(action, table_arn(region, account, "*"))]
    resource = table_arn(region, account, params["TableName"])
    if operation in _INDEX_READS and params.get("IndexName"):
        resource = f"{resource}/index/{params['IndexName']}"
    return [Permission(action, resource)]


def events_permissions(
    operation: str, params: Mapping[str, Any], region: str, account: str
) -> list[Permission]:
    """PutEvents on the bus of each entry (the account's `default` bus when unnamed)."""
    if operation != "PutEvents":
        return [Permission(f"events:{operation}", "*")]
    wanted = []
    for entry in params.get("Entries", []):
        bus = entry.get("EventBusName") or "default"
        if not bus.startswith("arn:"):
            bus = f"arn:aws:events:{region}:{account}:event-bus/{bus}"
        wanted.append(Permission(PUT_EVENTS, bus))
    return wanted


def management_permissions(
    method: str, url: str, region: str, account: str, api_ids: Mapping[str, str]
) -> list[Permission]:
    """ManageConnections on `{api}/{stage}/{METHOD}/@connections/{connectionId}`, the
    connection as the resource template names it in AWS's refusals (aws-cdk issue 18410).

    The API is the one whose endpoint `url` is (`api_ids`: endpoint URL to API id, the
    local stack's `STREAMER_MANAGEMENT_ENDPOINT`), else the id in an execute-api host;
    the stage the one in the path, else the local APIs' (`local.apigateway.Api`).
    """
    from local.apigateway import Api

    parsed = urlparse(url)
    path = unquote(parsed.path)
    base, _, _ = path.partition("/@connections/")
    stage = base.strip("/")
    origin = f"{parsed.scheme}://{parsed.netloc}"
    api_id = api_ids.get(f"{origin}{base}".rstrip("/")) or api_ids.get(origin)
    if api_id is None:
        api_id = (parsed.hostname or "").split(".", 1)[0]
    resource = (
        f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage or Api.stage}/{method}"
        "/@connections/{connectionId}"
    )
    return [Permission(MANAGE_CONNECTIONS, resource)]


def refused_answer(service: str, operation_model: Any, message: str) -> tuple[Any, dict]:
    """The service's wire answer to a refused call, and what botocore parses from it."""
    from botocore.awsrequest import AWSResponse, HeadersDict
    from botocore.parsers import create_parser

    status = _STATUS[service]
    request_id = str(uuid.uuid4())
    if service == "apigatewaymanagementapi":
        headers = {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": ACCESS_DENIED,
            "x-amzn-RequestId": request_id,
        }
        body = {"Message": message}
    else:
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": request_id}
        body = {"__type": f"com.amazon.coral.service#{ACCESS_DENIED}", "Message": message}
    raw = json.dumps(body).encode()
    parser = create_parser(operation_model.service_model.protocol)
    wire = {"status_code": status, "headers": HeadersDict(headers), "body": raw}
    parsed = parser.parse(wire, operation_model.output_shape)
    return AWSResponse("", status, headers, None), parsed


class _Caller:
    """A function whose calls are checked; its role is read from the environment at its
    first call (an environment the runtime cannot read fails the function before that)."""

    def __init__(self, function: catalog.Function, local_name: str, account: str) -> None:
        self._function = function
        self._local_name = local_name
        self._account = account
        self._lock = threading.Lock()
        self._role: Role | None = None

    def role(self) -> Role:
        with self._lock:
            if self._role is None:
                settings = config.Settings.from_env()
                self._role = role_of(self._function, self._local_name, self._account, settings)
            return self._role


def _caller(local_name: str, account: str) -> _Caller | None:
    """The catalog function the local stack runs as `local_name`; None for another name."""
    from local.wiring import catalog_function

    function = catalog_function(local_name)
    return None if function is None else _Caller(function, local_name, account)


class _Enforcer:
    """The `before-call` handler: the calling function's role, and its refusals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._installed = False
        #: The function this process serves (a worker process).
        self._process: _Caller | None = None
        #: The function this thread's invocation serves (threads mode).
        self._thread: ContextVar[_Caller | None] = ContextVar("local_iam_caller", default=None)

    def install(self) -> None:
        """Have every botocore client of this process ask before calling; once."""
        with self._lock:
            if self._installed:
                return
            from local.calls import register_botocore_handler

            for service in SERVICES:
                register_botocore_handler(f"before-call.{service}", self.before_call)
            self._installed = True

    def serve(self, local_name: str, account: str) -> None:
        self._process = _caller(local_name, account)
        if self._process is not None:
            self.install()

    def before_call(self, model: Any, params: dict, context: dict, **_: Any) -> Any:
        caller = self._thread.get() or self._process
        if caller is None:
            return None
        role = caller.role()
        service = model.service_model.service_id.hyphenize()
        region = context.get("client_region") or ""
        if service == "apigatewaymanagementapi":
            overrides = endpoints.parse_overrides(os.environ.get(config.MANAGEMENT_ENDPOINT))
            api_ids = {url: api for api, url in overrides.items()}
            method = model.http.get("method", "POST")
            wanted = management_permissions(method, params["url"], region, role.account, api_ids)
        else:
            body = json.loads(params.get("body") or b"{}")
            permissions = dynamodb_permissions if service == "dynamodb" else events_permissions
            wanted = permissions(model.name, body, region, role.account)
        refused = role.first_refused(wanted)
        if refused is None:
            return None
        message = role.refusal(refused)
        log.warning("%s: %s refused: %s", role.function, model.name, message)
        return refused_answer(service, model, message)

    @contextlib.contextmanager
    def acting_as(self, local_name: str, account: str) -> Iterator[None]:
        caller = _caller(local_name, account)
        if caller is None:
            yield
            return
        self.install()
        token = self._thread.set(caller)
        try:
            yield
        finally:
            self._thread.reset(token)


_enforcer = _Enforcer()


def enforce(local_name: str, account: str) -> None:
    """In a worker process serving `local_name`: check every call it makes from now on.
    Call it before the function makes its first client."""
    _enforcer.serve(local_name, account)


def acting_as(local_name: str, account: str) -> contextlib.AbstractContextManager:
    """In threads mode: the calls of this thread (one invocation) are `local_name`'s."""
    return _enforcer.acting_as(local_name, account)
