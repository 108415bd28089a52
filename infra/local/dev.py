"""``offload dev``: the whole system on one machine, started, supervised and stopped.

Order: Redis, moto (S3/SES/SQS), MongoDB and the fixtures server first; then the Lambda
containers, the workers and Streaq's web UI; then the gateway and the event sources. The
state file is written once everything answers, and removed on the way out.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from infra.local import components as c
from infra.local.aws_services import AwsSetup
from infra.local.gateway import GatewayConfig, match_route, route_specificity
from infra.local.redis_local import (
    RedisProblem,
    external_redis,
    private_server_spec,
    redis_server_binary,
)
from infra.local.state import StackState, state_dir, state_file
from infra.local.supervisor import (
    LogStream,
    StartupError,
    Supervisor,
    free_ports,
    metric_line,
    port_free,
    sweep_marked,
)
from infra.local.template import RouteDef, Template, TemplateError, load_template
from infra.local.triggers import ScheduleTarget, TriggerConfig, fire

DEV_SUB = "dev-user"
OTHER_SUB = "dev-user-2"
# The e-mail and name claims of each dev token: the worker creates the caller's User from
# them on first use, and the demo seed binds the same users to these subjects.
DEV_PROFILES = {DEV_SUB: ("alice@example.com", "Alice Martin"),
                OTHER_SUB: ("bob@example.com", "Bob Nakamura")}
# Alice is in the admin group (the sales report and the console's Operations page need
# it), in the stringified form API Gateway passes a Cognito token's groups in.
DEV_GROUPS = {DEV_SUB: "[admin]"}


class DevError(RuntimeError):
    """Why the stack cannot start, in one line that says what to do."""


@dataclass
class DevOptions:
    port: int = 8000
    ui_port: int = 8001
    workers: int = 1
    api_concurrency: int = 1
    fire: list[str] = field(default_factory=list)
    token: str | None = None
    template: Path = c.REPO_ROOT / "template.yaml"
    ready_timeout: float = 90.0
    grace: float = 4.0
    exit_with_parent: bool = False  # for tools that start a stack for themselves
    reload: bool = False  # restart workers/handlers when their code changes (`offload dev`)
    verbose: bool = False  # every component's full log (else one line per job state change)


@dataclass
class Stack:
    """Everything decided before the first process starts."""

    options: DevOptions
    template: Template
    ports: c.Ports
    env: dict[str, str]
    settings_env: dict[str, str]
    tokens: dict[str, dict[str, str]]
    token: str
    other_token: str
    functions: dict[str, c.FunctionPlan]
    redis_note: str
    mongo_note: str
    redis_binary: str | None  # None: REDIS_URL is used
    stack_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def api_plan(self) -> c.FunctionPlan | None:
        names = {r.function for r in self.template.routes}
        for plan in self.functions.values():
            if plan.function.logical_id in names or (not names and plan.name == "api"):
                return plan
        return None

    def s3_plan(self) -> c.FunctionPlan | None:
        ids = {t.function for t in self.template.s3_triggers}
        return next((p for p in self.functions.values() if p.function.logical_id in ids), None)

    def plan_for(self, logical_id: str) -> c.FunctionPlan:
        return next(p for p in self.functions.values() if p.function.logical_id == logical_id)


# --- deciding -------------------------------------------------------------------------


def _choose_port(requested: int, flag: str, spare: list[int]) -> int:
    if requested == 0:
        return spare.pop()
    if not port_free(requested):
        raise DevError(f"port {requested} is in use: pass {flag} N (0 picks a free port) or "
                       f"stop what is listening there")
    return requested


def _load_template(path: Path) -> tuple[Template, str | None]:
    if not path.exists():
        return c.default_template(), (f"{path.name} not found: using the default handlers "
                                      f"and no schedules")
    try:
        return load_template(path), None
    except TemplateError as exc:
        raise DevError(str(exc)) from exc


def _claims(sub: str, port: int) -> dict[str, str]:
    now = int(time.time())
    email, name = DEV_PROFILES[sub]
    return {"sub": sub, "email": email, "name": name, "iss": f"http://127.0.0.1:{port}/local-issuer",
            "client_id": "offload-local", "token_use": "access",
            "scope": "jobs/read jobs/write", "iat": str(now), "exp": str(now + 365 * 86400),
            **({"cognito:groups": DEV_GROUPS[sub]} if sub in DEV_GROUPS else {})}


def _check_local_extras() -> None:
    missing = [name for name in ("moto", "rich", "uvicorn", "mongomock", "PIL")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise DevError(f"the local stack's packages are missing ({', '.join(missing)}): run "
                       f"`uv sync --all-extras`, or use ./infra/local/offload, which does")


def plan_stack(options: DevOptions) -> tuple[Stack, list[str]]:
    """Ports, settings, tokens and functions; DevError when something is missing or busy."""
    from shared.config import Settings

    _check_local_extras()
    notes: list[str] = []
    template, note = _load_template(options.template)
    if note:
        notes.append(note)
    containers = len(template.functions) + options.api_concurrency
    spare = free_ports(6 + containers)
    ports = c.Ports(api=_choose_port(options.port, "--port", spare),
                    ui=_choose_port(options.ui_port, "--ui-port", spare), aws=spare.pop(),
                    redis=spare.pop(), mongo=spare.pop(), fixtures=spare.pop())
    try:
        external = external_redis(os.environ.get("REDIS_URL"))
    except RedisProblem as exc:
        raise DevError(str(exc)) from exc
    if external is not None:
        redis_url, redis_note = external.url, f"REDIS_URL (Redis {external.version})"
    else:
        if os.environ.get("REDIS_URL"):
            notes.append(f"REDIS_URL={os.environ['REDIS_URL']} does not answer: starting a "
                         f"private redis-server instead")
        redis_url, redis_note = f"redis://127.0.0.1:{ports.redis}/0", "private redis-server"
    mongodb_uri = os.environ.get("MONGODB_URI", "")
    mongo_note = "MONGODB_URI"
    if not mongodb_uri:
        mongodb_uri = f"mongodb://127.0.0.1:{ports.mongo}/?directConnection=true"
        mongo_note = "in-memory stand-in (data lives until the stack stops)"
    # The rest (region, queue name, buckets, sender) as OFFLOAD_* or the defaults say.
    shared_settings = c.settings_env(Settings(
        env="development", redis_url=redis_url, aws_endpoint_url=f"http://127.0.0.1:{ports.aws}",
        mongodb_uri=mongodb_uri, fetch_allowed_hosts=("127.0.0.1",),
    ))
    token = (options.token or os.environ.get("OFFLOAD_DEV_TOKEN")
             or f"dev-{secrets.token_urlsafe(18)}")
    other = f"dev2-{secrets.token_urlsafe(18)}"
    functions: dict[str, c.FunctionPlan] = {}
    for fn in template.functions.values():
        plan = c.FunctionPlan(c.short_name(fn), fn)
        functions[plan.name] = plan
    stack = Stack(
        options=options, template=template, ports=ports,
        env={**c.base_env(shared_settings), "OFFLOAD_SCHEDULES": json.dumps(
            {s.name: s.expression for s in template.schedules if s.enabled}),
            # Job events as JSON lines, where `offload events` reads them (not EventBridge).
            "OFFLOAD_JOB_EVENTS_FILE": str(state_dir() / "events.jsonl")},
        settings_env=shared_settings,
        tokens={token: _claims(DEV_SUB, ports.api), other: _claims(OTHER_SUB, ports.api)},
        token=token, other_token=other, functions=functions,
        redis_note=redis_note, mongo_note=mongo_note,
        redis_binary=None if external is not None else _redis_binary(),
    )
    api = stack.api_plan()
    for plan in functions.values():
        count = options.api_concurrency if plan is api else 1
        plan.ports = [spare.pop() for _ in range(count)]
    return stack, notes


def _redis_binary() -> str:
    try:
        return redis_server_binary()
    except RedisProblem as exc:
        raise DevError(str(exc)) from exc


def schedule_targets(stack: Stack) -> list[ScheduleTarget]:
    targets = []
    for schedule in stack.template.schedules:
        if not schedule.enabled:
            continue
        plan = stack.plan_for(schedule.function)
        targets.append(ScheduleTarget(
            name=schedule.name, rule_name=schedule.logical_id, expression=schedule.expression,
            timezone=schedule.timezone, input=schedule.input, function_url=plan.urls[0],
            timeout=plan.function.timeout,
        ))
    return targets


# --- starting -------------------------------------------------------------------------


def _aws_setup(stack: Stack) -> AwsSetup:
    trigger = stack.template.s3_triggers[0] if stack.template.s3_triggers else None
    env = stack.settings_env
    setup = AwsSetup(region=env["OFFLOAD_AWS_REGION"],
                     uploads_bucket=env["OFFLOAD_UPLOADS_BUCKET"],
                     results_bucket=env["OFFLOAD_RESULTS_BUCKET"],
                     ses_sender=env["OFFLOAD_SES_SENDER"])
    if trigger is not None:
        setup = AwsSetup(setup.region, setup.uploads_bucket, setup.results_bucket,
                         setup.ses_sender, trigger.events, trigger.filter_rules)
    return setup


def _write_private(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def start_stack(stack: Stack, sup: Supervisor, cancel: threading.Event) -> str:
    """Start every component, as early as its dependencies allow; the notification queue URL.

    The Lambda containers only import their handler at start (they connect on first use),
    so they start with the services; workers and the web UI connect at start, so they wait
    for Redis and MongoDB; the gateway and the event sources wait for the containers.
    """
    env, ports, timeout = stack.env, stack.ports, stack.options.ready_timeout
    t0 = time.monotonic()
    services = []
    if stack.redis_binary is not None:
        sup.start(private_server_spec(stack.redis_binary, ports.redis, state_dir() / "redis",
                                      env))
        services.append("redis")
    sup.start(c.aws_spec(ports.aws, _aws_setup(stack), env))
    services.append("aws")
    if stack.mongo_note != "MONGODB_URI":
        sup.start(c.mongo_spec(ports.mongo, env))
        services.append("mongo")
    sup.start(c.fixtures_spec(ports.fixtures, env))
    services.append("fixtures")
    verbose = stack.options.verbose
    containers = [sup.start(c.container_spec(plan, index, env, verbose)).spec.name
                  for plan in stack.functions.values() for index in range(len(plan.ports))]
    sup.wait_ready(services, timeout, cancel)
    sup.say(f"{', '.join(services)} ready after {time.monotonic() - t0:.1f} s")
    queue_url = str(json.loads(sup.children["aws"].ready_text.partition(" ")[2])["queue_url"])
    if stack.options.workers > 0:
        sup.start(c.workers_spec(stack.options.workers, state_dir(), env, verbose))
    sup.start(c.streaq_ui_spec(ports.ui, env))
    sup.wait_ready(containers, timeout, cancel)
    sup.say(f"Lambda containers ({', '.join(containers)}) ready after "
            f"{time.monotonic() - t0:.1f} s")
    sup.start(c.gateway_spec(ports.api, _gateway_config(stack), env))
    sup.start(c.triggers_spec(_trigger_config(stack, queue_url), env))
    sup.wait_ready(["gateway", "triggers", "streaq-ui"], timeout, cancel)
    return queue_url


def gateway_routes(stack: Stack) -> list[RouteDef]:
    """The template's routes; without a template, one catch-all behind the authorizer."""
    api = stack.api_plan()
    if stack.template.routes or api is None:
        return list(stack.template.routes)
    fn = api.function.logical_id
    return [RouteDef("ANY", "$default", fn, True), RouteDef("GET", "/health", fn, False),
            RouteDef("GET", "/swagger", fn, False)]


def needs_token(stack: Stack, method: str, path: str) -> bool:
    """Whether the gateway's authorizer guards ``method path`` (as the template says)."""
    for route in sorted(gateway_routes(stack), key=route_specificity):
        if match_route(route, method, path) is not None:
            return route.auth
    return False


def _gateway_config(stack: Stack) -> Path:
    routes = gateway_routes(stack)
    pools = {p.function.logical_id: p.urls for p in stack.functions.values()
             if any(r.function == p.function.logical_id for r in routes)}
    config = GatewayConfig(
        port=stack.ports.api, routes=routes, tokens=stack.tokens, pools=pools,
        timeouts={p.function.logical_id: p.function.timeout for p in stack.functions.values()},
        aws_endpoint_url=stack.settings_env["OFFLOAD_AWS_ENDPOINT_URL"],
        log_reads=stack.options.verbose,
    )
    return _write_private(state_dir() / "gateway.json", asdict(config))


def _trigger_config(stack: Stack, queue_url: str) -> Path:
    s3 = stack.s3_plan()
    config = TriggerConfig(
        region=stack.settings_env["OFFLOAD_AWS_REGION"],
        aws_endpoint_url=stack.settings_env["OFFLOAD_AWS_ENDPOINT_URL"],
        queue_url=queue_url,
        s3_function_url=s3.urls[0] if s3 else "",
        s3_function_timeout=s3.function.timeout if s3 else 30.0,
        schedules=schedule_targets(stack),
    )
    return _write_private(state_dir() / "triggers.json", asdict(config))


def stack_state(stack: Stack, sup: Supervisor) -> StackState:
    env = stack.settings_env
    return StackState(
        stack_id=stack.stack_id, supervisor_pid=os.getpid(), api_url=stack.api_url,
        token=stack.token, sub=DEV_SUB, other_tokens={stack.other_token: OTHER_SUB},
        aws_endpoint_url=env["OFFLOAD_AWS_ENDPOINT_URL"], redis_url=env["OFFLOAD_REDIS_URL"],
        mongodb_uri=env["OFFLOAD_MONGODB_URI"],
        fixtures_url=f"http://127.0.0.1:{stack.ports.fixtures}",
        streaq_ui_url=f"http://127.0.0.1:{stack.ports.ui}",
        swagger_url=f"{stack.api_url}/swagger",
        functions={p.name: p.urls for p in stack.functions.values()},
        schedules=[asdict(t) for t in schedule_targets(stack)],
        pids={name: child.pid for name, child in sup.children.items()},
        env={**env, **c.FAKE_AWS}, started_at=time.time(),
    )


def seed_users(state: StackState) -> list[str]:
    """Seed the demo users (and a week of orders) into the stack's MongoDB, once; one
    banner line per user with their id and dev token. A failure is one line: the stack
    runs without them (the demo seeds again)."""
    import anyio

    from infra.local.seed import SUBJECTS, USERS, seed, settings_for

    try:
        seeded = anyio.run(seed, settings_for(state.env))
    except Exception as exc:  # reported in the banner; the stack goes on without them
        return [f"not seeded: {type(exc).__name__}: {exc}"]
    tokens = {sub: token for token, sub in {state.token: state.sub,
                                            **state.other_tokens}.items()}
    lines = []
    for email, name in USERS:
        sub = SUBJECTS.get(email)
        if sub in tokens:
            roles = f", {DEV_GROUPS[sub].strip('[]')}" if sub in DEV_GROUPS else ""
            who = f"token {tokens[sub]}   (sub {sub}{roles})"
        else:
            who = "(no token)"
        lines.append(f"{name} <{email}>  id {seeded.user_ids[email]}  {who}")
    return lines


def banner(stack: Stack, state: StackState, took: float, users: list[str] | None = None) -> str:
    sched = ", ".join(f"{t['name']} {t['expression']}" for t in state.schedules) or "none"
    workers = stack.options.workers
    rows = [
        ("API", f"{state.api_url}   (token {state.token} = sub {state.sub})"),
        ("Swagger UI", state.swagger_url + (
            "   (behind the authorizer in template.yaml: send the token)"
            if needs_token(stack, "GET", "/swagger") else "")),
        ("Streaq UI", state.streaq_ui_url),
        ("S3/SES (moto)", f"{state.aws_endpoint_url}   (dashboard "
                          f"{state.aws_endpoint_url}/moto-api/)"),
        ("Redis", f"{state.redis_url}   ({stack.redis_note})"),
        ("MongoDB", f"{state.mongodb_uri}   ({stack.mongo_note})"),
        ("Fixtures", f"{state.fixtures_url}/rates.json   (allow-listed for "
                     f"fetch_external_data; /slow?seconds=N trickles)"),
        ("Workers", f"{workers} process{'es' if workers != 1 else ''}"),
        ("Reload", "on: worker/, shared/, functions/ changes restart what runs them"
                   if stack.options.reload else "off (--no-reload)"),
        ("Schedules", sched),
        ("State", str(state_file())),
    ]
    for n, user in enumerate(users or []):
        rows.insert(1 + n, ("Users" if n == 0 else "", user))
    lines = [f"Offload dev stack is up in {took:.1f} s", *(f"  {k:<14} {v}" for k, v in rows)]
    cli = "./infra/local/offload"
    lines += [
        "Try:",
        f"  curl -s -H 'Authorization: Bearer {state.token}' -H 'content-type: application/json'"
        f" -d '{{\"start_date\":\"2026-11-01\",\"end_date\":\"2026-11-27\"}}'"
        f" {state.api_url}/jobs/generate_sales_report",
        f"  {cli} jobs   (every job and its input)",
        f"  {cli} enqueue send_welcome_email --wait   then   {cli} mail",
        f"  {cli} list   {cli} status ID --wait   {cli} download ID   {cli} demo",
        "Log: one line per request that changes something and per job start, retry and "
        "failure" + ("" if stack.options.verbose else " (--verbose: everything)") + ".",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


# --- running --------------------------------------------------------------------------


def _lock_state_dir() -> IO[str]:
    """Hold ``.offload/dev.lock`` for the life of this process: one stack per directory."""
    import fcntl

    path = state_dir() / "dev.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        running = StackState.load()
        where = f" (pid {running.supervisor_pid}, {running.api_url})" if running else ""
        raise DevError(f"a dev stack is already starting or running in {state_dir()}{where}: "
                       f"stop it with Ctrl-C in its terminal, or run this elsewhere") from exc
    return handle


def _clear_stale_stack() -> None:
    """A state file whose supervisor is gone: sweep what it left, then forget it."""
    path = state_file()
    if not path.exists():
        return
    running = StackState.load(path)
    if running is not None:
        raise DevError(f"a dev stack is already running (pid {running.supervisor_pid}, "
                       f"{running.api_url}): stop it with Ctrl-C in its terminal or "
                       f"`kill {running.supervisor_pid}`")
    try:
        stale_id = str(json.loads(path.read_text()).get("stack_id", ""))
    except (OSError, ValueError):
        stale_id = ""
    if stale_id:
        sweep_marked(stale_id)
    path.unlink(missing_ok=True)


def run_dev(options: DevOptions, out: Any = None) -> int:
    """Run the stack until Ctrl-C (or SIGTERM); 0 after a clean stop."""
    log = LogStream(out, drop=None if options.verbose else metric_line)
    try:
        lock = _lock_state_dir()
        _clear_stale_stack()
        (state_dir() / "events.jsonl").unlink(missing_ok=True)  # this stack's events only
        stack, notes = plan_stack(options)
    except DevError as exc:
        print(f"offload dev: {exc}", file=sys.stderr)
        return 2
    sup = Supervisor(stack.stack_id, log)
    for note in notes:
        sup.say(note)
    stop = threading.Event()
    _install_signals(stop, sup)
    if options.exit_with_parent:
        _stop_with_parent(stop)
    started = time.monotonic()
    code = 0
    try:
        start_stack(stack, sup, stop)
        state = stack_state(stack, sup)
        state.save()
        users = seed_users(state)
        log.raw(banner(stack, state, time.monotonic() - started, users))
        if options.reload:
            _start_reload(stack, sup, stop)
        for name in options.fire:
            fire_schedule(state, name, sup.say)
        code = _supervise(sup, stop)
    except StartupError as exc:
        if not stop.is_set():
            sup.say(f"error: {exc}")
            code = 1
    except DevError as exc:
        sup.say(f"error: {exc}")
        code = 1
    finally:
        took = time.monotonic()
        sup.say("stopping ...")
        killed = sup.stop_all(grace=options.grace)
        state_file().unlink(missing_ok=True)
        forced = f" ({len(killed)} needed SIGKILL)" if killed else ""
        sup.say(f"stopped in {time.monotonic() - took:.1f} s{forced}")
        lock.close()
    return code


def _start_reload(stack: Stack, sup: Supervisor, stop: threading.Event) -> None:
    from infra.local.reload import start_watching

    sup.park_on_failure = True
    workers: list[str] = [n for n in ("worker", "streaq-ui") if n in sup.children]
    containers = [plan.component(i) for plan in stack.functions.values()
                  for i in range(len(plan.ports))]

    def restart(names: list[str], changed: list[Path]) -> None:
        shown = ", ".join(str(p.relative_to(c.REPO_ROOT)) for p in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        sup.say(f"reload: {shown}{more} changed; restarting {', '.join(names)}")
        took = time.monotonic()
        try:
            sup.restart(names, grace=stack.options.grace, timeout=stack.options.ready_timeout)
        except StartupError as exc:  # e.g. a syntax error: the next save tries again
            sup.say(f"reload: {exc}")
            return
        sup.say(f"reload: done in {time.monotonic() - took:.1f} s")

    start_watching(c.REPO_ROOT, restart, workers, containers, stop)


def _install_signals(stop: threading.Event, sup: Supervisor) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            sup.force_kill()  # a second Ctrl-C: no more waiting
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _stop_with_parent(stop: threading.Event) -> None:
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _supervise(sup: Supervisor, stop: threading.Event) -> int:
    while not stop.wait(0.25):
        reason = sup.check()
        if reason is not None:
            sup.say(f"error: {reason}")
            return 1
    return 0


def fire_schedule(state: StackState, name: str, say: Any = print) -> bool:
    """Deliver schedule ``name``'s event to its function now; True when the handler succeeded."""
    targets = [ScheduleTarget(**t) for t in state.schedules]
    target = next((t for t in targets if name in (t.name, t.rule_name)), None)
    if target is None:
        known = ", ".join(t.name for t in targets) or "none"
        raise DevError(f"no schedule named {name!r} (known: {known})")
    region = state.env.get("OFFLOAD_AWS_REGION", "eu-west-1")
    result = fire(target, region)
    verdict = "ok" if result.ok else "FAILED"
    say(f"fired {target.name} ({target.expression}) -> {verdict} in {result.millis:.0f} ms: "
        f"{json.dumps(result.payload)[:300]}")
    return result.ok
