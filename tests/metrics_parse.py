#!/usr/bin/env python3
"""Parse a node's /metrics with the Prometheus project's own Python parser
(prometheus_client's OpenMetrics parser, which fails on any malformed line)
and print every sample as JSON lines: {"family", "type", "name", "labels", "value"}.

Usage: metrics_parse.py URL
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        print(json.dumps({"family": family.name, "type": family.type, "name": None, "labels": {}, "value": None}))
        for s in family.samples:
            print(json.dumps({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value}))


if __name__ == "__main__":
    main()
