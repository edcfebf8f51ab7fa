"""The Prometheus alert rules (deploy/prometheus/alerts.yml), checked by Debian's promtool (make test
installs it: scripts/install-test-tools.sh), and their names against what /metrics serves."""
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.cluster import ROOT

RULES = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")


def promtool(*args):
    if PROMTOOL is None:
        pytest.fail("promtool is missing: scripts/install-test-tools.sh installs it (make test runs it)")
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_fire_when_they_should_and_not_before():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_the_scrape_configs_are_valid(config):
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def served_metrics() -> set[str]:
    """The metric names served: the system's (orderhub/metrics.py), the API's requests
    (orderhub/request_metrics.py) and each worker's own (orderhub/process_metrics.py), with the
    suffixes a counter (_total) and a histogram (_bucket, _sum, _count) are served under."""
    served = set()
    for module in ("metrics.py", "request_metrics.py", "process_metrics.py"):
        served |= set(re.findall(r'"(orderhub_[a-z_]+)"', (ROOT / "orderhub" / module).read_text()))
    return served | {name + suffix for name in served for suffix in ("_total", "_bucket", "_sum", "_count")}


def test_every_metric_a_rule_reads_is_one_we_serve():
    served = served_metrics()
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        for name in re.findall(r"\borderhub_[a-z_]+", rule["expr"]):
            assert name in served, f"{rule['alert']} reads {name}, which /metrics does not serve"


def test_the_dashboard_reads_only_metrics_we_serve_and_has_the_panels_asked_for():
    import json

    served = served_metrics()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "orderhub.json").read_text())
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for wanted in ("by outcome", "step latency", "backlog", "dead letters"):
        assert wanted in titles, f"no panel for {wanted}"
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    provisioned = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
                                 .read_text())
    assert uids == {source["uid"] for source in provisioned["datasources"]}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\borderhub_[a-z_]+", target["expr"]):
                assert name in served, f"panel {panel['title']!r} reads {name}, which /metrics does not serve"


def test_the_observability_profile_mounts_what_exists():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert compose[name]["profiles"] == ["observability"]
        for volume in compose[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
