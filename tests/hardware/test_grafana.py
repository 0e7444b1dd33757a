"""hardware/grafana/smsa.json: a Grafana dashboard whose every query names metrics the hub or
the agent exports (as their READMEs list them), on the dashboard's Prometheus data source."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "hardware" / "grafana" / "smsa.json"
SUFFIXES = ("_bucket", "_count", "_sum")


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in dashboard["panels"] for t in panel.get("targets", [])]


def exported(name: str, documented: str) -> bool:
    base = next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)), name)
    if base in documented or name in documented:
        return True
    # families the READMEs document by pattern, with their members named
    patterns = {
        r"smsa_agent_meter_(\w+)_total": "smsa_agent_meter_<counter>_total",
        r"smsa_ingest_(\w+)_total": "smsa_ingest_<name>_total",
        r"smsa_api_(\w+)_total": "`smsa_api_topups_total`",
    }
    for pattern, family in patterns.items():
        match = re.fullmatch(pattern, name)
        if match and family in documented and re.search(rf"\b{match[1]}\b", documented):
            return True
    return False


def test_every_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    documented = (ROOT / "hub" / "README.md").read_text() + (
        ROOT / "agent" / "README.md"
    ).read_text()
    names = {
        name
        for target in targets(dashboard)
        for name in re.findall(r"\b(?:smsa|process|python)_[a-z_]+", target["expr"])
    }
    assert {"smsa_ingest_latency_seconds_bucket", "smsa_agent_poll_seconds_bucket"} <= names
    missing = sorted(name for name in names if not exported(name, documented))
    assert missing == [], missing


def test_every_panel_uses_the_chosen_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
