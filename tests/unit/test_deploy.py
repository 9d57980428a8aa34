"""The deployment files of infra/deploy, checked where no container engine can pull an image.

The Kubernetes manifests against Kubernetes' own schemas (as kubernetes-validate ships them, strict:
an unknown field fails), compose.yaml against the Compose Specification's JSON Schema (as
check-jsonschema ships it, with its licence), every ``PAYPOST_*`` variable they set against the
settings paypost reads, the roles, probes, stop times and disruption budgets they promise, and the
Grafana dashboard's metric names against paypost's metrics. Nothing here starts a container.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import tomllib
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from pydantic import ValidationError

import paypost.handlers.metrics
from paypost.infra.runtime.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "infra" / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# A Kubernetes version whose schemas kubernetes-validate ships (1.25 to 1.37 in its 1.37 release).
KUBERNETES_VERSION = "1.33.0"

# The comma-separated PAYPOST_AMQP_URL is a value of an existing setting, and the role is a flag
# (`--role`), no variable: every variable the deployment sets is a setting of infra/runtime/settings.py.
ROLE_ARGS = {"api": ["run", "--role", "api", "--no-local"], "worker": ["run", "--role", "worker", "--no-local"]}

Resource = dict[str, Any]
REFERENCE = "<valueFrom>"  # a variable set from a Secret or a field of the pod, not written in the manifest


@functools.cache
def parsed(path: Path) -> list[Any]:
    """The YAML documents of a file, parsed once per session (a test gets its own copy)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]


def manifests() -> list[tuple[str, Resource]]:
    return [(path.name, copy.deepcopy(doc)) for path in sorted(KUBERNETES.glob("*.yaml")) for doc in parsed(path)]


def resources(kind: str) -> dict[str, Resource]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = copy.deepcopy(parsed(DEPLOY / "compose.yaml")[0])
    return loaded


def compose_schema() -> dict[str, Any]:
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def known_variables() -> frozenset[str]:
    """Every PAYPOST_ variable paypost reads: a setting, or a secret's _FILE variant."""
    fields = {f"PAYPOST_{name.upper()}" for name in Settings.model_fields}
    secret_files = {f"PAYPOST_{name.upper()}_FILE" for name in SECRET_FIELDS}
    return frozenset(fields | secret_files)


def pod_spec(workload: Resource) -> Resource:
    """The pod a workload runs (a CronJob's, through its Job's template)."""
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    pod: Resource = spec["template"]["spec"]
    return pod


def containers(workload: Resource) -> Iterator[Resource]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workloads() -> list[Resource]:
    return [doc for _, doc in manifests() if doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")]


def config_map_data() -> dict[str, str]:
    """What the ConfigMaps the paypost Deployments take their environment from hold."""
    maps = resources("ConfigMap")
    data: dict[str, str] = {}
    for deployment in resources("Deployment").values():
        for container in containers(deployment):
            for source in container.get("envFrom", []):
                data |= maps[source["configMapRef"]["name"]]["data"]
    return data


def kubernetes_environment(container: Resource) -> dict[str, str]:
    env: dict[str, str] = {}
    maps = resources("ConfigMap")
    for source in container.get("envFrom", []):
        env |= maps[source["configMapRef"]["name"]]["data"]
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", REFERENCE)
    return env


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile_environment() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
    return env


def paypost_variables_set() -> dict[str, list[tuple[str, str]]]:
    """Each PAYPOST_ variable set anywhere in infra/deploy: where, and to what."""
    found: dict[str, list[tuple[str, str]]] = {}

    def note(where: str, env: dict[str, str]) -> None:
        for name, value in env.items():
            if name.startswith("PAYPOST"):
                found.setdefault(name, []).append((where, value))

    for name, service in compose()["services"].items():
        note(f"compose.yaml services.{name}", compose_environment(service))
    for workload in workloads():
        for container in containers(workload):
            note(f"{workload['kind']} {workload['metadata']['name']}", kubernetes_environment(container))
    for name, config_map in resources("ConfigMap").items():
        note(f"ConfigMap {name}", config_map.get("data", {}))
    note("Dockerfile", dockerfile_environment())
    return found


# -- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "resource"), manifests(),
                         ids=[f"{file}:{doc['kind']}/{doc['metadata']['name']}" for file, doc in manifests()])
def test_every_manifest_follows_the_kubernetes_schema(file: str, resource: Resource) -> None:
    # Raises on an unknown kind (SchemaNotFoundError) as on an unknown or mistyped field.
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_compose_file_follows_the_compose_specification() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(compose())]
    assert errors == []


def test_the_schemas_refuse_a_field_they_do_not_know() -> None:
    deployment = resources("Deployment")["paypost-api"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError, match="pathh"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)

    services = compose()
    services["services"]["api-1"]["stop_grace"] = "45s"
    schema = compose_schema()
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(services))
    assert [error.message for error in errors if "stop_grace" in error.message]


# -- settings ---------------------------------------------------------------------------------


def test_every_paypost_variable_set_is_a_setting_paypost_reads() -> None:
    found = paypost_variables_set()
    unknown = {name: where for name, where in found.items() if name not in known_variables()}
    assert unknown == {}
    assert {"PAYPOST_AMQP_URL_FILE", "PAYPOST_MONGODB_URI_FILE", "PAYPOST_API_TOKENS_FILE"} <= found.keys()


def test_credentials_come_from_secret_files_never_from_a_value() -> None:
    found = paypost_variables_set()
    assert [f"PAYPOST_{name.upper()}" for name in SECRET_FIELDS if f"PAYPOST_{name.upper()}" in found] == []


def test_every_value_set_is_one_paypost_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, places in paypost_variables_set().items():
        if name.endswith("_FILE") or name.removeprefix("PAYPOST_").lower() not in Settings.model_fields:
            continue  # a file's path, read when paypost starts
        for where, value in places:
            if value == REFERENCE:
                continue
            monkeypatch.setenv(name, value)
            try:
                Settings()
            except ValidationError as exc:
                pytest.fail(f"{where}: {name}={value!r} is refused: {exc}")


def test_secret_files_are_mounted_where_the_variables_say() -> None:
    for deployment in [*resources("Deployment").values(), *resources("CronJob").values()]:
        spec = pod_spec(deployment)
        secret_volumes = {volume["name"] for volume in spec["volumes"] if "secret" in volume}
        for container in spec["containers"]:
            mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in secret_volumes]
            for name, path in kubernetes_environment(container).items():
                if name.startswith("PAYPOST_") and name.endswith("_FILE"):
                    assert any(path.startswith(mount + "/") for mount in mounts), (deployment["metadata"]["name"], name)
    for name, service in compose()["services"].items():
        for variable, path in compose_environment(service).items():
            if variable.endswith("_FILE"):
                assert path.removeprefix("/run/secrets/") in service.get("secrets", []), (name, variable)


# -- processes, probes, stopping ----------------------------------------------------------------


def test_api_and_workers_run_with_their_roles_as_many_as_promised() -> None:
    deployments = resources("Deployment")
    for role, replicas in (("api", 2), ("worker", 3)):
        deployment = deployments[f"paypost-{role}"]
        assert deployment["spec"]["replicas"] == replicas
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ROLE_ARGS[role]
        services = {name: s for name, s in compose()["services"].items() if name.startswith(f"{role}-")}
        assert len(services) == replicas
        assert all(service["command"] == ROLE_ARGS[role] for service in services.values())
    for stateful in ("rabbitmq", "mongodb"):
        assert resources("StatefulSet")[stateful]["spec"]["replicas"] == 3
    for prefix in ("rabbitmq-", "mongo-"):
        assert len([name for name in compose()["services"] if re.fullmatch(rf"{prefix}\d", name)]) == 3


def http_port() -> int:
    return int(config_map_data()["PAYPOST_HTTP"].rpartition(":")[2])


def test_probes_ask_paypost_whether_it_lives_and_is_ready() -> None:
    for name, deployment in resources("Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        tls = "PAYPOST_HTTP_TLS_CERT_FILE" in kubernetes_environment(container)
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert ports[get["port"]] == http_port(), (name, probe)
            assert get.get("scheme", "HTTP") == ("HTTPS" if tls else "HTTP"), (name, probe)
    for name, service in compose()["services"].items():
        if name.startswith(("api-", "worker-")):
            check = " ".join(service["healthcheck"]["test"])
            env = compose_environment(service)
            port = env["PAYPOST_HTTP"].rpartition(":")[2]
            tls = "PAYPOST_HTTP_TLS_CERT_FILE" in env
            assert f"{'https' if tls else 'http'}://127.0.0.1:{port}/readyz" in check, name


def stop_timeout(env: dict[str, str]) -> float:
    return float(env.get("PAYPOST_STOP_TIMEOUT", Settings.model_fields["stop_timeout"].default))


def test_paypost_is_given_longer_to_stop_than_it_takes() -> None:
    for name, deployment in resources("Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        pause = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        paused = float(pause[1]) if pause[:1] == ["sleep"] else 0.0
        assert spec["terminationGracePeriodSeconds"] > paused + stop_timeout(kubernetes_environment(container)), name
    for name, service in compose()["services"].items():
        if name.startswith(("api-", "worker-")):
            assert service["stop_signal"] == "SIGTERM"
            grace = float(service["stop_grace_period"].removesuffix("s"))
            assert grace > stop_timeout(compose_environment(service)), name


def test_every_workload_has_a_disruption_budget_over_its_pods() -> None:
    budgets = [doc["spec"]["selector"]["matchLabels"] for doc in resources("PodDisruptionBudget").values()]
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in resources(kind).items():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            covering = [b for b in budgets if b.items() <= labels.items()]
            assert len(covering) == 1, f"{kind} {name}"


def documented_secrets() -> dict[str, set[str]]:
    """The Secrets infra/deploy/README.md tells how to make, and the keys of each."""
    text = (DEPLOY / "README.md").read_text().replace("\\\n", " ")
    made: dict[str, set[str]] = {}
    for kind, name, rest in re.findall(r"kubectl -n paypost create secret (generic|tls) (\S+)(.*)", text):
        keys = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", rest))
        made[name] = keys | ({"tls.crt", "tls.key"} if kind == "tls" else set())
    return made


def test_every_secret_the_manifests_read_is_made_as_the_readme_says() -> None:
    made = documented_secrets()
    for workload in workloads():
        spec = pod_spec(workload)
        volumes = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in containers(workload):
            where = f"{workload['kind']} {workload['metadata']['name']}"
            for item in container.get("env", []):
                if ref := item.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["key"] in made.get(ref["name"], set()), (where, ref)
            mounts = {m["mountPath"]: volumes[m["name"]]
                      for m in container.get("volumeMounts", []) if m["name"] in volumes}
            files = [value for name, value in kubernetes_environment(container).items() if name.endswith("_FILE")]
            files += [arg for arg in container.get("command", []) + container.get("args", []) if arg.startswith("/")]
            for path in files:
                for mount, secret in mounts.items():
                    if path.startswith(mount + "/"):
                        assert path.removeprefix(mount + "/") in made.get(secret, set()), (where, path)


def test_every_compose_secret_file_is_made_as_the_readme_says() -> None:
    text = (DEPLOY / "README.md").read_text()
    for name, secret in compose()["secrets"].items():
        file = secret["file"].removeprefix("./secrets/")
        assert re.search(rf"(>|-keyout|-out) {re.escape(file)}\b", text), name


def test_the_image_runs_paypost_as_no_root_and_starts_no_local_services() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert '"--no-local"' in re.findall(r"^CMD (.*)", dockerfile, re.MULTILINE)[-1]


def test_the_image_copies_every_package_paypost_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(project["tool"]["setuptools"]["package-dir"].values())
    copied = set(re.findall(r"^COPY (\w+) \1$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE))
    assert copied == packages


def test_the_base_image_is_pinned_by_digest_with_its_tag_beside_it() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert len(bases) == 2 and len(set(bases)) == 1, bases  # the build stage and the image: one base
    match = re.fullmatch(r"python:(3\.11\.\d+-slim-bookworm)@sha256:[0-9a-f]{64}", bases[0])
    assert match, bases[0]
    # The tag the digest was taken for, said in a comment, and how to check it.
    assert re.search(rf"^#\s+python:{re.escape(match[1])}$", dockerfile, re.MULTILINE)
    assert f"docker buildx imagetools inspect python:{match[1]}" in dockerfile


def test_the_image_installs_from_the_lock_and_nothing_beside_it() -> None:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    pip_installs = [cmd.strip() for run in runs for cmd in run.split("&&")
                    if re.search(r"\bpip (install|wheel)\b", cmd)]
    # The build backend and every dependency from the lock, checked against their hashes; paypost's
    # own wheel with --no-deps, so nothing comes in that the lock does not name.
    assert "pip install --require-hashes -r requirements/build.txt" in pip_installs[0]
    assert re.search(r"pip wheel --no-deps --no-build-isolation .*\.$", pip_installs[1])
    assert re.search(r"pip install --require-hashes -r /tmp/paypost\.txt$", pip_installs[2])
    assert "source=requirements/paypost.txt,target=/tmp/paypost.txt" in runs[-1]
    assert re.search(r"pip install --no-deps --no-index /wheels/paypost-\*\.whl$", pip_installs[3])
    assert len(pip_installs) == 4, pip_installs
    for lock in ("build.txt", "paypost.txt"):
        assert (ROOT / "requirements" / lock).is_file()
    # The lock and the licence reach the build: nothing the Dockerfile reads is ignored.
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not {"requirements", "LICENSE", "pyproject.toml"} & set(ignored)
    assert re.search(r"^COPY pyproject.toml README.md LICENSE ./$", text, re.MULTILINE)


def test_every_image_tag_is_the_version_of_paypost() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # Every service built from this checkout, every container of paypost, and the build command.
    images = [service.get("image", "") for service in compose()["services"].values()
              if "build" in service or service.get("image", "").startswith("paypost")]
    images += [container["image"] for workload in workloads() for container in containers(workload)
               if container["image"].startswith("paypost")]
    images += re.findall(r"-t (paypost:\S+)", (DEPLOY / "Dockerfile").read_text())
    assert len(images) >= 4, images
    assert set(images) == {f"paypost:{version}"}


def test_the_mongodb_job_runs_the_same_script_as_compose() -> None:
    script = resources("ConfigMap")["mongodb-init"]["data"]["replica-set.js"]
    assert script == (DEPLOY / "mongo" / "replica-set.js").read_text()


# -- metrics ------------------------------------------------------------------------------------

SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                   "gauge": ("",)}


def paypost_metric_names() -> set[str]:
    """The names of the samples handlers/metrics.py's metrics expose on /metrics."""
    names = set()
    for metric in vars(paypost.handlers.metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for family in metric.describe():
                names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


# PromQL's functions, aggregations and keywords used in the dashboard, which read like metric names.
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "rate", "increase", "histogram_quantile", "by", "without"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left without label matchers, ranges,
    grouping clauses, strings and PromQL's own words."""
    bare = re.sub(r'\{[^}]*\}|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)|"[^"]*"', " ", expr)
    return set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - PROMQL_WORDS


def test_metric_names_are_read_from_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(paypost_posting_latency_seconds_bucket{job="x"}[5m]))) / up'
    assert metric_names(expr) == {"paypost_posting_latency_seconds_bucket", "up"}


def recorded_rules() -> set[str]:
    """The series the alert rules record (prometheus/rules.yml), which the dashboard may show."""
    groups = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_every_dashboard_panel_shows_metrics_paypost_exposes() -> None:
    """paypost's metrics and the series its rules record; a "MongoDB:" panel, the exporter's."""
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "paypost.json").read_text())
    known = paypost_metric_names() | recorded_rules()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = metric_names(target["expr"])
            assert used, panel["title"]
            if panel["title"].startswith("MongoDB:"):
                assert all(name.startswith("mongodb_") for name in used), (panel["title"], used)
                continue
            assert used <= known, (panel["title"], used - known)


def test_the_dashboard_shows_the_objective_and_what_the_alerts_watch() -> None:
    exprs = " ".join(target["expr"] for panel in json.loads(
        (DEPLOY / "grafana" / "dashboards" / "paypost.json").read_text())["panels"] for target in panel["targets"])
    for name in ("paypost_objective_payments_on_time_total", "paypost:objective_errors:ratio_rate1h",
                 "paypost_practice_system_request_seconds_bucket", "paypost_practice_system_throttled_total",
                 "paypost_practice_system_token_fetches_total", "paypost_practices_held",
                 "paypost_alert_outbox_backlog", "paypost_alert_outbox_oldest_seconds", "paypost_announcements_owed",
                 "paypost_audit_entries_unsealed",
                 "paypost_audit_last_seal_age_seconds", "paypost_build_info", "mongodb_op_counters_total"):
        assert name in exprs, name


def test_the_dashboard_covers_what_the_office_watches() -> None:
    exprs = " ".join(target["expr"] for panel in json.loads(
        (DEPLOY / "grafana" / "dashboards" / "paypost.json").read_text())["panels"] for target in panel["targets"])
    for name in ("paypost_payments_received_total", "paypost_postings_loaded_total", "paypost_postings_failed_total",
                 "paypost_posting_latency_seconds_bucket", "paypost_queue_messages", "paypost_dead_letter_queue_depth",
                 "paypost_consumer_lag_messages"):
        assert name in exprs
    assert "by (error_code)" in exprs


def test_grafana_reads_the_dashboard_from_the_prometheus_it_provisions() -> None:
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    uids = {source["uid"] for source in datasources["datasources"]}
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "paypost.json").read_text())
    assert {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]} <= uids
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "paypost.yaml").read_text())
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def test_prometheus_scrapes_every_paypost_process_of_compose() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {target for job in config["scrape_configs"] for static in job["static_configs"]
               for target in static["targets"]}
    processes = {name for name in compose()["services"] if name.startswith(("api-", "worker-"))}
    assert {f"{name}:{http_port()}" for name in processes} <= targets
    api = next(job for job in config["scrape_configs"] if job["job_name"] == "paypost-api")
    assert api["scheme"] == "https"


def test_prometheus_loads_the_alert_rules_the_prometheus_rule_holds() -> None:
    """One set of rules: compose's Prometheus loads rules.yml, and the PrometheusRule (for the
    Prometheus Operator, in kubernetes/monitoring/) holds the same groups."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    configs = compose()["configs"]
    mounted = {c["target"]: configs[c["source"]]["file"] for c in compose()["services"]["prometheus"]["configs"]}
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert mounted["/etc/prometheus/rules.yml"] == "./prometheus/rules.yml"
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    [rule] = parsed(KUBERNETES / "monitoring" / "60-paypost-rules.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == resources("Namespace").popitem()[0]
    assert rule["spec"]["groups"] == rules["groups"]


def test_a_mongodb_exporter_stands_beside_the_stack_and_is_scraped() -> None:
    services = compose()["services"]
    exporter = services["mongodb-exporter"]
    assert exporter["image"].startswith("percona/mongodb_exporter:")
    assert "replicaSet=rs0" in " ".join(exporter["command"])
    assert "tls=true&tlsCAFile=/run/secrets/ca_crt" in " ".join(exporter["command"])  # mongod takes TLS only
    assert "ca_crt" in exporter["secrets"]
    assert exporter["environment"]["MONGODB_USER"] == "exporter"
    # From .env (as RabbitMQ's password is), never a value written in the file.
    assert exporter["environment"]["MONGODB_PASSWORD"].startswith("${MONGO_EXPORTER_PASSWORD:?")
    assert "MONGO_EXPORTER_PASSWORD" in services["mongo-init"]["environment"]
    assert 'admin.getUser("exporter")' in (DEPLOY / "mongo" / "replica-set.js").read_text()
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "mongodb"]
    assert job["static_configs"][0]["targets"] == ["mongodb-exporter:9216"]
    assert "MONGO_EXPORTER_PASSWORD=" in (DEPLOY / "README.md").read_text()


# -- patient data (contract section 12): TLS to the services, keys as files, the purge, volumes ----


def documented_urls() -> dict[str, list[str]]:
    """The amqp-url and mongodb-uri the README's commands write, for compose and for Kubernetes,
    with the shell's variables as the commands set them."""
    text = (DEPLOY / "README.md").read_text().replace("\\\n", " ")
    compose_ca = re.search(r"^ca=(\S+)$", text, re.MULTILINE)
    k8s_ca = re.search(r" ca=(cafile=\S+)", text)
    assert compose_ca and k8s_ca
    urls: dict[str, list[str]] = {"amqp-url": [], "mongodb-uri": []}
    for template, args, file in re.findall(r"printf '([^']*)' ((?:\"[^\"]*\" ?)+)> (amqp-url|mongodb-uri)", text):
        shell = {"$rmq": "RMQ", "$mongo": "MONGO", "$ca": compose_ca.group(1)}
        values = [shell[a] for a in re.findall(r'"([^"]*)"', args)]
        urls[file].append(template % tuple(values))
    for name, value in re.findall(r"--from-literal=(amqp-url|mongodb-uri)=\"([^\"]*)\"", text):
        urls[name].append(value.replace("$ca", k8s_ca.group(1)).replace("$n", "n.example").replace("$m", "m.example"))
    return urls


def test_paypost_reaches_rabbitmq_and_mongodb_over_tls_only() -> None:
    from paypost.infra.runtime.settings import amqp_nodes

    urls = documented_urls()
    assert len(urls["amqp-url"]) == 2 and len(urls["mongodb-uri"]) == 2  # compose's and Kubernetes'
    for url in urls["amqp-url"]:
        nodes = amqp_nodes(url)  # one cluster: the same options for each node
        assert len(nodes) == 3
        assert all(n.startswith("amqps://") and ":5671/" in n and "cafile=/run/secrets/" in n for n in nodes), url
    for url in urls["mongodb-uri"]:
        assert "tls=true" in url and "tlsCAFile=/run/secrets/" in url, url
    # The CA the URLs name is mounted where they say.
    assert "ca_crt" in compose()["services"]["api-1"]["secrets"]
    assert "ca.crt" in documented_secrets()["paypost"]


def test_the_brokers_and_the_database_take_no_plain_connection() -> None:
    configs = [(DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text(),
               resources("ConfigMap")["rabbitmq"]["data"]["20-paypost.conf"]]
    for config in configs:
        settings = dict(line.split(" = ", 1) for line in config.splitlines() if " = " in line
                        and not line.startswith("#"))
        assert settings["listeners.tcp"] == "none"
        assert settings["listeners.ssl.default"] == "5671"
        assert {"ssl_options.cacertfile", "ssl_options.certfile", "ssl_options.keyfile"} <= settings.keys()
        assert "management.tcp.port" not in settings and settings["management.ssl.port"] == "15671"
    ports = {p["port"] for p in resources("Service")["rabbitmq-nodes"]["spec"]["ports"]}
    assert 5671 in ports and 5672 not in ports
    mongod_commands = [compose()["services"]["mongo-1"].get("command") or compose()["services"]["mongo-2"]["command"],
                       resources("StatefulSet")["mongodb"]["spec"]["template"]["spec"]["containers"][0]["args"]]
    for command in mongod_commands:
        assert command[command.index("--tlsMode") + 1] == "requireTLS"
        assert "--tlsCertificateKeyFile" in command and "--tlsCAFile" in command
    # What talks to mongod besides paypost (health checks, the replica set's init) talks TLS too.
    mongo_clients = [" ".join(compose()["services"]["mongo-1"]["healthcheck"]["test"]),
                     " ".join(compose()["services"]["mongo-init"]["entrypoint"])]
    for workload in workloads():
        for container in containers(workload):
            if container.get("image", "").startswith("mongo"):
                mongo_clients += [" ".join(container[probe]["exec"]["command"])
                                  for probe in ("readinessProbe", "livenessProbe") if probe in container]
                if container["name"] == "mongosh":
                    mongo_clients.append(" ".join(container["command"]))
    assert len(mongo_clients) == 5
    for client in mongo_clients:
        assert "--tls " in client or "tls=true" in client, client


def test_the_secret_key_and_the_audit_key_are_files_every_paypost_process_reads() -> None:
    keys = {"PAYPOST_SECRET_KEY_FILE", "PAYPOST_AUDIT_KEY_FILE"}
    for name, service in compose()["services"].items():
        if name.startswith(("api-", "worker-")) or name == "purge":
            assert keys <= compose_environment(service).keys(), name
    for workload in [*resources("Deployment").values(), *resources("CronJob").values()]:
        for container in containers(workload):
            env = kubernetes_environment(container)
            assert keys <= env.keys(), workload["metadata"]["name"]
            assert {env[key].rpartition("/")[2] for key in keys} <= documented_secrets()["paypost"]
    found = paypost_variables_set()
    assert "PAYPOST_SECRET_KEY" not in found and "PAYPOST_AUDIT_KEY" not in found  # never a value


def test_the_purge_runs_once_a_day_with_what_paypost_runs_with() -> None:
    cron = resources("CronJob")["paypost-purge"]
    minute, hour, *every = cron["spec"]["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and every == ["*", "*", "*"]  # daily, at a fixed time
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    purge = next(containers(cron))
    api = resources("Deployment")["paypost-api"]["spec"]["template"]["spec"]["containers"][0]
    assert purge["args"] == ["purge", "--daily"] and purge["image"] == api["image"]  # under the workers' lease
    assert purge["envFrom"] == api["envFrom"]
    assert pod_spec(cron)["securityContext"]["runAsNonRoot"] is True
    service = compose()["services"]["purge"]
    loop = " ".join(service["entrypoint"])
    assert "paypost purge --daily" in loop and "sleep 3600" in loop  # hourly asks; the lease purges once a day
    assert service["image"] == compose()["services"]["api-1"]["image"]


def test_the_database_and_broker_volumes_ask_for_encrypted_storage() -> None:
    for name in ("mongodb", "rabbitmq"):
        claims = resources("StatefulSet")[name]["spec"]["volumeClaimTemplates"]
        assert [claim["spec"].get("storageClassName") for claim in claims] == ["encrypted"], name
    text = (DEPLOY / "README.md").read_text()
    section = text[text.index("## Encryption at rest"):]
    section = section[:section.index("\n## ", 1)]
    for needed in ("StorageClass `encrypted`", "LUKS", "MongoDB Community", "164.312", "Backups"):
        assert needed in section, needed
