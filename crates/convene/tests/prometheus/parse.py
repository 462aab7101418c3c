"""Reads Prometheus text from stdin with the official Python client's parser and prints every sample as JSON lines:
{"name": ..., "labels": {...}, "value": ...}. A document the parser refuses makes it exit non-zero."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"family": family.name, "type": family.type, "name": sample.name,
                          "labels": sample.labels, "value": sample.value}))
