"""The deployment, checked offline: the SAM-transformed template and the nested stacks.

``template.yaml`` is run through the SAM translator (the code CloudFormation runs for
``Transform: AWS::Serverless-2016-10-31``) with no AWS account, and the CloudFormation it
produces is checked: S3 notification filter, least-privilege policies, environment wiring,
schedules against the job catalogue, no hard-coded accounts or regions. The nested stacks
under ``infra/`` are plain CloudFormation and are read as they are.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from shared.config import Settings
from shared.jobs import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
NESTED = {
    "NetworkStack": "infra/network.yaml",
    "CacheStack": "infra/cache.yaml",
    "DocumentDbStack": "infra/documentdb.yaml",
    "WorkerStack": "infra/worker.yaml",
    "AlarmsStack": "infra/alarms.yaml",
}
# Pinned like a lock entry: the translator version aws-sam-cli 1.170 ships with.
SAM_TRANSLATOR = "aws-sam-translator==1.115.0"
# The translator insists on a region; a made-up one shows whether any got baked in.
SENTINEL_REGION = "xx-offline-1"

# Reads a SAM template on argv[1], prints the CloudFormation it becomes. Local CodeUri
# paths are swapped for S3 URIs first, as `sam validate` does (the translator accepts no
# local paths); a managed policy named without its ARN would need IAM, so it fails.
_TRANSFORM = r"""
import json, sys
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class OfflinePolicies:
    def load(self):
        raise RuntimeError("a managed policy is named without its ARN: resolving it needs IAM")

with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
sections = [template.get("Globals", {}).get("Function", {})] + [
    r.get("Properties", {}) for r in template["Resources"].values()
    if r.get("Type") == "AWS::Serverless::Function"]
for props in sections:
    if isinstance(props.get("CodeUri"), str):
        props["CodeUri"] = "s3://offline-artifacts/" + props["CodeUri"]
try:
    out = transform(template, {}, OfflinePolicies())
except InvalidDocumentException as exc:
    sys.exit("; ".join(str(cause) for cause in exc.causes))
json.dump(out, sys.stdout)
"""

FUNCTIONS = {
    "ApiFunction": "functions.api.lambda_handler",
    "S3EventsFunction": "functions.s3_events.lambda_handler",
    "SchedulerFunction": "functions.scheduler.lambda_handler",
    "QueueMetricsFunction": "functions.queue_metrics.lambda_handler",
}
ASYNC_FUNCTIONS = ("S3EventsFunction", "SchedulerFunction", "QueueMetricsFunction")
# Managed policies SAM attaches itself (logs, X-Ray segments, VPC network interfaces):
# none of them grants a data action.
SAM_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
}
# Actions that have no resource-level permissions, so "*" is their only possible Resource.
RESOURCELESS_ACTIONS = {"ecr:GetAuthorizationToken"}
REGION = re.compile(
    r"\b(?:us|eu|ap|sa|ca|me|af|il|mx)-(?:gov-)?"
    r"(?:north|south|east|west|central|northeast|northwest|southeast|southwest)-\d\b"
)
ACCOUNT_ID = re.compile(r"(?<![\w.])\d{12}(?![\w.])")
# The only intrinsic functions CloudFormation accepts inside Rules.
RULE_FUNCTIONS = {"Fn::And", "Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn",
                  "Fn::Equals", "Fn::Not", "Fn::Or", "Fn::RefAll", "Fn::ValueOf",
                  "Fn::ValueOfAll", "Ref"}


def _transform_command() -> list[str]:
    if importlib.util.find_spec("samtranslator") is not None:
        return [sys.executable, "-c", _TRANSFORM]
    # Not a dependency of the project (cfn-lint no longer pulls it in): uv fetches the
    # pinned translator into a throwaway environment instead.
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("neither samtranslator nor uv is available to transform template.yaml")
    return [uv, "run", "--no-project", "--with", SAM_TRANSLATOR, "python", "-c", _TRANSFORM]


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """template.yaml as CloudFormation, after the SAM transform."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = SENTINEL_REGION
    done = subprocess.run(
        [*_transform_command(), str(TEMPLATE)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def load(path: str | Path) -> dict[str, Any]:
    """A CloudFormation YAML file with its short-form tags as long-form intrinsics."""
    # json round trip: plain dicts and lists instead of cfn-lint's node classes.
    out: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(ROOT / path))))
    return out


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        yield from as_list(policy["PolicyDocument"]["Statement"])


def env_of(function: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


# --- S3 -----------------------------------------------------------------------------------


def test_uploads_bucket_notifies_s3_events_for_uploads_prefix_only(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    notifications = res["UploadsBucket"]["Properties"]["NotificationConfiguration"]
    assert set(notifications) == {"LambdaConfigurations"}
    (config,) = notifications["LambdaConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Function"] == {"Fn::GetAtt": ["S3EventsFunction", "Arn"]}
    assert config["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "uploads/"}]}}
    # Results live in another bucket that notifies nobody: a result can never retrigger.
    assert "NotificationConfiguration" not in res["ResultsBucket"]["Properties"]
    permission = res["S3EventsFunctionUploadPermission"]["Properties"]
    assert permission["Principal"] == "s3.amazonaws.com"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


@pytest.mark.parametrize("bucket", ["UploadsBucket", "ResultsBucket"])
def test_buckets_are_private_encrypted_tls_only_and_expire(
    cfn: dict[str, Any], bucket: str
) -> None:
    res = cfn["Resources"]
    props = res[bucket]["Properties"]
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    lifecycle = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert lifecycle["abandoned-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    assert any("ExpirationInDays" in r for r in lifecycle.values())
    (policy,) = [p for p in resources(cfn, "AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": bucket}]
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": [bucket, "Arn"]} in deny["Resource"]


def test_uploads_expire_under_their_prefix_and_allow_browser_posts(cfn: dict[str, Any]) -> None:
    props = cfn["Resources"]["UploadsBucket"]["Properties"]
    expire = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}["expire-uploads"]
    assert expire["Prefix"] == "uploads/"
    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert "POST" in cors["AllowedMethods"]
    assert cors["AllowedOrigins"] == [{"Ref": "CorsAllowedOrigin"}]


# --- IAM ----------------------------------------------------------------------------------


def test_function_roles_hold_no_wildcards(cfn: dict[str, Any]) -> None:
    roles = {k: r for k, r in resources(cfn, "AWS::IAM::Role").items()
             if k.endswith("FunctionRole")}
    assert set(roles) == {f"{name}Role" for name in FUNCTIONS}
    for name, role in roles.items():
        assert set(role["Properties"]["ManagedPolicyArns"]) <= SAM_MANAGED_POLICIES, name
        for statement in statements(role):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{name}: wildcard action {action}"
            assert "*" not in as_list(statement["Resource"]), f"{name}: {statement}"


def _grants(role: dict[str, Any]) -> set[str]:
    return {action for s in statements(role) for action in as_list(s["Action"])}


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("ApiFunction", {"secretsmanager:GetSecretValue", "s3:PutObject", "s3:GetObject",
                         "events:PutEvents"}),
        ("S3EventsFunction", {"secretsmanager:GetSecretValue", "s3:GetObject", "sqs:SendMessage"}),
        ("SchedulerFunction", {"secretsmanager:GetSecretValue", "sqs:SendMessage"}),
        ("QueueMetricsFunction", {"secretsmanager:GetSecretValue", "sqs:SendMessage",
                                  "ecs:DescribeServices"}),
    ],
)
def test_each_function_is_granted_only_what_it_does(
    cfn: dict[str, Any], function: str, expected: set[str]
) -> None:
    assert _grants(cfn["Resources"][f"{function}Role"]) == expected


def test_functions_write_only_under_uploads_and_read_secrets_by_arn(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    puts = [s for s in statements(res["ApiFunctionRole"]) if "s3:PutObject" in as_list(s["Action"])]
    (put,) = puts
    assert put["Resource"]["Fn::Sub"].endswith("/uploads/*")
    for name in FUNCTIONS:
        (secrets,) = [s for s in statements(res[f"{name}Role"])
                      if s["Action"] == "secretsmanager:GetSecretValue"]
        assert secrets["Resource"] == [
            {"Fn::GetAtt": ["CacheStack", "Outputs.RedisUrlSecretArn"]},
            {"Ref": "SigningSecret"},
        ]


def test_worker_roles_hold_no_wildcards_beyond_resourceless_actions() -> None:
    worker = load("infra/worker.yaml")
    for name in ("ExecutionRole", "TaskRole"):
        for statement in statements(worker["Resources"][name]):
            actions = as_list(statement["Action"])
            assert all("*" not in a for a in actions), statement
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= RESOURCELESS_ACTIONS, statement
    task = {s["Sid"]: s for s in statements(worker["Resources"]["TaskRole"])}
    assert task["SendAsSender"]["Condition"] == {
        "StringEquals": {"ses:FromAddress": {"Ref": "SesSender"}}
    }
    assert task["ReadUploads"]["Action"] == "s3:GetObject"
    # The ECS agent protects the task with the task role (worker/task_protection.py): the
    # one ECS action, on this cluster's tasks only.
    assert task["ProtectOwnTask"]["Action"] == "ecs:UpdateTaskProtection"
    assert task["ProtectOwnTask"]["Resource"]["Fn::Sub"].endswith(":task/${Cluster}/*")
    ecs_actions = {a for s in statements(worker["Resources"]["TaskRole"])
                   for a in as_list(s["Action"]) if a.startswith("ecs:")}
    assert ecs_actions == {"ecs:UpdateTaskProtection"}


def test_queue_metrics_counts_the_worker_service_s_tasks(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    env = env_of(res["QueueMetricsFunction"])
    assert env["OFFLOAD_WORKER_CLUSTER"] == {"Fn::GetAtt": ["WorkerStack", "Outputs.ClusterName"]}
    assert env["OFFLOAD_WORKER_SERVICE"] == {"Fn::GetAtt": ["WorkerStack", "Outputs.ServiceName"]}
    (describe,) = [s for s in statements(res["QueueMetricsFunctionRole"])
                   if s["Action"] == "ecs:DescribeServices"]
    assert describe["Resource"] == {"Fn::GetAtt": ["WorkerStack", "Outputs.ServiceArn"]}


# --- functions ----------------------------------------------------------------------------


def test_functions_are_arm64_python_in_the_private_subnets(cfn: dict[str, Any]) -> None:
    functions = resources(cfn, "AWS::Lambda::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == FUNCTIONS
    for name, function in functions.items():
        props = function["Properties"]
        assert props["Architectures"] == ["arm64"], name
        assert props["Runtime"] == "python3.13", name
        assert props["TracingConfig"] == {"Mode": "Active"}
        vpc = props["VpcConfig"]
        assert vpc["SecurityGroupIds"] == [
            {"Fn::GetAtt": ["NetworkStack", "Outputs.FunctionSecurityGroupId"]}
        ]
        assert vpc["SubnetIds"] == {
            "Fn::Split": [",", {"Fn::GetAtt": ["NetworkStack", "Outputs.PrivateSubnetIds"]}]
        }


def test_environment_wires_queue_buckets_and_secrets(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    worker_params = res["WorkerStack"]["Properties"]["Parameters"]
    queue_name = {"Fn::Sub": "offload-${Stage}"}
    for name in FUNCTIONS:
        env = env_of(res[name])
        assert env["OFFLOAD_ENV"] == "production"
        assert env["OFFLOAD_AWS_REGION"] == {"Ref": "AWS::Region"}
        assert env["OFFLOAD_QUEUE_NAME"] == queue_name == worker_params["QueueName"]
        assert env["OFFLOAD_UPLOADS_BUCKET"] == res["UploadsBucket"]["Properties"]["BucketName"]
        assert env["OFFLOAD_RESULTS_BUCKET"] == res["ResultsBucket"]["Properties"]["BucketName"]
        assert env["OFFLOAD_REDIS_URL_SECRET_ARN"] == worker_params["RedisUrlSecretArn"]
        assert env["OFFLOAD_SIGNING_SECRET_ARN"] == worker_params["SigningSecretArn"]
        assert env["OFFLOAD_SES_SENDER"] == {"Ref": "SesSender"}
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Offload"
        # Lambdas never open MongoDB, so they never see its URI.
        assert not [k for k in env if "MONGO" in k], name
    assert worker_params["UploadsBucketName"] == {"Ref": "UploadsBucket"}
    assert worker_params["ResultsBucketName"] == {"Ref": "ResultsBucket"}
    assert res["AlarmsStack"]["Properties"]["Parameters"]["QueueName"] == queue_name


def test_every_offload_variable_names_a_setting(cfn: dict[str, Any]) -> None:
    # Secrets reach Lambdas as ARNs: each *_SECRET_ARN variable stands for one setting.
    secret_arns = {"OFFLOAD_REDIS_URL_SECRET_ARN": "redis_url",
                   "OFFLOAD_SIGNING_SECRET_ARN": "signing_secret"}
    fields = set(Settings.model_fields)
    for name in FUNCTIONS:
        for var in env_of(cfn["Resources"][name]):
            if var.startswith("OFFLOAD_"):
                field = secret_arns.get(var, var.removeprefix("OFFLOAD_").lower())
                assert field in fields, f"{name}: {var} sets nothing"
    (container,) = load("infra/worker.yaml")["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"]
    names = [e["Name"] for e in container["Environment"]]
    names += [s["Name"] for s in container["Secrets"]]
    for var in names:
        assert var.removeprefix("OFFLOAD_").lower() in fields, var
    assert {s["Name"] for s in container["Secrets"]} == {
        "OFFLOAD_REDIS_URL", "OFFLOAD_SIGNING_SECRET", "OFFLOAD_MONGODB_URI"}


def test_api_runs_a_snapstart_alias_behind_the_http_api(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    assert res["ApiFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    alias = res["ApiFunctionAliaslive"]["Properties"]
    assert alias["FunctionVersion"]["Fn::GetAtt"][0].startswith("ApiFunctionVersion")
    paths = res["HttpApi"]["Properties"]["Body"]["paths"]
    for methods in paths.values():
        for method in methods.values():
            uri = method["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            assert "${ApiFunctionAliaslive}" in uri
    assert paths["/health"]["get"]["security"] == [{"NONE": []}]
    assert paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["security"] == [{"Jwt": []}]


def test_http_api_has_jwt_auth_cors_throttling_and_access_logs(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    body = res["HttpApi"]["Properties"]["Body"]
    jwt = body["components"]["securitySchemes"]["Jwt"]["x-amazon-apigateway-authorizer"]
    assert jwt["type"] == "jwt"
    assert jwt["identitySource"] == "$request.header.Authorization"
    assert jwt["jwtConfiguration"]["issuer"]["Fn::If"][0] == "UseCognito"
    cors = body["x-amazon-apigateway-cors"]
    # SAM writes the parameter's value into the OpenAPI body at transform time (here the
    # default; in a deployment, the value given): hence a one-origin String parameter.
    assert cors["allowOrigins"] == [cfn["Parameters"]["CorsAllowedOrigin"]["Default"]]
    assert {"authorization", "content-type"} <= set(cors["allowHeaders"])
    stage = res["HttpApiApiGatewayDefaultStage"]["Properties"]
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
    }
    logs = stage["AccessLogSettings"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert json.loads(logs["Format"])["status"] == "$context.status"


def test_async_functions_send_failures_to_the_dead_letter_queue(cfn: dict[str, Any]) -> None:
    configs = resources(cfn, "AWS::Lambda::EventInvokeConfig")
    by_function = {c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
                   for c in configs.values()}
    assert set(by_function) == set(ASYNC_FUNCTIONS)
    for props in by_function.values():
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
        }
    assert by_function["QueueMetricsFunction"]["MaximumRetryAttempts"] == 0


def test_reserved_concurrency_protects_the_cache(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    api = res["ApiFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert api == {
        "Fn::If": ["ReserveApi", {"Ref": "ApiReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert "ReservedConcurrentExecutions" in res["S3EventsFunction"]["Properties"]
    assert cfn["Parameters"]["ApiReservedConcurrency"]["Default"] > 0


# --- schedules ----------------------------------------------------------------------------


def test_schedules_enqueue_catalogue_jobs_with_valid_args(cfn: dict[str, Any]) -> None:
    rules = resources(cfn, "AWS::Events::Rule")
    inputs: dict[str, str] = {}
    for rule in rules.values():
        (target,) = rule["Properties"]["Targets"]
        if target["Arn"] == {"Fn::GetAtt": ["SchedulerFunction", "Arn"]}:
            message = json.loads(target["Input"])
            spec = CATALOGUE[message["job"]]
            spec.validate(message["args"])  # raises if the rule's args are wrong
            inputs[message["job"]] = rule["Properties"]["ScheduleExpression"]
    assert set(inputs) == {"send_daily_digest", "cleanup_expired_sessions", "sweep_pending_blobs"}
    assert inputs["send_daily_digest"].startswith("cron(")
    (metrics,) = [r for r in rules.values() if r["Properties"]["Targets"][0]["Arn"]
                  == {"Fn::GetAtt": ["QueueMetricsFunction", "Arn"]}]
    assert metrics["Properties"]["ScheduleExpression"] == "rate(1 minute)"


# --- workers and autoscaling -----------------------------------------------------------------


def test_worker_service_scales_from_zero_on_backlog_per_task() -> None:
    worker = load("infra/worker.yaml")["Resources"]
    target = worker["ScalableTarget"]["Properties"]
    assert target["MinCapacity"] == {"Fn::If": ["HasImage", {"Ref": "WorkerMinCount"}, 0]}
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    tracking = worker["BacklogTargetTracking"]["Properties"]
    assert tracking["PolicyType"] == "TargetTrackingScaling"
    config = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == {"Ref": "TargetBacklogPerTask"}
    assert config["CustomizedMetricSpecification"] == {
        "Namespace": "Offload",
        "MetricName": "BacklogPerTask",
        "Dimensions": [{"Name": "queue", "Value": {"Ref": "QueueName"}}],
        "Statistic": "Average",
    }
    step = worker["WakeFromZeroPolicy"]["Properties"]
    assert step["PolicyType"] == "StepScaling"
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
    ]
    alarm = worker["WakeFromZeroAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "WakeFromZeroPolicy"}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    # Waiting or running jobs wake it: with no task running, the metric is all the jobs.
    backlog = metrics["backlog"]["MetricStat"]["Metric"]
    assert (backlog["Namespace"], backlog["MetricName"]) == ("Offload", "BacklogPerTask")
    assert backlog["Dimensions"] == [{"Name": "queue", "Value": {"Ref": "QueueName"}}]
    assert "backlog > 0" in metrics["wake"]["Expression"]
    assert "FILL(desired, 0) == 0" in metrics["wake"]["Expression"]


def test_worker_count_defaults_to_zero_and_template_passes_it_through(cfn: dict[str, Any]) -> None:
    assert cfn["Parameters"]["WorkerMinCount"]["Default"] == 0
    params = cfn["Resources"]["WorkerStack"]["Properties"]["Parameters"]
    assert params["WorkerMinCount"] == {"Ref": "WorkerMinCount"}
    assert params["TargetBacklogPerTask"] == {"Ref": "TargetBacklogPerTask"}


def test_metric_names_match_what_queue_metrics_publishes() -> None:
    source = (ROOT / "functions" / "queue_metrics.py").read_text()
    namespace = (ROOT / "functions" / "metrics.py").read_text()
    assert 'METRICS_NAMESPACE = "Offload"' in namespace
    for metric in ("QueueDepth", "OldestJobAgeSeconds", "BacklogPerTask"):
        assert f'name="{metric}"' in source, metric
    # Every Offload metric the worker stack reads is one queue_metrics publishes.
    worker = json.dumps(load("infra/worker.yaml")["Resources"])
    read = set(re.findall(r'"Namespace": "Offload", "MetricName": "(\w+)"', worker))
    assert read == {"BacklogPerTask"}
    assert all(f'name="{metric}"' in source for metric in read)
    assert 'add_dimension(name="queue"' in source


def test_task_runs_the_worker_with_health_check_and_matched_stop_timeout() -> None:
    worker = load("infra/worker.yaml")
    task = worker["Resources"]["TaskDefinition"]["Properties"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    (container,) = task["ContainerDefinitions"]
    assert container["Command"][0] == "worker"
    assert container["HealthCheck"]["Command"] == ["CMD", "offload", "worker-health"]
    assert container["StopTimeout"] == {
        "Fn::FindInMap": ["StopTimeout", {"Ref": "WorkerGracePeriodSeconds"}, "Seconds"]
    }
    grace_values = worker["Parameters"]["WorkerGracePeriodSeconds"]["AllowedValues"]
    stops = worker["Mappings"]["StopTimeout"]
    assert set(stops) == set(grace_values)
    for grace, entry in stops.items():
        # Time to drain past the grace period, within Fargate's 120 s maximum.
        assert int(grace) < entry["Seconds"] <= 120
    grace_env = {e["Name"]: e["Value"] for e in container["Environment"]}[
        "OFFLOAD_WORKER_GRACE_PERIOD_SECONDS"]
    assert grace_env == {"Ref": "WorkerGracePeriodSeconds"}
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    service = worker["Resources"]["Service"]["Properties"]
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True, "Rollback": True}


# --- cache and network ---------------------------------------------------------------------


def test_cache_is_multi_az_encrypted_with_a_generated_auth_token() -> None:
    cache = load("infra/cache.yaml")["Resources"]
    group = cache["ReplicationGroup"]["Properties"]
    assert group["Engine"] == {"Ref": "CacheEngine"}
    assert group["EngineVersion"] == {"Fn::If": ["IsValkey", "8.0", "7.1"]}  # Functions need >= 7
    assert group["MultiAZEnabled"]
    assert group["AutomaticFailoverEnabled"]
    assert group["NumCacheClusters"] == 2
    assert group["TransitEncryptionEnabled"]
    assert group["AtRestEncryptionEnabled"]
    assert group["AuthToken"] == {"Fn::Sub": "{{resolve:secretsmanager:${AuthTokenSecret}}}"}
    params = cache["ParameterGroup"]["Properties"]["Properties"]
    assert params == {"maxmemory-policy": "noeviction"}
    url = cache["RedisUrlSecret"]["Properties"]["SecretString"]["Fn::Sub"][0]
    assert url.startswith("rediss://:{{resolve:secretsmanager:${AuthTokenSecret}}}@")


def test_only_functions_and_workers_reach_the_cache() -> None:
    net = load("infra/network.yaml")["Resources"]
    ingress = [r["Properties"] for r in net.values()
               if r["Type"] == "AWS::EC2::SecurityGroupIngress"
               and r["Properties"]["GroupId"] == {"Ref": "CacheSecurityGroup"}]
    assert {i["SourceSecurityGroupId"]["Ref"] for i in ingress} == {
        "FunctionSecurityGroup", "WorkerSecurityGroup"}
    assert {(i["FromPort"], i["ToPort"]) for i in ingress} == {(6379, 6379)}
    assert "SecurityGroupIngress" not in net["CacheSecurityGroup"]["Properties"]


def test_network_has_s3_gateway_and_the_interface_endpoints() -> None:
    net = load("infra/network.yaml")["Resources"]
    endpoints = {r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]
                 if "ecr" not in r["Properties"]["ServiceName"]["Fn::Sub"]
                 else r["Properties"]["ServiceName"]["Fn::Sub"].split("}.", 1)[1]:
                 r["Properties"]["VpcEndpointType"]
                 for r in net.values() if r["Type"] == "AWS::EC2::VPCEndpoint"}
    assert endpoints == {"s3": "Gateway", "logs": "Interface", "monitoring": "Interface",
                         "secretsmanager": "Interface", "email": "Interface",
                         "ecr.api": "Interface", "ecr.dkr": "Interface",
                         "ecs": "Interface"}
    assert net["NatGateway"]["Condition"] == "MakeNat"
    assert net["LogsEndpoint"]["Condition"] == "MakeEndpoints"


# --- alarms ------------------------------------------------------------------------------


def test_alarms_cover_dlq_job_age_task_failures_and_api_errors() -> None:
    alarms = load("infra/alarms.yaml")["Resources"]
    by_metric = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]): a["Properties"]
                 for a in alarms.values() if a["Type"] == "AWS::CloudWatch::Alarm"}
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("Offload", "OldestJobAgeSeconds"),
            ("Offload", "WorkerTaskFailures"), ("AWS/ApiGateway", "5xx")} <= set(by_metric)
    for alarm in by_metric.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    rule = alarms["FailedTaskRule"]["Properties"]["EventPattern"]
    assert rule["detail"]["lastStatus"] == ["STOPPED"]
    subscription = alarms["AlarmSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


# --- the template as a whole ---------------------------------------------------------------


@pytest.mark.parametrize("stack", sorted(NESTED))
def test_nested_stacks_receive_exactly_their_parameters(cfn: dict[str, Any], stack: str) -> None:
    resource = cfn["Resources"][stack]
    assert resource["Properties"]["TemplateURL"] == NESTED[stack]
    declared = load(NESTED[stack])["Parameters"]
    passed = resource["Properties"]["Parameters"]
    assert set(passed) <= set(declared), "unknown parameters passed"
    required = {name for name, p in declared.items() if "Default" not in p}
    assert required <= set(passed), f"missing: {required - set(passed)}"


def test_transformed_template_passes_cfn_lint(cfn: dict[str, Any]) -> None:
    # What CloudFormation will actually be given: catches cycles and invalid properties
    # that only appear once SAM has expanded its resources. W3002: the nested templates'
    # local paths, which `sam deploy` uploads and rewrites.
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=["us-east-1"],
                                                       ignore_checks=["W3002"]))
    assert not matches, "\n".join(str(m) for m in matches)


def test_rules_use_only_rule_functions(cfn: dict[str, Any]) -> None:
    assert set(cfn["Rules"]) == {
        "ExternalDatabaseNeedsUri", "ExistingVpcNeedsIds", "ExternalAuthNeedsIssuer"}

    def functions(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" or key.startswith("Fn::"):
                    yield key
                yield from functions(value)
        elif isinstance(node, list):
            for item in node:
                yield from functions(item)

    used = set(functions(cfn["Rules"]))
    assert used <= RULE_FUNCTIONS, used - RULE_FUNCTIONS


def test_outputs_name_everything_an_operator_needs(cfn: dict[str, Any]) -> None:
    assert {"ApiUrl", "UploadsBucketName", "ResultsBucketName", "UserPoolId", "UserPoolClientId",
            "ClusterName", "ServiceName", "WorkerRepositoryUri"} <= set(cfn["Outputs"])


def test_no_hard_coded_accounts_or_regions(cfn: dict[str, Any]) -> None:
    for path in [TEMPLATE, *sorted((ROOT / "infra").glob("*.yaml"))]:
        text = path.read_text()
        assert not REGION.findall(text), f"{path.name}: {REGION.findall(text)}"
        assert not ACCOUNT_ID.findall(text), f"{path.name}: {ACCOUNT_ID.findall(text)}"
    found = list(strings(cfn))
    assert not [s for s in found if SENTINEL_REGION in s], "a region was resolved at transform"
    # The partition appears literally only in the managed policies SAM adds itself.
    literal_arns = {s for s in found if s.startswith("arn:aws:")}
    assert literal_arns <= SAM_MANAGED_POLICIES, literal_arns - SAM_MANAGED_POLICIES
