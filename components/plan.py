"""Offline plan: `python -m components.plan --stack prod [--json] [--project bootstrap]`.

Runs `__main__.py` under Pulumi's mocks with the stack's `Pulumi.<stack>.yaml`
configuration and prints every resource it would create: type, logical name, parent,
region and inputs (key inputs as text; all of them with `--json`), then the stack
outputs. Nothing is deployed and no cloud account is needed, so reviewers can diff
the output of two commits. The mocks make up identifiers and ARNs in the shape AWS
uses (account 123456789012) so that everything derived from them can be read.

Secret values are never printed: they show as `[secret]`. (Pulumi makes a whole input
secret when any part of it is, so e.g. every value of the authorizer's environment is
redacted once the JWT key is a secret; the variable names still show.)
When no built archives are found, the code archive is built into a temporary
directory with placeholder layers (`python -m components.package --code-only`).
Stack references (the environment stacks' check of the account bootstrap) report a
bootstrapped account; `--project bootstrap` plans the bootstrap project itself.
The infrastructure tests run the program through `run` as well.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import runpy
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks, rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import package, powertools

PROJECT_ROOT = package.PROJECT_ROOT
ACCOUNT = "123456789012"
#: The organization a self-managed backend reports (`pulumi.get_organization()`).
ORGANIZATION = "organization"
SECRET = "[secret]"
#: An input known only once other resources exist (in a preview, what they report).
UNKNOWN = "[unknown]"
PROVIDER_TYPE = "pulumi:providers:aws"
STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
GET_PARAMETER = "aws:ssm/getParameter:getParameter"
GET_CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
#: The public parameters Powertools publishes its layers under, `{arch}/{python}/{version}`.
POWERTOOLS_PARAMETER = re.compile(r"^/aws/service/powertools/python/([^/]+)/(python3\.\d+)/[^/]+$")
#: The layer version the mocks' parameters name (AWS's counts up with each release).
POWERTOOLS_LAYER_VERSION = 27

#: The scheme of an API Gateway v2 API's endpoint by protocol type (pulumi_aws
#: apigatewayv2 Api `api_endpoint`: "https://{api-id}.execute-api.{region}.amazonaws.com
#: for HTTP APIs and wss://{api-id}.execute-api.{region}.amazonaws.com for WebSocket APIs").
_API_SCHEMES = {"HTTP": "https", "WEBSOCKET": "wss"}
#: The stage an HTTP API serves at its root (apigateway/latest/developerguide/
#: http-api-stages.html).
DEFAULT_STAGE = "$default"

#: Inputs shown per resource type in the text plan (all inputs are in the JSON plan).
KEY_INPUTS: Mapping[str, tuple[str, ...]] = {
    PROVIDER_TYPE: ("region",),
    STACK_REFERENCE_TYPE: ("name",),
    "aws:apigateway/account:Account": ("cloudwatchRoleArn",),
    "aws:dynamodb/table:Table": ("hashKey", "rangeKey", "streamViewType", "replicas"),
    "aws:lambda/function:Function": ("handler", "runtime", "architectures", "memorySize"),
    "aws:lambda/eventSourceMapping:EventSourceMapping": (
        "batchSize",
        "parallelizationFactor",
        "maximumRetryAttempts",
        "filterCriteria",
    ),
    "aws:apigatewayv2/route:Route": ("routeKey", "authorizationType"),
    "aws:apigatewayv2/authorizer:Authorizer": ("authorizerType", "identitySources"),
    "aws:apigatewayv2/stage:Stage": ("name",),
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("metricName", "threshold"),
    "aws:cloudwatch/eventRule:EventRule": ("scheduleExpression",),
}


@dataclass
class PlannedResource:
    """One registered resource: what the engine would be asked to create."""

    type: str
    name: str
    parent: str | None
    region: str | None
    custom: bool
    inputs: dict[str, Any]
    #: Logical names of the resources this one waits for (explicit and through inputs).
    depends_on: list[str] = field(default_factory=list)
    id: str | None = field(repr=False, default=None)
    outputs: dict[str, Any] = field(repr=False, default_factory=dict)
    #: Resource options the engine would apply: inputs Pulumi leaves as they are on updates,
    #: refusing deletion (`protect`), and keeping the cloud resource when deleted.
    ignore_changes: list[str] = field(repr=False, default_factory=list)
    protect: bool = field(repr=False, default=False)
    retain_on_delete: bool = field(repr=False, default=False)


@dataclass
class Plan:
    """Every resource of one stack's program run, in registration order, and its outputs."""

    project: str
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> PlannedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def children(self, parent: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent == parent]

    def descendants(self, parent: str) -> list[PlannedResource]:
        found = []
        for child in self.children(parent):
            found += [child, *self.descendants(child.name)]
        return found

    def to_json(self) -> str:
        data = {
            "project": self.project,
            "stack": self.stack,
            "resources": [
                {
                    k: v
                    for k, v in asdict(r).items()
                    if k not in ("id", "outputs", "ignore_changes", "protect", "retain_on_delete")
                }
                for r in self.resources
            ],
            "outputs": self.outputs,
        }
        return json.dumps(data, indent=2, sort_keys=True, default=str)

    def to_text(self) -> str:
        lines = [
            f"stack {self.stack} of {self.project}: {len(self.resources)} resources",
            "",
        ]
        lines += self._tree(None, 0)
        lines += ["", "outputs:"]
        lines += [f"  {k} = {json.dumps(v, sort_keys=True)}" for k, v in self.outputs.items()]
        return "\n".join(lines) + "\n"

    def _tree(self, parent: str | None, depth: int) -> Iterator[str]:
        for r in self.children(parent) if parent else self._roots():
            region = f" [{r.region}]" if r.region else ""
            keys = KEY_INPUTS.get(r.type, ())
            shown = " ".join(
                f"{k}={json.dumps(r.inputs[k], sort_keys=True)}" for k in keys if k in r.inputs
            )
            lines = f"{'  ' * depth}{r.type}  {r.name}{region}"
            yield f"{lines}  {shown}" if shown else lines
            yield from self._tree(r.name, depth + 1)

    def _roots(self) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent is None]


def _physical_name(logical: str) -> str:
    """Pulumi-style auto-name: the logical name plus a suffix, stable across runs."""
    return f"{logical}-{hashlib.sha1(logical.encode()).hexdigest()[:7]}"


def bootstrapped_account(stack_name: str) -> dict[str, Any]:
    """What the bootstrap project (bootstrap/) exports, for a stack named by its region
    (`<organization>/streamer-bootstrap/<region>`): an account where it ran."""
    region = stack_name.rsplit("/", 1)[-1]
    return {
        "cloudwatchRoleArn": f"arn:aws:iam::{ACCOUNT}:role/streamer-apigateway-cloudwatch-{region}",
        "region": region,
    }


def bare_account(stack_name: str) -> dict[str, Any]:
    """An account where no bootstrap ran: every referenced stack reports nothing."""
    return {}


def managed_powertools_arn(region: str, arch: str = "arm64", python: str = "python3.12") -> str:
    """The layer ARN Powertools' parameter for `arch` and `python` holds in `region`."""
    return (
        f"arn:aws:lambda:{region}:{powertools.PUBLISHER_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{python.replace('.', '')}-{arch}:{POWERTOOLS_LAYER_VERSION}"
    )


class PlanMocks(pulumi.runtime.Mocks):
    """Answers resource registrations with outputs shaped like AWS's, per provider region.

    Stack references report `stack_outputs(name)`: by default a bootstrapped account.
    """

    def __init__(
        self, stack_outputs: Callable[[str], Mapping[str, Any]] = bootstrapped_account
    ) -> None:
        self.provider_regions: dict[str, str] = {}
        self.stack_outputs = stack_outputs
        #: The default provider's region (`aws:region`), for resources without a provider.
        self.default_region: str | None = None
        #: The SSM parameters the program read: (the provider's region, name).
        self.parameters_read: list[tuple[str, str]] = []
        #: Each API Gateway v2 API's protocol type (HTTP or WEBSOCKET), by API id.
        self.api_protocols: dict[str, str] = {}

    def region_of(self, provider_ref: str | None) -> str | None:
        return self.provider_regions.get((provider_ref or "").split("::")[-1])

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == PROVIDER_TYPE:
            resource_id = f"{args.name}-provider"
            self.provider_regions[resource_id] = args.inputs.get("region")
            return resource_id, dict(args.inputs)
        if args.typ == STACK_REFERENCE_TYPE:
            name = args.inputs["name"]
            return name, {"name": name, "outputs": dict(self.stack_outputs(name))}
        region = self.region_of(args.provider) or self.default_region or "us-east-1"
        outputs = dict(args.inputs)
        resource_id = f"{args.name}-id"
        service_arn = f"arn:aws:{{}}:{region}:{ACCOUNT}:"
        name = args.inputs.get("name") or _physical_name(args.name)
        kind = args.typ.split(":")[-1]
        if kind == "Table":
            arn = service_arn.format("dynamodb") + f"table/{name}"
            outputs.update(name=name, arn=arn)
            if args.inputs.get("streamEnabled"):
                outputs["streamArn"] = f"{arn}/stream/2024-01-01T00:00:00.000"
            outputs["replicas"] = [
                {
                    **replica,
                    "arn": arn.replace(f":{region}:", f":{replica['regionName']}:"),
                    "streamArn": arn.replace(f":{region}:", f":{replica['regionName']}:")
                    + "/stream/2024-01-01T00:00:00.000",
                }
                for replica in args.inputs.get("replicas", [])
            ]
        elif kind == "Function":
            arn = service_arn.format("lambda") + f"function:{name}"
            invoke = (
                f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations"
            )
            # publish=True: each deploy publishes a version (the mocks' is always "1").
            version = "1" if args.inputs.get("publish") else "$LATEST"
            outputs.update(
                name=name,
                arn=arn,
                invokeArn=invoke,
                version=version,
                qualifiedArn=f"{arn}:{version}",
            )
        elif args.typ == "aws:lambda/alias:Alias":
            # An alias's ARN is the function's qualified by the alias name
            # (lambda/latest/dg/configuration-aliases.html).
            function_arn = service_arn.format("lambda") + f"function:{args.inputs['functionName']}"
            arn = f"{function_arn}:{name}"
            invoke = (
                f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations"
            )
            outputs.update(arn=arn, invokeArn=invoke)
        elif kind == "LayerVersion":
            layer_arn = service_arn.format("lambda") + f"layer:{args.inputs['layerName']}"
            outputs.update(layerArn=layer_arn, arn=f"{layer_arn}:1", version="1")
        elif kind == "Role":
            outputs.update(name=name, arn=f"arn:aws:iam::{ACCOUNT}:role/{name}")
            resource_id = name
        elif kind == "LogGroup":
            outputs.update(name=name, arn=service_arn.format("logs") + f"log-group:{name}")
        elif kind == "Queue":
            outputs.update(name=name, arn=service_arn.format("sqs") + name)
            outputs["url"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"
        elif kind == "Topic":
            outputs.update(name=name, arn=service_arn.format("sns") + name)
        elif kind == "Api":
            resource_id = hashlib.sha1(args.name.encode()).hexdigest()[:10]
            self.api_protocols[resource_id] = args.inputs["protocolType"]
            scheme = _API_SCHEMES[args.inputs["protocolType"]]
            outputs["apiEndpoint"] = f"{scheme}://{resource_id}.execute-api.{region}.amazonaws.com"
            outputs["executionArn"] = service_arn.format("execute-api") + resource_id
        elif kind == "Stage":
            outputs["invokeUrl"] = self._invoke_url(
                args.inputs["apiId"], args.inputs["name"], region
            )
        elif kind == "DomainName":
            # The regional host API Gateway gives the domain; its DNS record points here.
            target = f"d-{hashlib.sha1(args.name.encode()).hexdigest()[:10]}"
            resource_id = args.inputs["domainName"]  # AWS identifies a domain by its name
            outputs["domainNameConfiguration"] = {
                **args.inputs.get("domainNameConfiguration", {}),
                "targetDomainName": f"{target}.execute-api.{region}.amazonaws.com",
            }
        elif kind == "EventRule":
            bus = args.inputs.get("eventBusName")
            path = f"rule/{bus}/{name}" if bus and bus != "default" else f"rule/{name}"
            outputs.update(name=name, arn=service_arn.format("events") + path)
        elif kind == "EventBus":
            outputs.update(name=name, arn=service_arn.format("events") + f"event-bus/{name}")
        elif kind == "EventArchive":
            outputs.update(name=name, arn=service_arn.format("events") + f"archive/{name}")
        elif kind == "Key":
            key_id = (
                hashlib.sha1(args.name.encode()).hexdigest()[:8] + "-0000-4000-8000-000000000000"
            )
            outputs.update(keyId=key_id, arn=service_arn.format("kms") + f"key/{key_id}")
            resource_id = key_id
        elif kind == "EventSourceMapping":
            outputs["uuid"] = f"{args.name}-uuid"
        return resource_id, outputs

    def _invoke_url(self, api_id: str, stage: str, region: str) -> str:
        """A stage's URL as the provider reports it (pulumi_aws apigatewayv2 Stage
        `invoke_url`: "wss://z4675bid1j.execute-api.eu-west-2.amazonaws.com/example-stage,
        or https://z4675bid1j.execute-api.eu-west-2.amazonaws.com/"): a WebSocket API's
        is wss:// and names the stage, an HTTP API's https://, its `$default` stage served
        at the root."""
        protocol = self.api_protocols[api_id]
        path = "" if protocol == "HTTP" and stage == DEFAULT_STAGE else stage
        return f"{_API_SCHEMES[protocol]}://{api_id}.execute-api.{region}.amazonaws.com/{path}"

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        """The functions the programs call: `aws.get_caller_identity` (the account, for key
        policies: components/keys.py) and `aws.ssm.get_parameter`, for the managed
        Powertools layer (components/powertools.py), answered as AWS publishes it."""
        if args.token == GET_CALLER_IDENTITY:
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                "id": ACCOUNT,
                "userId": "AIDAEXAMPLEDEPLOYER",
            }, []
        if args.token != GET_PARAMETER:
            raise NotImplementedError(f"no mock for {args.token}")
        name = args.args["name"]
        match = POWERTOOLS_PARAMETER.match(name)
        if match is None:
            raise LookupError(f"ParameterNotFound: {name}")
        region = self.region_of(args.provider) or self.default_region or "us-east-1"
        self.parameters_read.append((region, name))
        value = managed_powertools_arn(region, match.group(1), match.group(2))
        arn = f"arn:aws:ssm:{region}::parameter{name}"
        return {
            "id": name,
            "name": name,
            "arn": arn,
            "type": "String",
            "value": value,
            "insecureValue": value,
            "version": 1,
            "withDecryption": True,
        }, []


class _RecordingMonitor(mocks.MockMonitor):
    """The mock monitor, also remembering each registration's parent and provider."""

    def __init__(self, mocks_: PlanMocks) -> None:
        super().__init__(mocks_)
        self.registrations: list[tuple[Any, str]] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.registrations.append((request, response.urn))
        return response

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        self.registrations.append((request, response.urn))
        return response


def _redacted(value: Any) -> Any:
    """A secret's shape without its content: keys stay (which variables a function gets
    is worth reviewing), every value becomes the marker."""
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return SECRET


def _printable(value: Any) -> Any:
    """Inputs as plain data: secrets redacted, archives shown by their file name
    (their content is identified by the hash inputs next to them)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _redacted(value.get("value"))
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN
    if isinstance(value, pulumi.FileArchive):
        return f"archive:{Path(value.path).name}"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's wire format carries every number as a double
    return value


def project_defaults(project_file: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults the project file's `config:` declares, by full key, as the engine applies
    them to a stack that does not set the key."""
    name = project_file["name"]
    return {
        key if ":" in key else f"{name}:{key}": declared["default"]
        for key, declared in (project_file.get("config") or {}).items()
        if isinstance(declared, dict) and "default" in declared
    }


def load_stack_config(stack: str, root: Path = PROJECT_ROOT) -> tuple[str, dict[str, str], list]:
    """The project name, the stack's configuration as the engine passes it, and secret keys.

    Keys the stack does not set take the project file's declared defaults, as the engine's.
    Encrypted (`secure:`) values cannot be read offline; they become `[secret]`.
    """
    project_file = yaml.safe_load((root / "Pulumi.yaml").read_text())
    project = project_file["name"]
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no stack named {stack!r}")
    given = {
        **project_defaults(project_file),
        **((yaml.safe_load(path.read_text()) or {}).get("config") or {}),
    }
    config, secret_keys = {}, []
    for key, value in given.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = SECRET
            secret_keys.append(key)
        else:
            config[key] = value if isinstance(value, str) else json.dumps(value)
    return project, config, secret_keys


def run(
    stack: str,
    *,
    artifacts_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    secret_keys: tuple[str, ...] = (),
    preview: bool = True,
    root: Path = PROJECT_ROOT,
    plan_mocks: PlanMocks | None = None,
) -> Plan:
    """Run the program of `root` for `stack` under mocks and return what it registered.

    `overrides` replaces configuration values (keys without the project prefix; None
    removes the key), `secret_keys` marks some of them secret. Each call starts from fresh mocks,
    configuration and root stack, so runs do not leak into each other.
    """
    project, config, secrets = load_stack_config(stack, root)
    for key, value in (overrides or {}).items():
        if value is None:
            config.pop(f"{project}:{key}", None)
        else:
            config[f"{project}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    secrets += [f"{project}:{key}" for key in secret_keys]
    if artifacts_dir is not None:
        config[f"{project}:artifactsDir"] = str(artifacts_dir)

    def program() -> None:
        runpy.run_path(str(root / "__main__.py"), run_name="__main__")

    return run_program(
        program,
        project=project,
        stack=stack,
        config=config,
        secret_keys=tuple(secrets),
        preview=preview,
        plan_mocks=plan_mocks,
    )


def run_program(
    program: Callable[[], None],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str] | None = None,
    secret_keys: tuple[str, ...] = (),
    preview: bool = True,
    plan_mocks: PlanMocks | None = None,
) -> Plan:
    """Run `program` (any Pulumi program, e.g. one component) under `plan_mocks` (fresh
    `PlanMocks` by default) with `config` (full keys, values as the engine passes them)."""
    plan_mocks = plan_mocks or PlanMocks()
    plan_mocks.default_region = (config or {}).get("aws:region")
    monitor = _RecordingMonitor(plan_mocks)
    outputs: dict[str, Any] = {}

    async def run_and_collect() -> None:
        program()
        root_stack = runtime_settings.get_root_resource()
        for key, value in root_stack.outputs.items():
            outputs[key] = await pulumi.Output.from_input(value).future()

    # The runtime schedules on the current event loop; a loop of its own per run keeps
    # runs apart and works after code that left no current loop (e.g. asyncio.run).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        runtime_settings.ROOT.set(None)
        pulumi.runtime.set_mocks(
            plan_mocks,
            project=project,
            stack=stack,
            preview=preview,
            monitor=monitor,
            organization=ORGANIZATION,
        )
        runtime_settings.SETTINGS.outputs.clear()
        set_all_config(dict(config or {}), list(secret_keys))
        _sync_await(run_pulumi_func(run_and_collect))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return Plan(project, stack, _resources(monitor, plan_mocks), outputs)


def _resources(monitor: _RecordingMonitor, plan_mocks: PlanMocks) -> list[PlannedResource]:
    names = {
        urn: request.name
        for request, urn in monitor.registrations
        if request.type != "pulumi:pulumi:Stack"
    }
    planned = []
    for request, urn in monitor.registrations:
        if request.type == "pulumi:pulumi:Stack":
            continue
        read = isinstance(request, resource_pb2.ReadResourceRequest)
        properties = request.properties if read else request.object
        inputs = _printable(rpc.deserialize_properties(properties, keep_internal=True))
        planned.append(
            PlannedResource(
                type=request.type,
                name=request.name,
                parent=names.get(request.parent),
                region=_region(request, inputs, plan_mocks),
                custom=read or bool(request.custom),
                inputs=inputs,
                depends_on=sorted(
                    {names[dep] for dep in request.dependencies if dep in names}
                    | {
                        names[dep]
                        for deps in ({} if read else request.propertyDependencies).values()
                        for dep in deps.urns
                        if dep in names
                    }
                ),
                id=monitor.resources[urn].id or None,
                outputs=monitor.resources[urn].state,
                ignore_changes=[] if read else list(request.ignoreChanges),
                protect=False if read else bool(request.protect),
                retain_on_delete=False if read else bool(request.retainOnDelete),
            )
        )
    # Registration order depends on when outputs resolve; sort for stable diffs.
    return sorted(planned, key=lambda r: (r.name, r.type))


def _region(request: Any, inputs: dict[str, Any], plan_mocks: PlanMocks) -> str | None:
    if request.type == PROVIDER_TYPE:
        return inputs.get("region")
    if not request.type.startswith("aws:"):
        return None
    return plan_mocks.region_of(request.provider) or plan_mocks.default_region


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.plan", description=__doc__)
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("."),
        help="project directory, from the repository root: . (Streamer) or bootstrap",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--artifacts", type=Path, default=package.DEFAULT_OUT, help="built archives to plan with"
    )
    args = parser.parse_args(argv)
    root = (PROJECT_ROOT / args.project).resolve()
    with tempfile.TemporaryDirectory(prefix="streamer-plan-") as scratch:
        artifacts_dir = None
        if root == PROJECT_ROOT:
            artifacts_dir = args.artifacts
            if not (artifacts_dir / package.MANIFEST).is_file():
                print(
                    f"{artifacts_dir} has no archives: planning with a code-only build",
                    file=sys.stderr,
                )
                artifacts_dir = Path(scratch)
                package.build(artifacts_dir, with_layers=False)
            artifacts_dir = artifacts_dir.resolve()
        plan = run(args.stack, artifacts_dir=artifacts_dir, root=root)
    sys.stdout.write(plan.to_json() + "\n" if args.json else plan.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
