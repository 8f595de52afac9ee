"""Metric names used by deploy/ (dashboard, rules, autoscaler) and names a /metrics page exports.

Runs in the pytest process; pure text processing, no network. The PromQL scan is a tokenizer,
not a parser: strings, label matchers, ranges and grouping-label lists are cut out first, then
every identifier that is not a function call, keyword or number is a metric name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2"}  # fmt: skip
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_TOKENS = re.compile(
    r"(?P<number>(?<![A-Za-z_:0-9])(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?))"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names referenced by one PromQL expression."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    names = set()
    for m in _TOKENS.finditer(text):
        ident = m.group("ident")
        if ident and not m.group("call") and ident not in KEYWORDS:
            names.add(ident)
    return names


def rules_names(rules_file: Path) -> tuple[set[str], set[str]]:
    """(names used by rule expressions, names recorded by rules) of a Prometheus rules file."""
    used, recorded = set(), set()
    for group in yaml.safe_load(rules_file.read_text())["groups"]:
        for rule in group["rules"]:
            used |= promql_metric_names(rule["expr"])
            if "record" in rule:
                recorded.add(rule["record"])
    return used, recorded


def dashboard_exprs(dashboard_file: Path) -> list[str]:
    """Every PromQL `expr` in a Grafana dashboard JSON (panels nested in rows included)."""
    exprs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str) and node["expr"]:
                exprs.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(dashboard_file.read_text()))
    return exprs


def autoscaler_names(objects: list[dict], adapter_file: Path) -> set[str]:
    """Metric names HPAs ask for, and the series prometheus-adapter reads to serve them."""
    names = set()
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            for metric in obj["spec"].get("metrics", []):
                source = metric.get(metric["type"][0].lower() + metric["type"][1:], {})
                if "metric" in source:
                    names.add(source["metric"]["name"])
    for rule in yaml.safe_load(adapter_file.read_text())["rules"]["custom"]:
        names |= promql_metric_names(rule["seriesQuery"])
    return names


def exported_names(exposition: str) -> set[str]:
    """Series names a Prometheus text page exposes or declares (a labelled metric with no
    children yet has a # TYPE line but no samples; its names still count)."""
    names = set()
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count"),
    }
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names
