"""The monitoring kit (manifests/components/monitoring) and the disruption budget component.

The alert rules go through Prometheus' own tool: `promtool check rules` and the unit tests of
`alerts.test.yml` (`promtool test rules`). promtool comes with Debian's `prometheus` package; without it
these tests are skipped and say so, except where AUTOSCENE_REQUIRE_PROMTOOL=1 (CI), where they fail.

Every metric the rules and the dashboard query is checked against what the operator exports: the
prometheus-client registry once `autoscene.metrics` is imported, not a list kept here.
"""

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import autoscene.metrics  # noqa: F401  (registers the operator's metrics)

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
COMPONENTS = MANIFESTS / "components"
MONITORING = COMPONENTS / "monitoring"
DISRUPTION_BUDGET = COMPONENTS / "disruption-budget"
RULES = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "autoscene-operator.json"
README = REPO / "README.md"
CONTROL_PLANE_KUBECTL = REPO / "build" / "control-plane" / "v1.37.2" / "kubectl"
REQUIRE_PROMTOOL = "AUTOSCENE_REQUIRE_PROMTOOL"
COMPONENT_API = "kustomize.config.k8s.io/v1alpha1"
NAMESPACE = "autoscene-system"
JOB = "autoscene-operator"
# Labels Prometheus adds to every scraped series (the PodMonitor's target labels), and `le` of buckets.
TARGET_LABELS = {"job", "namespace", "pod", "instance", "container", "endpoint", "le"}
# Series Prometheus itself makes for every target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


# Helpers -------------------------------------------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (apt-get install prometheus): the alert rules are not checked"
        if os.environ.get(REQUIRE_PROMTOOL) == "1":
            pytest.fail(f"{REQUIRE_PROMTOOL}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def kubectl() -> str:
    if CONTROL_PLANE_KUBECTL.is_file():
        return str(CONTROL_PLANE_KUBECTL)
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders the components")
    return found


def render(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return [document for document in yaml.safe_load_all(done.stdout) if document is not None]


def with_operator(tmp_path: Path, *components: Path) -> list[dict[str, Any]]:
    """The operator's manifests with `components`, as a user's kustomization composes them."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = [os.path.relpath(path, overlay) for path in (MANIFESTS, *components)]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": relative[:1],
        "components": relative[1:],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(overlay)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rule_groups() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULES.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return rule["spec"]["groups"]


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels") or []  # a collapsed row holds its panels


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in panels(dashboard()) for target in panel.get("targets") or []]


def rule_queries() -> list[str]:
    return [rule["expr"] for group in rule_groups() for rule in group["rules"]]


def selectors(query: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Each `metric{...}` selector of a PromQL query: its name and matchers (label -> (op, value))."""
    return [
        (name, {label: (op, value) for label, op, value in MATCHER.findall(matchers)})
        for name, matchers in SELECTOR.findall(query)
    ]


def exported() -> dict[str, set[str]]:
    """Every series name the operator's process exports, with the label names of its metric.

    From the registry: the family's type says which names it exposes (a Counter `x` is `x_total` and
    `x_created`). Label names come from the collector objects, since a labelled metric with no child
    yet exposes no sample to read them from."""
    names: dict[str, set[str]] = {}
    by_name = getattr(REGISTRY, "_names_to_collectors", {})
    for family in REGISTRY.collect():
        collector = by_name.get(family.name)
        labels = set(getattr(collector, "_labelnames", ()))
        labels |= {label for sample in family.samples for label in sample.labels}
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = labels
    return names


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


# The alert rules -----------------------------------------------------------------------------------


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    """The PrometheusRule's rules as the plain rule file promtool reads, beside its unit tests."""
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return path


def test_rules_pass_promtool_check(rules_file: Path) -> None:
    done = run(promtool(), "check", "rules", str(rules_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found" in done.stdout


def test_alert_unit_tests_pass(rules_file: Path) -> None:
    done = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=rules_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == ["rules.yml"]
    checks = [check for test in cases["tests"] for check in test.get("alert_rule_test") or []]
    firing = {check["alertname"] for check in checks if check.get("exp_alerts")}
    quiet = {check["alertname"] for check in checks if not check.get("exp_alerts")}
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"
    assert firing | quiet <= names, "tests of alerts that do not exist"


def test_the_alerts_cover_what_a_person_is_paged_for() -> None:
    queried = {rule["alert"]: {name for name, _ in selectors(rule["expr"])} for rule in alerts()}
    wanted = {
        "AutosceneRunsFailing": "autoscene_invocations_finished_total",
        "AutosceneQueueGrowing": "autoscene_invocations_in_flight",
        "AutosceneNoLeader": "autoscene_leader",
        "AutosceneWatchStalled": "autoscene_watch_last_event_timestamp_seconds",
        "AutosceneHandlerErrors": "autoscene_handler_errors_total",
    }
    for alert, metric in wanted.items():
        assert metric in queried.get(alert, set()), f"{alert} should watch {metric}"


def test_alerts_say_how_urgent_and_what_to_do() -> None:
    readme = README.read_text()
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Autoscene[A-Z][A-Za-z]+", name)
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80, name
        assert rule.get("for"), f"{name} fires on a single evaluation"
        assert f"`{name}`" in readme, f"README does not explain {name}"


# The metrics they query ----------------------------------------------------------------------------


def test_exported_names_come_from_the_registry() -> None:
    names = exported()
    assert names["autoscene_invocations_created_total"] == {"action"}
    assert "autoscene_invocations_created" not in names  # a Counter is exposed with _total
    assert {"autoscene_invocation_duration_seconds_bucket", "autoscene_leader"} <= set(names)


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_queried_metric_is_exported_by_the_operator(source: str) -> None:
    queries = rule_queries() if source == "rules" else dashboard_queries()
    assert queries
    names = exported()
    for query in queries:
        found = selectors(query)
        assert found, f"no metric selector in {query!r}"
        for name, matchers in found:
            if name in SCRAPE_SERIES:
                continue
            assert name in names, f"{source}: {name} is not a metric the operator exports"
            unknown = set(matchers) - names[name] - TARGET_LABELS
            assert not unknown, f"{source}: {name} has no label {sorted(unknown)}"
            # Scoped to the operator's scrape job, so no other exporter's series creep in.
            assert matchers.get("job") == ("=", JOB), f"{source}: {name} without job={JOB!r} in {query!r}"
        for token in re.findall(r"\bautoscene_[a-z0-9_]+", query):
            assert token in names, f"{source}: {token} is not a metric the operator exports"


def test_phase_values_queried_are_phases_the_operator_reports() -> None:
    tracked = set(autoscene.metrics.InFlight.TRACKED)
    for query in rule_queries() + dashboard_queries():
        for name, matchers in selectors(query):
            if name == "autoscene_invocations_in_flight" and "phase" in matchers:
                op, value = matchers["phase"]
                phases = set(value.split("|")) if op == "=~" else {value}
                assert phases <= tracked, f"{query!r}: the gauge tracks only {sorted(tracked)}"


# The dashboard ---------------------------------------------------------------------------------------


def test_dashboard_shows_runs_durations_queue_and_latency() -> None:
    board = dashboard()
    assert board["uid"] == "autoscene-operator" and board["title"]
    queried = {name for query in dashboard_queries() for name, _ in selectors(query)}
    assert {
        "autoscene_invocations_in_flight",  # runs by phase, queue depth
        "autoscene_invocations_finished_total",  # runs by phase
        "autoscene_invocation_duration_seconds_bucket",  # durations
        "autoscene_dispatch_latency_seconds_bucket",  # registration -> Job
        "autoscene_leader",
        "autoscene_handler_errors_total",
    } <= queried
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("description"), (
            f"panel {panel['id']} needs a title and a description"
        )
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, f"{panel['title']} is wider than the dashboard"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


# The components ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder, kinds",
    [
        (MONITORING, {"ConfigMap", "PodMonitor", "PrometheusRule"}),
        (DISRUPTION_BUDGET, {"PodDisruptionBudget"}),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else "",
)
def test_component_renders_its_kinds(folder: Path, kinds: set[str]) -> None:
    (kustomization,) = yaml.safe_load_all((folder / "kustomization.yaml").read_text())
    assert (kustomization["apiVersion"], kustomization["kind"]) == (COMPONENT_API, "Component")
    rendered = render(folder)
    assert {obj["kind"] for obj in rendered} == kinds
    for obj in rendered:
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "autoscene", obj["kind"]
        if obj["apiVersion"] in ("v1", "policy/v1"):
            validate_builtin(obj)


def validate_builtin(obj: Mapping[str, Any]) -> None:
    try:
        import kubernetes_validate
        from kubernetes_validate import utils
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("kubernetes-validate is not installed")
    try:
        kubernetes_validate.validate(dict(obj), utils.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")


def test_monitoring_scrapes_every_operator_replica(tmp_path: Path) -> None:
    objects = with_operator(tmp_path, MONITORING)
    deployment, monitor = one(objects, "Deployment"), one(objects, "PodMonitor")
    pod = deployment["spec"]["template"]
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    # Pods, not a Service's endpoints: the standby is scraped too, ready or not.
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports, "the PodMonitor names a port the operator does not have"
    assert f"--metrics-port={ports[endpoint['port']]}" in container["command"]
    # The job label the rules and the dashboard select on is the Pods' label named by jobLabel.
    assert pod["metadata"]["labels"][monitor["spec"]["jobLabel"]] == JOB
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["name"] == "autoscene-grafana-dashboard"  # no hash suffix
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["autoscene-operator.json"]) == dashboard()


def test_disruption_budget_lets_one_replica_go_at_a_time(tmp_path: Path) -> None:
    objects = with_operator(tmp_path, DISRUPTION_BUDGET)
    deployment, budget = one(objects, "Deployment"), one(objects, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # One at a time, so the standby takes the Lease over; never zero, which would block every drain.
    assert budget["spec"]["maxUnavailable"] == 1 < deployment["spec"]["replicas"]
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_components_compose_with_each_other(tmp_path: Path) -> None:
    objects = with_operator(tmp_path, MONITORING, DISRUPTION_BUDGET)
    kinds = [obj["kind"] for obj in objects]
    for kind in ("Deployment", "PodMonitor", "PrometheusRule", "ConfigMap", "PodDisruptionBudget"):
        assert kinds.count(kind) == 1, kind


def test_components_are_opt_in() -> None:
    (base,) = yaml.safe_load_all((MANIFESTS / "kustomization.yaml").read_text())
    assert not base.get("components"), "`kubectl apply -k manifests` must not need the Prometheus Operator"
    readme = README.read_text()
    for folder in (MONITORING, DISRUPTION_BUDGET):
        assert str(folder.relative_to(REPO)) in readme, f"README does not show how to add {folder.name}"


def test_runs_in_flight_are_counted_by_their_last_phase() -> None:
    """The in-flight gauge, kept up to date change by change, equals a count of each run's last phase
    (the reference), through starts, repeats, ends, deletions and phases it does not track."""
    in_flight = autoscene.metrics.InFlight()
    last: dict[str, str | None] = {}
    choices = [None, "Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"]
    steps = random.Random(7)
    for _ in range(3000):
        uid = f"run-{steps.randrange(40)}"
        if steps.random() < 0.1:
            in_flight.forget(uid)
            last.pop(uid, None)
            continue
        phase = steps.choice(choices)
        in_flight.observe(uid, phase)
        last[uid] = phase or "Pending"
        for tracked in autoscene.metrics.InFlight.TRACKED:
            expected = sum(1 for seen in last.values() if seen == tracked)
            sample = REGISTRY.get_sample_value("autoscene_invocations_in_flight", {"phase": tracked})
            assert sample == expected
    in_flight.clear()
    assert REGISTRY.get_sample_value("autoscene_invocations_in_flight", {"phase": "Running"}) == 0
