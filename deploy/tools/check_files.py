"""Consistency checks of deploy/ that no off-the-shelf validator makes.

    python deploy/tools/check_files.py dashboard PATH OUT_RULES   # JSON layout; PromQL → rules file
    python deploy/tools/check_files.py compose PATH               # references inside compose.yaml
    python deploy/tools/check_files.py rules-sync ALERTS PROMETHEUSRULE

``dashboard`` writes every query of the dashboard, Grafana variables replaced, as
recording rules to OUT_RULES so that ``promtool check rules`` parses the PromQL.
Needs PyYAML. Exits 1 with one line per problem.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# Grafana's variables → something PromQL parses, with the same shape.
_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
              "${datasource}": "prometheus"}


def check_dashboard(path: Path, out_rules: Path) -> list[str]:
    problems: list[str] = []
    dashboard = json.loads(path.read_text())
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dashboard:
            problems.append(f"{path}: no {key!r}")
    ids: set[int] = set()
    cells: dict[tuple[int, int], str] = {}
    rules = []
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"{path}: panel {title!r}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        pos = panel.get("gridPos", {})
        if not {"x", "y", "w", "h"} <= set(pos) or pos["x"] + pos["w"] > 24:
            problems.append(f"{path}: panel {title!r}: bad gridPos {pos}")
            continue
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                if (x, y) in cells:
                    problems.append(f"{path}: panel {title!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"{path}: panel {title!r} has no query")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if not expr:
                problems.append(f"{path}: panel {title!r} target {target.get('refId')}: no expr")
                continue
            for name, value in _VARIABLES.items():
                expr = expr.replace(name, value)
            expr = re.sub(r"\$\{?(\w+)\}?", ".*", expr)  # template variables in matchers
            rules.append({"record": f"dashboard:panel_{panel['id']}:{target['refId']}",
                          "expr": expr})
    out_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return problems


def check_compose(path: Path) -> list[str]:
    problems: list[str] = []
    compose = yaml.safe_load(path.read_text())
    base = path.parent
    services: dict[str, Any] = compose.get("services", {})
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            problems.append(f"{path}: service {name}: neither image nor build")
        depends = service.get("depends_on", {})
        for dependency in depends if isinstance(depends, list | dict) else []:
            if dependency not in services:
                problems.append(f"{path}: service {name} depends on unknown {dependency!r}")
        build = service.get("build")
        if isinstance(build, dict):
            context = base / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{path}: service {name}: no Dockerfile in {context}")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    problems.append(f"{path}: service {name}: bind mount {source} does not exist")
            elif source not in volumes:
                problems.append(f"{path}: service {name}: volume {source!r} not declared")
    return problems


def check_rules_sync(alerts: Path, prometheus_rule: Path) -> list[str]:
    groups = yaml.safe_load(alerts.read_text())["groups"]
    resource = yaml.safe_load(prometheus_rule.read_text())
    if resource.get("spec", {}).get("groups") != groups:
        return [f"{prometheus_rule}: spec.groups differ from {alerts}; copy them over"]
    return []


def main(argv: list[str]) -> int:
    command, *paths = argv
    if command == "dashboard":
        problems = check_dashboard(Path(paths[0]), Path(paths[1]))
    elif command == "compose":
        problems = check_compose(Path(paths[0]))
    elif command == "rules-sync":
        problems = check_rules_sync(Path(paths[0]), Path(paths[1]))
    else:
        raise SystemExit(f"unknown check {command!r}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
