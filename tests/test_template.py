"""The deployment, checked offline: the SAM-transformed template and the nested stacks.

``template.yaml`` is run through the SAM translator (the code CloudFormation runs for
``Transform: AWS::Serverless-2016-10-31``) with no AWS account, and the CloudFormation it
produces is checked: S3 notification filter, least-privilege policies, environment wiring,
schedules against the job catalogue, no hard-coded accounts or regions. The nested stacks
under ``infra/`` are plain CloudFormation and are read as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from infra.rehearsal import transform
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
    "MailStack": "infra/mail.yaml",
}
# The translator insists on a region; a made-up one shows whether any got baked in.
SENTINEL_REGION = "xx-offline-1"

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


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """template.yaml as CloudFormation, after the SAM transform."""
    return transform(TEMPLATE, SENTINEL_REGION)


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
        assert env["OFFLOAD_REPLICA_WAIT_MS"] == {"Ref": "ReplicaWaitMs"}
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Offload"
        assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
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


def test_enqueues_wait_for_the_cache_replica_by_default(cfn: dict[str, Any]) -> None:
    # The cache has a replica to wait for, and the wait ends before the socket timeout
    # (shared/config.py refuses a longer one at start-up).
    assert load("infra/cache.yaml")["Resources"]["ReplicationGroup"]["Properties"][
        "NumCacheClusters"] >= 2
    wait = cfn["Parameters"]["ReplicaWaitMs"]
    timeout_ms = Settings.model_fields["redis_socket_timeout_seconds"].default * 1000
    assert 0 < wait["Default"] <= wait["MaxValue"] < timeout_ms
    assert Settings(replica_wait_ms=wait["MaxValue"]).replica_wait_ms == wait["MaxValue"]


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


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, {dimension: value}) of each metric an alarm reads, whether it
    names one metric or combines several with metric math."""
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm["MetricName"],
                 {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])})]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            found.append((metric["Namespace"], metric["MetricName"],
                          {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}))
    return found


def all_alarms() -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in load("infra/alarms.yaml")["Resources"].items()
            if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_alarms_cover_dlq_job_age_task_failures_and_api_errors() -> None:
    alarms = load("infra/alarms.yaml")["Resources"]
    read = {(ns, metric) for a in all_alarms().values() for ns, metric, _ in alarm_metrics(a)}
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("Offload", "OldestJobAgeSeconds"),
            ("Offload", "WorkerTaskFailures"), ("AWS/ApiGateway", "5xx")} <= read
    for alarm in all_alarms().values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    rule = alarms["FailedTaskRule"]["Properties"]["EventPattern"]
    assert rule["detail"]["lastStatus"] == ["STOPPED"]
    subscription = alarms["AlarmSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


# Metrics in the Offload namespace and who publishes them: queue_metrics (functions/), the
# worker's EMF (worker/job_metrics.py), the task-failure metric filter (infra/alarms.yaml).
QUEUE_METRICS = ("QueueDepth", "OldestJobAgeSeconds", "BacklogPerTask", "RunningJobs",
                 "LiveWorkers")
# AWS metrics the alarms and dashboard may read, with the dimensions they may use.
AWS_METRICS = {
    "AWS/ApiGateway": ({"Count", "4xx", "5xx", "Latency", "IntegrationLatency"}, {"ApiId"}),
    "AWS/Lambda": ({"Errors", "Throttles", "Invocations", "Duration"}, {"FunctionName"}),
    "AWS/ElastiCache": ({"DatabaseMemoryUsagePercentage", "EngineCPUUtilization"},
                        {"CacheClusterId"}),
    "ECS/ContainerInsights": ({"RunningTaskCount", "DesiredTaskCount"},
                              {"ClusterName", "ServiceName"}),
    "AWS/SES": ({"Reputation.BounceRate", "Reputation.ComplaintRate"}, set()),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible"}, {"QueueName"}),
    "AWS/NATGateway": ({"ErrorPortAllocation", "PacketsDropCount", "PacketsInFromSource",
                        "PacketsInFromDestination"}, {"NatGatewayId"}),
}


def offload_series() -> set[tuple[str, frozenset[str]]]:
    """Every (metric, dimension names) published in the Offload namespace; the worker's
    read from what JobMetrics actually writes."""
    import io

    from tests.emf import parse
    from worker.job_metrics import JobMetrics

    out = io.StringIO()
    metrics = JobMetrics("Offload", "q", out=out)
    metrics.failed("send_welcome_email", permanent=True)
    metrics.failed("send_welcome_email", permanent=False)
    metrics.dead_lettered("send_welcome_email")
    metrics.ran("send_welcome_email", 1.0)
    metrics.waited("send_welcome_email", 1.0)
    metrics.flush()
    emitted = parse(out.getvalue())
    assert emitted.namespaces() == {"Offload"}
    found = {(metric, frozenset(name for name, _ in dims)) for metric, dims in emitted.values}
    source = (ROOT / "functions" / "queue_metrics.py").read_text()
    for metric in QUEUE_METRICS:
        assert f'name="{metric}"' in source, metric
        found.add((metric, frozenset({"queue"})))
    found.add(("WorkerTaskFailures", frozenset({"cluster"})))
    return found


def test_job_alarms_read_the_metrics_the_worker_writes(cfn: dict[str, Any]) -> None:
    alarms = all_alarms()
    series = offload_series()
    for name, alarm in alarms.items():
        for namespace, metric, dims in alarm_metrics(alarm):
            if namespace == "Offload":
                assert (metric, frozenset(dims)) in series, (name, metric, dims)
                if "queue" in dims:
                    assert dims["queue"] == {"Ref": "QueueName"}, name
    dead = alarms["JobsDeadLettered"]
    assert alarm_metrics(dead) == [("Offload", "DeadLetters", {"queue": {"Ref": "QueueName"}})]
    assert (dead["Statistic"], dead["Period"], dead["Threshold"]) == (
        "Sum", 300, {"Ref": "DeadLettersThreshold"})
    permanent = alarms["JobsFailingPermanently"]
    assert alarm_metrics(permanent) == [
        ("Offload", "JobsFailed", {"queue": {"Ref": "QueueName"}, "kind": "permanent"})]
    assert permanent["Threshold"] == {"Ref": "PermanentFailuresThreshold"}
    for alarm in (dead, permanent):
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"  # no failures, no data points
    params = cfn["Resources"]["AlarmsStack"]["Properties"]["Parameters"]
    assert params["DeadLettersThreshold"] == {"Ref": "DeadLettersThreshold"}
    assert params["PermanentFailuresThreshold"] == {"Ref": "PermanentFailuresThreshold"}
    # The worker publishes in the namespace the alarms read.
    (container,) = load("infra/worker.yaml")["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["OFFLOAD_WORKER_METRICS_NAMESPACE"] == "Offload"
    assert Settings.model_validate({"worker_metrics": env["OFFLOAD_WORKER_METRICS"]}).worker_metrics


def test_every_function_has_an_errors_and_a_throttles_alarm(cfn: dict[str, Any]) -> None:
    params = cfn["Resources"]["AlarmsStack"]["Properties"]["Parameters"]
    watched: dict[str, set[str]] = {}
    for alarm in all_alarms().values():
        for namespace, metric, dims in alarm_metrics(alarm):
            if namespace == "AWS/Lambda":
                assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
                    0, "GreaterThanThreshold")
                watched.setdefault(dims["FunctionName"]["Ref"], set()).add(metric)
    assert watched == {f"{function}Name": {"Errors", "Throttles"} for function in FUNCTIONS}
    for function in FUNCTIONS:
        assert params[f"{function}Name"] == {"Ref": function}


def test_cache_alarms_read_both_nodes_for_memory_and_engine_cpu() -> None:
    alarms = all_alarms()
    for name, metric, threshold in (("CacheMemoryHigh", "DatabaseMemoryUsagePercentage", 80),
                                    ("CacheEngineCpuHigh", "EngineCPUUtilization", 90)):
        alarm = alarms[name]
        read = alarm_metrics(alarm)
        assert {m for _, m, _ in read} == {metric}
        # After a failover the primary is the other node: both are read, the higher counts.
        assert [d["CacheClusterId"] for _, _, d in read] == [
            {"Fn::Sub": "${CacheReplicationGroupId}-001"},
            {"Fn::Sub": "${CacheReplicationGroupId}-002"}]
        (shown,) = [q for q in alarm["Metrics"] if q["ReturnData"]]
        assert shown["Expression"] == "MAX([node1, node2])"
        assert alarm["Threshold"] == threshold


def test_nat_alarms_exist_only_with_the_stack_s_nat_gateway_and_read_it(
        cfn: dict[str, Any]) -> None:
    alarms = load("infra/alarms.yaml")
    # The network stack names its NAT gateway ("" in endpoints mode); the alarms follow it.
    network = load("infra/network.yaml")
    assert network["Outputs"]["NatGatewayId"]["Value"] == {
        "Fn::If": ["MakeNat", {"Ref": "NatGateway"}, ""]}
    params = cfn["Resources"]["AlarmsStack"]["Properties"]["Parameters"]
    assert params["NatGatewayId"] == {"Fn::GetAtt": ["NetworkStack", "Outputs.NatGatewayId"]}
    assert alarms["Conditions"]["HasNat"] == {"Fn::Not": [{"Fn::Equals": [
        {"Ref": "NatGatewayId"}, ""]}]}
    ports = alarms["Resources"]["NatPortAllocationErrors"]
    drops = alarms["Resources"]["NatPacketsDropped"]
    for alarm in (ports, drops):
        assert alarm["Condition"] == "HasNat"
        props = alarm["Properties"]
        # AWS's recommended alarms: 15 breaching one-minute points out of 15
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (15, 15)
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        for namespace, _, dims in alarm_metrics(props):
            assert namespace == "AWS/NATGateway"
            assert dims == {"NatGatewayId": {"Ref": "NatGatewayId"}}
    assert (ports["Properties"]["MetricName"], ports["Properties"]["Threshold"]) == (
        "ErrorPortAllocation", 0)
    (shown,) = [q for q in drops["Properties"]["Metrics"] if q["ReturnData"]]
    assert shown["Expression"] == "100 * drops / (fromsource + fromdestination)"
    assert drops["Properties"]["Threshold"] == 0.01  # per cent of packets


def test_ses_reputation_alarms_warn_before_aws_reviews_the_account() -> None:
    alarms = all_alarms()
    limits = {"Reputation.BounceRate": 0.05, "Reputation.ComplaintRate": 0.001}
    seen = set()
    for alarm in alarms.values():
        for namespace, metric, dims in alarm_metrics(alarm):
            if namespace == "AWS/SES":
                assert dims == {}  # account-level: every message of the region
                assert 0 < alarm["Threshold"] <= limits[metric] / 2
                assert alarm["TreatMissingData"] == "notBreaching"  # no bounces yet: no data
                seen.add(metric)
    assert seen == set(limits)


def _dashboard() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The dashboard's widgets, its ${...} placeholders filled as CloudFormation would (a
    string parameter as <Name>, a number as 7, the region as the sentinel)."""
    alarms = load("infra/alarms.yaml")
    body = alarms["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    values = {"AWS::Region": SENTINEL_REGION}
    for name, param in alarms["Parameters"].items():
        values[name] = "7" if param["Type"] == "Number" else f"<{name}>"
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    attributes = {n for n in names if "." in n}
    for attribute in attributes:  # ${Resource.Attribute}: a resource of this stack
        assert attribute.split(".")[0] in alarms["Resources"], attribute
        values[attribute] = f"<{attribute}>"
    assert names <= set(values), names - set(values)
    text = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], body)
    widgets: list[dict[str, Any]] = json.loads(text)["widgets"]
    return widgets, values


def _widget_metrics(widget: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    for entry in widget["properties"].get("metrics", []):
        if isinstance(entry[0], dict):
            continue  # an expression
        namespace, metric, *rest = entry
        pairs = [x for x in rest if not isinstance(x, dict)]
        yield namespace, metric, dict(zip(pairs[::2], pairs[1::2], strict=True))


def test_dashboard_shows_api_queue_jobs_workers_cache_and_ses_from_real_metrics() -> None:
    widgets, values = _dashboard()
    series = offload_series()
    shown: set[tuple[str, str]] = set()
    for widget in widgets:
        props = widget["properties"]
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24
        if widget["type"] != "metric":
            continue
        assert props["region"] == SENTINEL_REGION  # the stack's region, never a literal
        for namespace, metric, dims in _widget_metrics(widget):
            shown.add((namespace, metric))
            if namespace == "Offload":
                assert (metric, frozenset(dims)) in series, (metric, dims)
                assert dims["queue"] == values["QueueName"]
                assert dims.get("kind", "permanent") in {"permanent", "transient"}
            else:
                names, dimensions = AWS_METRICS[namespace]
                assert metric in names, (namespace, metric)
                assert set(dims) == dimensions, (namespace, metric, dims)
    assert {
        ("AWS/ApiGateway", "Count"), ("AWS/ApiGateway", "5xx"), ("AWS/ApiGateway", "Latency"),
        ("Offload", "QueueDepth"), ("Offload", "OldestJobAgeSeconds"),
        ("Offload", "JobsFailed"), ("Offload", "DeadLetters"), ("Offload", "JobDuration"),
        ("Offload", "QueueWait"), ("ECS/ContainerInsights", "RunningTaskCount"),
        ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"),
        ("AWS/ElastiCache", "EngineCPUUtilization"), ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"), ("AWS/SES", "Reputation.BounceRate"),
        ("AWS/SES", "Reputation.ComplaintRate"),
    } <= shown
    # Failures by kind: both kinds, each its own line.
    kinds = {dims.get("kind") for w in widgets if w["type"] == "metric"
             for _, metric, dims in _widget_metrics(w) if metric == "JobsFailed"}
    assert kinds == {"permanent", "transient"}
    # Failures by job: a SEARCH over exactly the dimension set the worker writes.
    expressions = [e[0]["expression"] for w in widgets if w["type"] == "metric"
                   for e in w["properties"]["metrics"] if isinstance(e[0], dict)]
    (search,) = expressions
    schema = re.search(r"\{(Offload(?:,\w+)+)\}", search)
    assert schema is not None
    namespace, *dimension_names = schema.group(1).split(",")
    assert ("JobsFailed", frozenset(dimension_names)) in series
    assert f'queue="{values["QueueName"]}"' in search
    # Each function's errors and throttles.
    lambdas = {(metric, dims["FunctionName"]) for w in widgets if w["type"] == "metric"
               for ns, metric, dims in _widget_metrics(w) if ns == "AWS/Lambda"}
    assert lambdas == {(m, values[f"{f}Name"]) for m in ("Errors", "Throttles") for f in FUNCTIONS}


def test_workers_send_with_a_configuration_set_that_reports_bounces_and_complaints(
    cfn: dict[str, Any]
) -> None:
    mail = load("infra/mail.yaml")
    res = mail["Resources"]
    config = res["ConfigurationSet"]["Properties"]
    # SES stops mailing an address that bounced or complained, and reports the rates.
    assert set(config["SuppressionOptions"]["SuppressedReasons"]) == {"BOUNCE", "COMPLAINT"}
    assert config["ReputationOptions"]["ReputationMetricsEnabled"] is True
    destination = res["FeedbackDestination"]["Properties"]
    assert destination["ConfigurationSetName"] == {"Ref": "ConfigurationSet"}
    event = destination["EventDestination"]
    assert event["Enabled"] is True
    assert {"bounce", "complaint"} <= set(event["MatchingEventTypes"])
    assert event["SnsDestination"]["TopicARN"] == {"Ref": "FeedbackTopic"}
    policy = res["FeedbackTopicPolicy"]["Properties"]
    (allow,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "ses.amazonaws.com"}
    assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    subscription = res["FeedbackSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    # The workers get its name and may send with it.
    params = cfn["Resources"]["WorkerStack"]["Properties"]["Parameters"]
    assert params["SesConfigurationSetName"] == {
        "Fn::GetAtt": ["MailStack", "Outputs.ConfigurationSetName"]}
    assert mail["Outputs"]["ConfigurationSetName"]["Value"] == {"Ref": "ConfigurationSet"}
    worker = load("infra/worker.yaml")["Resources"]
    (container,) = worker["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["OFFLOAD_SES_CONFIGURATION_SET"] == {"Ref": "SesConfigurationSetName"}
    task = {s["Sid"]: s for s in statements(worker["TaskRole"])}
    assert {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}"
                       ":configuration-set/${SesConfigurationSetName}"} in task["SendAsSender"][
        "Resource"]


def _evaluate(node: Any, params: dict[str, Any]) -> Any:
    """A rule's value for ``params``, with CloudFormation's rule functions."""
    if isinstance(node, list):
        return [_evaluate(item, params) for item in node]
    if not isinstance(node, dict):
        return node
    ((function, arg),) = node.items()
    if function == "Ref":
        return params[arg]
    args = _evaluate(arg, params)
    if function == "Fn::Equals":
        return args[0] == args[1]
    if function == "Fn::Not":
        return not args[0]
    if function == "Fn::Contains":
        return args[1] in args[0]
    if function == "Fn::And":
        return all(args)
    if function == "Fn::Or":
        return any(args)
    raise AssertionError(f"no evaluator for {function}")


def _refusals(cfn: dict[str, Any], **given: str) -> list[str]:
    """The AssertDescription of every rule a deploy with ``given`` parameters breaks."""
    params: dict[str, Any] = {}
    for name, param in cfn["Parameters"].items():
        value = given.get(name, param.get("Default", ""))
        params[name] = (str(value).split(",") if param["Type"] == "CommaDelimitedList"
                        else str(value))
    refused = []
    for rule in cfn["Rules"].values():
        if _evaluate(rule.get("RuleCondition", True), params):
            refused += [a["AssertDescription"] for a in rule["Assertions"]
                        if not _evaluate(a["Assert"], params)]
    return refused


def test_a_production_stage_is_refused_without_an_alarm_email(cfn: dict[str, Any]) -> None:
    base = {"MongoDbUriSecretArn": "arn:aws:secretsmanager:xx-offline-1:000000000000:secret:m"}
    # GIVEN the default Stage (prod) or "production" with no AlarmEmail: refused, saying why
    assert cfn["Parameters"]["Stage"]["Default"] == "prod"
    for stage in ("prod", "production"):
        (refusal,) = _refusals(cfn, Stage=stage, **base)
        assert "AlarmEmail" in refusal
    # WHEN an address is given, or the stage is not production: deployed
    assert _refusals(cfn, Stage="prod", AlarmEmail="ops@example.com", **base) == []
    assert _refusals(cfn, Stage="staging", **base) == []
    # AND the other rules still speak for themselves (the evaluator reads them too)
    assert _refusals(cfn, Stage="staging") == ["DatabaseMode=external needs MongoDbUriSecretArn."]


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
        "ExternalDatabaseNeedsUri", "ExistingVpcNeedsIds", "ExternalAuthNeedsIssuer",
        "ProductionNeedsAlarmEmail"}

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


def test_a_routine_deploy_reads_the_image_tag_from_ssm_and_cannot_zero_the_workers(
        cfn: dict[str, Any]) -> None:
    # What `sam deploy --guided` saves for WorkerImageTag is the parameter's default; sent
    # again on every later deploy it must resolve to the pushed tag, never to "" (which
    # zeroed the service and pointed it at a tag that does not exist).
    spec = cfn["Parameters"]["WorkerImageTag"]
    assert spec["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert re.fullmatch(spec["AllowedPattern"], spec["Default"])
    assert spec["Default"] == "/offload/prod/worker-image-tag"
    assert not re.fullmatch(spec["AllowedPattern"], "")
    worker = load("infra/worker.yaml")
    assert worker["Conditions"]["HasImageTag"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerImageTag"}, "none"]}]}
    assert not re.fullmatch(worker["Parameters"]["WorkerImageTag"]["AllowedPattern"], "")
    push = (ROOT / "infra" / "deploy" / "push-worker-image.sh").read_text()
    assert "ssm put-parameter" in push and "/offload/$1/worker-image-tag" in push


def test_waiting_jobs_alarm_while_no_worker_image_exists(cfn: dict[str, Any]) -> None:
    assert cfn["Conditions"]["HasWorkerImage"] == {"Fn::Or": [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerImageUri"}, ""]}]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerImageTag"}, "none"]}]}]}
    params = cfn["Resources"]["AlarmsStack"]["Properties"]["Parameters"]
    assert params["WorkersDeployed"] == {"Fn::If": ["HasWorkerImage", "true", "false"]}
    alarms = load("infra/alarms.yaml")
    alarm = alarms["Resources"]["JobsWaitWithWorkersOff"]
    assert alarm["Condition"] == "WorkersOff"
    props = alarm["Properties"]
    assert (props["MetricName"], props["Threshold"]) == ("QueueDepth", 0)
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert "push-worker-image.sh" in json.dumps(props["AlarmDescription"])
