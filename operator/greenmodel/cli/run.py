"""`greenmodel run`: start the operator (kopf's embedded operator underneath).

    greenmodel run [--namespace NS]... [--all-namespaces] [--config FILE] [--metrics-port N]

Without --namespace the operator serves all namespaces (cluster-wide). It reads its own
configuration from --config (the Helm chart mounts the same file from a ConfigMap) and
reloads it when the file changes (a ConfigMap update reaches a mounted file without restart).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys


def _in_pod() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run the operator against the current cluster",
        description="Run the greenmodel operator: reconcile GreenModels into GPU Deployments.")
    p.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                   help="serve only this namespace (repeatable); default: all namespaces")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="serve every namespace (the default when no --namespace is given)")
    env = os.environ.get
    p.add_argument("--config", metavar="FILE", default=env("GREENMODEL_CONFIG"),
                   help="operator config file (YAML); see examples/operator-config.yaml [$GREENMODEL_CONFIG]")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--metrics-port", type=int, default=int(env("GREENMODEL_METRICS_PORT", "8080")), metavar="N",
                   help="port of /metrics (and /healthz unless --health-port); 0: any free port; -1: off")
    p.add_argument("--health-port", type=int, default=int(env("GREENMODEL_HEALTH_PORT", "-1")), metavar="N",
                   help="separate port for /healthz (default: served on the metrics port)")
    p.add_argument("--metrics-address", default=env("GREENMODEL_METRICS_ADDRESS") or
                   ("0.0.0.0" if _in_pod() else "127.0.0.1"), metavar="ADDR",
                   help="bind address of the HTTP endpoints (default: 0.0.0.0 in a pod, else 127.0.0.1)")
    p.add_argument("--workers", type=int, default=8, metavar="N", help="concurrent reconcile passes")
    p.add_argument("--log-format", choices=("json", "text"), default=env("GREENMODEL_LOG_FORMAT", "json"))
    p.add_argument("--log-level", default=env("GREENMODEL_LOG_LEVEL", "INFO"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from greenmodel import observability
    from greenmodel.settings import SettingsError, load_settings

    observability.configure_logging(args.log_level, json_format=args.log_format == "json")
    log = logging.getLogger("greenmodel.run")
    if args.all_namespaces and args.namespace:
        print("greenmodel run: --all-namespaces and --namespace are mutually exclusive", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"greenmodel run: {exc}", file=sys.stderr)
        return 2

    from greenmodel import handlers

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's watch login reads it too

    runtime = handlers.Runtime.create(settings, config_path=args.config, kubeconfig=args.kubeconfig,
                                      workers=args.workers)
    if args.metrics_port >= 0:
        try:
            server = observability.serve_http(args.metrics_port, runtime.health, args.metrics_address)
        except OSError as exc:
            print(f"greenmodel run: cannot serve metrics on {args.metrics_address}:{args.metrics_port}: "
                  f"{exc.strerror}", file=sys.stderr)
            return 2
        log.info("serving /metrics and /healthz on %s:%d", args.metrics_address, server.server_port)
    if args.health_port >= 0 and args.health_port != args.metrics_port:
        hserver = observability.serve_http(args.health_port, runtime.health, args.metrics_address)
        log.info("serving /healthz on %s:%d", args.metrics_address, hserver.server_port)
    clusterwide = not args.namespace
    log.info("starting greenmodel operator (%s), timer %.0fs",
             "all namespaces" if clusterwide else "namespaces " + ",".join(args.namespace),
             settings.reconcile.timer_interval_seconds)
    try:
        asyncio.run(handlers.serve(runtime, namespaces=args.namespace, clusterwide=clusterwide))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    log.info("greenmodel operator stopped")
    return 0
