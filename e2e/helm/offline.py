"""Helm's engine without a cluster (helm-python-sdk), for e2e/tests/chart.rs.

    offline.py render CHART_DIR [--values JSON] [--name RELEASE] [--namespace NS]
    offline.py lint CHART_DIR [--values JSON]

`render` prints {"manifests": {template path: rendered text}} as `helm template` renders them (values checked
against the chart's values.schema.json, as an install does); `lint` prints the linter's report as
`helm lint --strict` makes it. On failure both print {"error": ..., "detail": ...} and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import helm_python as helm


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["render", "lint"])
    parser.add_argument("chart")
    parser.add_argument("--values", default="{}", help="user-supplied values as a JSON object")
    parser.add_argument("--name", default="berth")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    values = json.loads(args.values)
    try:
        if args.action == "lint":
            result = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
        else:
            with helm.Chart.load(args.chart) as chart:
                manifests = chart.render(
                    values, name=args.name, namespace=args.namespace, is_install=True
                )
            result = {"manifests": manifests}
    except helm.HelmError as exc:
        json.dump({"error": type(exc).__name__, "detail": getattr(exc, "detail", None) or str(exc)}, sys.stdout)
        print()
        return 1
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
