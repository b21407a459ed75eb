"""What the parts expose: metric names by Prometheus' conventions, the dashboard's and
Prometheus' expressions naming only metrics the code exposes, and /healthz's document."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from civsync.runner import EngineProcesses
from connectors import resilience
from connectors.capture import metrics as capture_metrics
from connectors.merge import metrics as merge_metrics
from engine.errors import ConfigError
from tests.http_probe import free_port, get

DOCKER = Path(__file__).resolve().parents[2] / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "civsync.json"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = DOCKER / "prometheus"
PERSONAL = {"pin", "person", "key", "name", "full_name", "event_id", "value"}
SYNTHETIC = {"up"}  # series Prometheus itself adds to every target


def _ours() -> list[MetricWrapperBase]:
    modules = (capture_metrics, merge_metrics, resilience)
    found = [v for m in modules for v in vars(m).values() if isinstance(v, MetricWrapperBase)]
    return list({id(metric): metric for metric in found}.values())


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """The sample names a part really exposes, read from a scrape of ``serve``: each labelled
    metric gets a child first (a metric without one has no sample yet)."""
    for metric in _ours():
        labels = metric._labelnames
        if labels:
            metric.labels(*("unit-scrape" for _ in labels))
    port = free_port()
    capture_metrics.serve(port, "unit-scrape")
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_end_in_total_and_nothing_else_is_exposed_twice(exposed: set[str]) -> None:
    ours = {name for name in exposed if name.startswith("civsync_")}
    assert "civsync_capture_events_total" in ours
    assert "civsync_part_restarts_total" in ours
    assert "civsync_merge_batch_seconds_bucket" in ours
    assert not {name for name in ours if name.endswith(("_created", "_total_total"))}
    for metric in _ours():
        name, kind = metric._name, metric._type
        if kind == "counter":
            assert f"{name}_total" in exposed, name
            assert name not in exposed, name
        if kind == "histogram":
            assert {f"{name}_bucket", f"{name}_sum", f"{name}_count"} <= exposed, name


def test_names_carry_base_units_and_labels_no_personal_data() -> None:
    metrics = _ours()
    declared = {metric._name for metric in metrics}
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("civsync_")}
    assert families <= declared, "every civsync metric is declared in a metrics module"
    for metric in metrics:
        name, kind = metric._name, metric._type
        assert name.startswith("civsync_"), name
        assert not re.search(r"_(ms|milliseconds|micro\w*|minutes|hours|kb|mb|kib|mib)\b", name)
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name
        if "lag" in name or "lsn" in name or "timestamp" in name:
            assert name.endswith(("_bytes", "_seconds")), name
        assert not PERSONAL & set(metric._labelnames), name


def _metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, once strings, label
    matchers, ranges and grouping clauses are gone, that are not functions or keywords."""
    text = re.sub(r'"[^"]*"', "", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = re.findall(r"(?<![\w:])[A-Za-z_:][\w:]*+(?!\s*\()", text)
    return {w for w in words if w not in {"and", "or", "unless", "bool", "offset"}}


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _dashboard_expressions() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _alert_expressions() -> list[str]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    rules = [yaml.safe_load((PROMETHEUS / f).read_text()) for f in config["rule_files"]]
    return [r["expr"] for doc in rules for group in doc["groups"] for r in group["rules"]]


def test_the_name_reader_finds_metrics_and_skips_functions_and_labels() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (store, le) (rate(a_seconds_bucket{job="x"}[5m])))'
        " or time() - b_timestamp_seconds > 60"
    )
    assert _metric_names(expression) == {"a_seconds_bucket", "b_timestamp_seconds"}


@pytest.mark.parametrize(
    ("source", "expressions"),
    [("dashboard", _dashboard_expressions), ("alerts", _alert_expressions)],
)
def test_every_expression_reads_metrics_the_code_exposes(
    exposed: set[str], source: str, expressions: Any
) -> None:
    found = [e for e in expressions() if e.strip()]
    assert found, f"the {source} has expressions"
    read = set().union(*(_metric_names(e) for e in found))
    assert read - exposed - SYNTHETIC == set(), f"{source} reads metrics nobody exposes"


def test_the_dashboard_shows_what_an_operator_watches() -> None:
    read = set().union(*(_metric_names(e) for e in _dashboard_expressions()))
    assert {
        "up",
        "civsync_part_last_step_timestamp_seconds",
        "civsync_capture_events_total",
        "civsync_capture_slot_lag_bytes",
        "civsync_merge_edits_total",
        "civsync_merge_conflicts_total",
        "civsync_capture_quarantined_total",
        "civsync_merge_quarantined_total",
        "civsync_sink_quarantined_total",
        "civsync_sink_rows_total",
        "civsync_part_restarts_total",
        "civsync_merge_batch_seconds_bucket",
        "civsync_sink_batch_seconds_bucket",
    } <= read


def test_every_panel_reads_the_provisioned_datasource() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    panels = [p for p in _dashboard()["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_healthz_is_a_json_document_503_until_a_step_and_again_once_stale() -> None:
    port = free_port()
    capture_metrics.serve(port, "unit-health", stale_after_s=0.3)
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    assert (status, json.loads(body)) == (
        503,
        {"part": "unit-health", "healthy": False, "last_step_age_s": None, "stale_after_s": 0.3},
    )
    capture_metrics.record_step("unit-health")
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    assert json.loads(body)["healthy"] is True
    time.sleep(0.4)
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 503
    assert json.loads(body)["last_step_age_s"] >= 0.3


def test_a_metrics_port_in_use_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            capture_metrics.serve(port, "unit-busy")


def test_civsync_run_gives_each_part_its_own_port_across_restarts() -> None:
    engine = EngineProcesses(None, mergers=2, metrics_port_base=9400)
    assert engine.metrics_ports() == {
        "capture-civil": 9400,
        "capture-population": 9401,
        "merger-0": 9402,
        "merger-1": 9403,
        "sink-civil": 9404,
        "sink-population": 9405,
    }
    assert engine._metrics_args("merger-1") == [
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        "9403",
    ]
    assert EngineProcesses(None).metrics_ports() == {}
    assert EngineProcesses(None)._metrics_args("merger") == []
