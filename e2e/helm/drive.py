"""Drives Helm's engine (helm-python-sdk: Helm v4's Go SDK behind a C ABI) for e2e/tests/helm.rs.

    drive.py --kubeconfig FILE --namespace NS ACTION RELEASE [--chart DIR] [--values JSON] [--revision N]

ACTION is install, upgrade, rollback (to --revision, or the previous one; prints the release's status after),
uninstall, status or history. On success the SDK's result is printed to stdout as
one JSON document and the exit status is 0. On failure a JSON document {"error": ..., "code": ..., "detail": ...}
goes to stdout, the exit status is 1, and Helm's own log (client-go errors included) is on stderr.

    drive.py as-helm3 < release-secret.json > release-secret.json

reads a release Secret (`kubectl get secret sh.helm.release.v1.NAME.vN -o json`) and writes it back as Helm 3
stored it: without the release's `apply_method`, so that Helm 4 upgrades it the Helm 3 way (client-side, with
three-way strategic merge patches) instead of with server-side apply.

Helm's log goes to stderr at INFO, or at DEBUG with HELM_DRIVE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import logging
import os
import sys

import helm_python as helm

# How long Helm's engine may take for one action (the Rust test allows the whole driver a little more).
TIMEOUT_SECONDS = 60


def as_helm3(secret: dict) -> dict:
    """The release Secret without `apply_method`: Secret data is base64 of Helm's base64 of gzipped JSON."""
    encoded = base64.b64decode(secret["data"]["release"])
    release = json.loads(gzip.decompress(base64.b64decode(encoded)))
    release.pop("apply_method", None)
    encoded = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    secret["data"]["release"] = base64.b64encode(encoded).decode()
    secret["metadata"].pop("managedFields", None)
    return secret


def main() -> int:
    if sys.argv[1:] == ["as-helm3"]:
        json.dump(as_helm3(json.load(sys.stdin)), sys.stdout)
        return 0

    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--chart")
    parser.add_argument("--values", default="{}", help="user-supplied values as a JSON object")
    parser.add_argument("--revision", type=int, help="the revision rollback returns to (default: the previous one)")
    parser.add_argument("action", choices=["install", "upgrade", "rollback", "uninstall", "status", "history"])
    parser.add_argument("release")
    args = parser.parse_args()

    level = logging.DEBUG if os.environ.get("HELM_DRIVE_DEBUG") == "1" else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="helm %(levelname)s %(message)s")
    helm.enable_logging(level)  # before the Config: the engine picks its logger up when the config is made

    values = json.loads(args.values)
    try:
        with helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace) as cfg:
            if args.action == "install":
                result = cfg.install(
                    args.chart,
                    args.release,
                    values,
                    create_namespace=True,
                    timeout=TIMEOUT_SECONDS,
                )
            elif args.action == "upgrade":
                result = cfg.upgrade(args.chart, args.release, values, timeout=TIMEOUT_SECONDS)
            elif args.action == "rollback":
                cfg.rollback(args.release, version=args.revision, timeout=TIMEOUT_SECONDS)
                result = cfg.status(args.release)
            elif args.action == "uninstall":
                result = cfg.uninstall(args.release, timeout=TIMEOUT_SECONDS)
            elif args.action == "status":
                result = cfg.status(args.release)
            else:
                result = cfg.history(args.release)
    except helm.HelmError as exc:
        json.dump(
            {
                "error": type(exc).__name__,
                "code": getattr(exc, "code", None),
                "detail": getattr(exc, "detail", None) or str(exc),
            },
            sys.stdout,
        )
        print()
        return 1
    finally:
        helm.disable_logging()
    json.dump(result, sys.stdout, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
