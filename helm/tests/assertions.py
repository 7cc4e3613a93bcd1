#!/usr/bin/env python3
"""Exact checks of the chart's renders, beyond what a schema can say.

    assertions.py CHART_DIR VALUES_DIR RENDER_DIR

For each value set VALUES_DIR/<set>.yaml, RENDER_DIR/<set>.yaml is its `helm template
--include-crds` output (release `arqonbus`, namespace `arqonbus`). The expectations come
from the chart's values.yaml merged with the set, plus literal ones for each set. Prints
one line per failed check and a count; exit status 1 when any failed.
"""

import base64
import copy
import os
import sys

import yaml

RELEASE = "arqonbus"
NAMESPACE = "arqonbus"
COMPONENTS = ["edge", "policy", "dispatcher", "operators"]
GRPC_COMPONENTS = ["policy", "dispatcher", "operators"]

passed = 0
failed = []


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failed.append(f"{current}: {what}")


def eq(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def merge(base, over):
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def find(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found[0] if len(found) == 1 else None


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    entry = env_of(container).get(name)
    return None if entry is None else entry.get("value")


NATS_FILES_DIR = "/etc/arqonbus/nats"
NATS_AUTH_VARS = ["ARQONBUS_NATS_USER", "ARQONBUS_NATS_PASSWORD", "ARQONBUS_NATS_TOKEN",
                  "ARQONBUS_NATS_NKEY_SEED", "ARQONBUS_NATS_CREDS_FILE"]
NATS_TLS_VARS = ["ARQONBUS_NATS_TLS_CA_FILE", "ARQONBUS_NATS_TLS_CERT_FILE", "ARQONBUS_NATS_TLS_KEY_FILE",
                 "ARQONBUS_NATS_TLS_REQUIRED"]
# Variables whose value is a secret: only ever a secretKeyRef.
SECRET_VARS = ["ARQONBUS_AUTH_JWT_SECRET", "ARQONBUS_AUTH_JWT_PUBLIC_KEY", "ARQONBUS_SERVICE_TOKEN",
               "ARQONBUS_NATS_PASSWORD", "ARQONBUS_NATS_TOKEN", "ARQONBUS_NATS_NKEY_SEED"]


# Settings each service gets from a value: (variable, dotted path in the values).
VALUE_ENV = {
    "edge": [
        ("ARQONBUS_MAX_CONNECTIONS_PER_TENANT", "edge.maxConnectionsPerTenant"),
        ("ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT", "edge.maxFleetConnectionsPerTenant"),
        ("ARQONBUS_MAX_CHANNELS_PER_CONNECTION", "edge.maxChannelsPerConnection"),
        ("ARQONBUS_MAX_JSON_DEPTH", "edge.maxJsonDepth"),
        ("ARQONBUS_RATE_LIMIT_PER_SECOND", "edge.rateLimit.perSecond"),
        ("ARQONBUS_RATE_LIMIT_BURST", "edge.rateLimit.burst"),
        ("ARQONBUS_RATE_LIMIT_STRIKES", "edge.rateLimit.strikes"),
        ("ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND", "edge.rateLimit.bytesPerSecond"),
        ("ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND", "edge.rateLimit.tenantBytesPerSecond"),
        ("ARQONBUS_PRESENCE_MAX_MEMBERS", "edge.presenceMaxMembers"),
        ("ARQONBUS_PRESENCE_MAX_REPLY_BYTES", "edge.presenceMaxReplyBytes"),
        ("ARQONBUS_POLICY_BYPASS", "edge.policyBypass"),
        ("ARQONBUS_CONSOLE", "edge.console.enabled"),
        ("ARQONBUS_CONSOLE_OPERATOR_LOGIN", "edge.console.operatorLogin"),
        ("ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS", "edge.console.operatorSessionSeconds"),
        ("ARQONBUS_CONSOLE_MAX_FEEDS", "edge.console.maxFeeds"),
        ("ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND", "edge.console.feedEventsPerSecond"),
    ],
    "dispatcher": [
        ("ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES", "dispatcher.maxInFlightMessages"),
        ("ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS", "dispatcher.maxInFlightCommands"),
        ("ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT", "dispatcher.maxCommandsPerTenant"),
        ("ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT", "dispatcher.maxQueuedCommandsPerTenant"),
        ("ARQONBUS_MAX_CHANNELS_PER_TENANT", "dispatcher.channels.maxPerTenant"),
        ("ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS", "dispatcher.channels.emptyTtlSeconds"),
        ("ARQONBUS_CHANNEL_INFO_MAX_MEMBERS", "dispatcher.channels.infoMaxMembers"),
        ("ARQONBUS_STATUS_MAX_TENANTS", "dispatcher.statusMaxTenants"),
        ("ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT", "dispatcher.history.maxBytesPerTenant"),
        ("ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL", "dispatcher.history.maxBytesPerChannel"),
    ],
    "operators": [
        ("ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT", "operators.webhook.maxQueuedPerTenant"),
        ("ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT", "operators.webhook.maxQueuedBytesPerTenant"),
    ],
}

# The services' own defaults (services/*/src): the chart's defaults must be the same, so
# that installing the chart changes no limit.
SERVICE_DEFAULTS = {
    "ARQONBUS_MAX_CONNECTIONS_PER_TENANT": "5000",
    "ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT": "50000",
    "ARQONBUS_MAX_CHANNELS_PER_CONNECTION": "256",
    "ARQONBUS_MAX_JSON_DEPTH": "32",
    "ARQONBUS_RATE_LIMIT_PER_SECOND": "100",
    "ARQONBUS_RATE_LIMIT_BURST": "200",
    "ARQONBUS_RATE_LIMIT_STRIKES": "20",
    "ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND": "2097152",
    "ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND": "16777216",
    "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES": "1024",
    "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS": "256",
    "ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT": "32",
    "ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT": "1024",
    "ARQONBUS_MAX_CHANNELS_PER_TENANT": "10000",
    "ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS": "300",
    "ARQONBUS_CHANNEL_INFO_MAX_MEMBERS": "1000",
    "ARQONBUS_PRESENCE_MAX_MEMBERS": "10000",
    "ARQONBUS_PRESENCE_MAX_REPLY_BYTES": "262144",
    "ARQONBUS_POLICY_BYPASS": "true",
    "ARQONBUS_CONSOLE": "true",
    "ARQONBUS_CONSOLE_OPERATOR_LOGIN": "false",
    "ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS": "3600",
    "ARQONBUS_CONSOLE_MAX_FEEDS": "64",
    "ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND": "50",
    "ARQONBUS_STATUS_MAX_TENANTS": "1000",
    "ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT": "67108864",
    "ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL": "16777216",
    "ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT": "100000",
    "ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT": "16777216",
}


def lookup(values, path):
    for key in path.split("."):
        values = values[key]
    return values


def as_env(value):
    """A value as the chart renders it into an env entry (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def nats_files(values):
    """The files the values ask for: {(Secret, key): file name under NATS_FILES_DIR}."""
    files = {}
    auth, tls = values["nats"]["auth"], values["nats"]["tls"]
    if auth["method"] == "creds":
        files[(auth["credsSecret"]["name"], auth["credsSecret"]["key"])] = "nats.creds"
    if tls["enabled"] and tls["secretName"]:
        if tls["keys"]["ca"]:
            files[(tls["secretName"], tls["keys"]["ca"])] = "ca.crt"
        if tls["clientCertificate"]:
            files[(tls["secretName"], tls["keys"]["cert"])] = "tls.crt"
            files[(tls["secretName"], tls["keys"]["key"])] = "tls.key"
    return files


def secret_ref(container, name):
    entry = env_of(container).get(name) or {}
    return entry.get("valueFrom")


def check_nats(name, pod, ctr, values, secret, keys):
    """NATS credentials and TLS of one service: env, volume, mount, and that they agree."""
    auth, tls = values["nats"]["auth"], values["nats"]["tls"]
    env = env_of(ctr)
    method = auth["method"]
    want_vars = {
        "none": [],
        "userPassword": ["ARQONBUS_NATS_USER", "ARQONBUS_NATS_PASSWORD"],
        "token": ["ARQONBUS_NATS_TOKEN"],
        "nkey": ["ARQONBUS_NATS_NKEY_SEED"],
        "creds": ["ARQONBUS_NATS_CREDS_FILE"],
    }[method]
    eq([n for n in NATS_AUTH_VARS if n in env], want_vars, f"{name} NATS credential variables ({method})")
    if method == "userPassword":
        eq(env_value(ctr, "ARQONBUS_NATS_USER"), auth["user"], f"{name} ARQONBUS_NATS_USER")
        eq(secret_ref(ctr, "ARQONBUS_NATS_PASSWORD"),
           {"secretKeyRef": {"name": secret, "key": keys["natsPassword"]}}, f"{name} NATS password from the Secret")
    if method == "token":
        eq(secret_ref(ctr, "ARQONBUS_NATS_TOKEN"),
           {"secretKeyRef": {"name": secret, "key": keys["natsToken"]}}, f"{name} NATS token from the Secret")
    if method == "nkey":
        eq(secret_ref(ctr, "ARQONBUS_NATS_NKEY_SEED"),
           {"secretKeyRef": {"name": secret, "key": keys["natsNkeySeed"]}}, f"{name} NKey seed from the Secret")
    if method == "creds":
        eq(env_value(ctr, "ARQONBUS_NATS_CREDS_FILE"), f"{NATS_FILES_DIR}/nats.creds", f"{name} ARQONBUS_NATS_CREDS_FILE")

    want_tls = []
    if tls["enabled"]:
        if tls["secretName"] and tls["keys"]["ca"]:
            want_tls.append("ARQONBUS_NATS_TLS_CA_FILE")
        if tls["clientCertificate"]:
            want_tls += ["ARQONBUS_NATS_TLS_CERT_FILE", "ARQONBUS_NATS_TLS_KEY_FILE"]
        want_tls.append("ARQONBUS_NATS_TLS_REQUIRED")
        eq(env_value(ctr, "ARQONBUS_NATS_TLS_REQUIRED"), str(tls["required"]).lower(), f"{name} ARQONBUS_NATS_TLS_REQUIRED")
    eq([n for n in NATS_TLS_VARS if n in env], want_tls, f"{name} NATS TLS variables")

    # Secrets never in plain env: a secretKeyRef and nothing else.
    for var in SECRET_VARS:
        if var in env:
            eq(set(env[var]), {"name", "valueFrom"}, f"{name} {var} has no plain value")
            check(set(env[var].get("valueFrom") or {}) == {"secretKeyRef"}, f"{name} {var} comes from a Secret")
    literals = [values["auth"]["jwtSecret"], values["auth"]["publicKey"], values["serviceToken"],
                auth["password"], auth["token"], auth["nkeySeed"]]
    dumped = yaml.safe_dump(pod)
    for literal in filter(None, literals):
        check(literal not in dumped, f"{name}: a secret from the values appears in the pod spec")

    # The files: one projected volume of exactly the wanted Secret keys, mounted read-only,
    # and every *_FILE variable names a file of it.
    files = nats_files(values)
    volumes = pod.get("volumes") or []
    mounts = ctr.get("volumeMounts") or []
    if not files:
        eq(volumes, [], f"{name} has no volumes without NATS files")
        eq(mounts, [], f"{name} has no volume mounts without NATS files")
        return
    eq([v["name"] for v in volumes], ["nats-files"], f"{name} volumes")
    eq(mounts, [{"name": "nats-files", "mountPath": NATS_FILES_DIR, "readOnly": True}],
       f"{name} mounts the NATS files read-only")
    projected = volumes[0].get("projected", {}) if volumes else {}
    eq(projected.get("defaultMode"), 0o440, f"{name} NATS files mode 0440")
    got = {}
    for source in projected.get("sources", []):
        eq(set(source), {"secret"}, f"{name} NATS files come from Secrets only")
        for item in source.get("secret", {}).get("items", []):
            check("mode" not in item, f"{name} {item['path']} keeps the volume's mode")
            got[(source["secret"]["name"], item["key"])] = item["path"]
    eq(got, files, f"{name} NATS files (Secret, key) -> file")
    paths = {f"{NATS_FILES_DIR}/{p}" for p in got.values()}
    file_vars = [n for n in env if n.startswith("ARQONBUS_NATS_") and n.endswith("_FILE")]
    eq(sorted(env_value(ctr, n) for n in file_vars), sorted(paths), f"{name} every NATS file is named by a variable")
    for var in file_vars:
        check(env_value(ctr, var) in paths, f"{name} {var} points into the read-only mount")


# Every set ------------------------------------------------------------------------------

def common(docs, values):
    fullname = RELEASE
    standard = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "helm.sh/chart"}
    for doc in docs:
        meta = doc["metadata"]
        label = f"{doc['kind']}/{meta['name']}"
        if doc["kind"] == "CustomResourceDefinition":
            continue
        check(standard <= set(meta.get("labels", {})), f"{label} has the standard labels")
        if doc["kind"] == "ConfigMap" and values["metrics"]["grafanaDashboard"]["namespace"]:
            eq(meta.get("namespace"), values["metrics"]["grafanaDashboard"]["namespace"], f"{label} namespace")
        elif doc["kind"] == "NetworkPolicy" and meta["name"].endswith("-nats"):
            eq(meta.get("namespace"), values["nats"]["networkPolicy"]["namespace"] or NAMESPACE, f"{label} namespace")
        else:
            eq(meta.get("namespace"), NAMESPACE, f"{label} namespace")

    services = {}
    for c in COMPONENTS:
        name = f"{fullname}-{c}"
        svc_values = values[c]
        selector = {"app.kubernetes.io/name": "arqonbus", "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": c}
        dep = find(docs, "Deployment", name)
        check(dep is not None, f"Deployment {name} is rendered")
        if dep is None:
            continue
        spec = dep["spec"]
        # Selectors: exactly the three stable labels (a Deployment's selector is immutable).
        eq(spec["selector"]["matchLabels"], selector, f"{name} selector")
        pod = spec["template"]["spec"]
        check(selector.items() <= spec["template"]["metadata"]["labels"].items(), f"{name} pod labels match the selector")
        if svc_values["autoscaling"]["enabled"]:
            check("replicas" not in spec, f"{name} leaves replicas to its HPA")
        else:
            eq(spec.get("replicas"), svc_values["replicas"], f"{name} replicas")
        eq(spec["strategy"]["rollingUpdate"], {"maxSurge": 1, "maxUnavailable": 0}, f"{name} rollout")

        # Security by default.
        eq(pod["securityContext"], {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                    "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
           f"{name} pod securityContext")
        eq(pod["enableServiceLinks"], False, f"{name} enableServiceLinks")
        kube_source = c == "policy" and values["policy"]["kubernetesSource"]["enabled"]
        eq(pod["automountServiceAccountToken"], kube_source, f"{name} automountServiceAccountToken")
        if c == "policy":
            eq(pod.get("serviceAccountName"), f"{fullname}-policy", f"{name} serviceAccountName")
        else:
            check("serviceAccountName" not in pod, f"{name} uses no service account of its own")

        containers = pod["containers"]
        eq(len(containers), 1, f"{name} containers")
        ctr = containers[0]
        eq(ctr["args"], [c], f"{name} args")
        check("command" not in ctr, f"{name} keeps the image's entrypoint (arqonbus)")
        tag = values["image"]["tag"] or "0.1.0"
        eq(ctr["image"], f"{values['image']['repository']}:{tag}", f"{name} image")
        eq(ctr["securityContext"]["allowPrivilegeEscalation"], False, f"{name} allowPrivilegeEscalation")
        eq(ctr["securityContext"]["readOnlyRootFilesystem"], True, f"{name} readOnlyRootFilesystem")
        eq(ctr["securityContext"]["capabilities"], {"drop": ["ALL"]}, f"{name} capabilities")
        eq(ctr["securityContext"]["runAsNonRoot"], True, f"{name} container runAsNonRoot")
        eq(ctr["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"}, f"{name} container seccomp")

        ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
        want_ports = {"http": values["ports"]["http"]}
        if c == "edge":
            want_ports["ws"] = values["ports"]["websocket"]
        else:
            want_ports["grpc"] = values["ports"]["grpc"]
        eq(ports, want_ports, f"{name} container ports")

        # Probes: readiness /ready, liveness and startup /health, all on the HTTP port.
        eq(ctr["readinessProbe"]["httpGet"], {"path": "/ready", "port": "http"}, f"{name} readiness")
        eq(ctr["livenessProbe"]["httpGet"], {"path": "/health", "port": "http"}, f"{name} liveness")
        eq(ctr["startupProbe"]["httpGet"], {"path": "/health", "port": "http"}, f"{name} startup")

        # The drain: the grace period is the preStop sleep + the drain + the margin, the
        # drain is what the process is told, and no handler needs a shell.
        grace = int(env_value(ctr, "ARQONBUS_SHUTDOWN_GRACE_SECONDS"))
        eq(grace, values["shutdown"]["graceSeconds"], f"{name} ARQONBUS_SHUTDOWN_GRACE_SECONDS")
        sleep = ctr.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        eq(sleep, svc_values["preStopSleepSeconds"], f"{name} preStop sleep")
        if svc_values["preStopSleepSeconds"] == 0:
            check("lifecycle" not in ctr, f"{name} has no lifecycle without a preStop sleep")
        eq(pod["terminationGracePeriodSeconds"], sleep + grace + values["shutdown"]["marginSeconds"],
           f"{name} terminationGracePeriodSeconds")
        check("exec" not in yaml.safe_dump(ctr.get("lifecycle", {})), f"{name} lifecycle runs no command")

        # Settings every service gets.
        eq(env_value(ctr, "ARQONBUS_NATS_URL"), values["nats"]["url"], f"{name} ARQONBUS_NATS_URL")
        eq(env_value(ctr, "ARQONBUS_JETSTREAM_REPLICAS"), str(values["nats"]["jetstreamReplicas"]),
           f"{name} ARQONBUS_JETSTREAM_REPLICAS")
        eq(env_value(ctr, "ARQONBUS_HTTP_PORT"), str(values["ports"]["http"]), f"{name} ARQONBUS_HTTP_PORT")
        eq(env_value(ctr, "ARQONBUS_HTTP_HOST"), "0.0.0.0", f"{name} ARQONBUS_HTTP_HOST")
        names = [e["name"] for e in ctr["env"]]
        eq(len(names), len(set(names)), f"{name} env names are unique")

        secret = values["existingSecret"]["name"] or fullname
        keys = values["existingSecret"]["keys"]
        check_nats(name, pod, ctr, values, secret, keys)
        # Limits from values: each in its own service only, as the value says.
        for owner, pairs in VALUE_ENV.items():
            for var, path in pairs:
                if owner == c:
                    eq(env_value(ctr, var), as_env(lookup(values, path)), f"{name} {var} from {path}")
                else:
                    check(var not in env_of(ctr), f"{name} has no {var} ({owner}'s setting)")
        if c == "edge":
            eq(env_value(ctr, "ARQONBUS_SERVER_PORT"), str(values["ports"]["websocket"]), f"{name} ARQONBUS_SERVER_PORT")
            eq(env_value(ctr, "ARQONBUS_SERVER_HOST"), "0.0.0.0", f"{name} ARQONBUS_SERVER_HOST")
            eq(env_value(ctr, "ARQONBUS_MAX_CONNECTIONS"), str(values["edge"]["maxConnections"]),
               f"{name} ARQONBUS_MAX_CONNECTIONS")
            if values["edge"]["console"]["operatorLogin"]:
                # The console's operator login compares with it.
                eq(secret_ref(ctr, "ARQONBUS_SERVICE_TOKEN"),
                   {"secretKeyRef": {"name": secret, "key": keys["serviceToken"]}},
                   f"{name} gets the service token for the console's operator login")
            else:
                check("ARQONBUS_SERVICE_TOKEN" not in env_of(ctr), f"{name} does not get the service token")
            algorithm = values["auth"]["algorithm"]
            eq(env_value(ctr, "ARQONBUS_AUTH_JWT_ALGORITHM"), algorithm, f"{name} algorithm")
            if algorithm == "HS256":
                eq(env_of(ctr)["ARQONBUS_AUTH_JWT_SECRET"].get("valueFrom"),
                   {"secretKeyRef": {"name": secret, "key": keys["jwtSecret"]}}, f"{name} JWT secret from the Secret")
            elif values["auth"]["jwksUrl"]:
                eq(env_value(ctr, "ARQONBUS_AUTH_JWKS_URL"), values["auth"]["jwksUrl"], f"{name} JWKS URL")
                check("ARQONBUS_AUTH_JWT_SECRET" not in env_of(ctr), f"{name} has no HS256 secret")
            check(all("value" not in e or e["name"] != "ARQONBUS_AUTH_JWT_SECRET" for e in ctr["env"]),
                  f"{name} never carries the JWT secret in clear")
            # Tenants and authority (ADR 015).
            eq(env_value(ctr, "ARQONBUS_AUTH_SYSTEM_SCOPE"), str(values["auth"]["systemScope"]).lower(),
               f"{name} ARQONBUS_AUTH_SYSTEM_SCOPE")
            if values["auth"]["defaultTenant"]:
                eq(env_value(ctr, "ARQONBUS_AUTH_DEFAULT_TENANT"), values["auth"]["defaultTenant"],
                   f"{name} ARQONBUS_AUTH_DEFAULT_TENANT")
            else:
                check("ARQONBUS_AUTH_DEFAULT_TENANT" not in env_of(ctr), f"{name} has no default tenant unless set")
        else:
            for var in ["ARQONBUS_AUTH_SYSTEM_SCOPE", "ARQONBUS_AUTH_DEFAULT_TENANT"]:
                check(var not in env_of(ctr), f"{name} has no {var} (the edge's setting)")
            eq(env_value(ctr, "ARQONBUS_GRPC_PORT"), str(values["ports"]["grpc"]), f"{name} ARQONBUS_GRPC_PORT")
            eq(env_of(ctr)["ARQONBUS_SERVICE_TOKEN"].get("valueFrom"),
               {"secretKeyRef": {"name": secret, "key": keys["serviceToken"]}}, f"{name} service token from the Secret")
        if c == "policy":
            if kube_source:
                eq(env_value(ctr, "ARQONBUS_POLICY_SOURCE"), "kubernetes", f"{name} ARQONBUS_POLICY_SOURCE")
                eq(env_of(ctr)["ARQONBUS_POLICY_NAMESPACE"].get("valueFrom"),
                   {"fieldRef": {"fieldPath": "metadata.namespace"}}, f"{name} ARQONBUS_POLICY_NAMESPACE")
                eq(env_value(ctr, "ARQONBUS_POLICY_RESOURCE"), values["casilPolicy"]["name"],
                   f"{name} ARQONBUS_POLICY_RESOURCE")
            else:
                for var in ["ARQONBUS_POLICY_SOURCE", "ARQONBUS_POLICY_NAMESPACE", "ARQONBUS_POLICY_RESOURCE"]:
                    check(var not in env_of(ctr), f"{name} has no {var} without the Kubernetes source")
        if c == "dispatcher":
            # The dispatcher reaches policy and operators through their Services' gRPC port.
            for target, var in [("policy", "ARQONBUS_POLICY_URL"), ("operators", "ARQONBUS_OPERATORS_URL")]:
                url = env_value(ctr, var)
                svc = find(docs, "Service", f"{fullname}-{target}")
                grpc_port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc") if svc else None
                eq(url, f"http://{fullname}-{target}.{NAMESPACE}.svc:{grpc_port}", f"{name} {var}")
        otel = values["otel"]
        if otel["endpoint"]:
            eq(env_value(ctr, "OTEL_EXPORTER_OTLP_ENDPOINT"), otel["endpoint"], f"{name} OTLP endpoint")
            eq(env_value(ctr, "OTEL_EXPORTER_OTLP_PROTOCOL"), otel["protocol"], f"{name} OTLP protocol")
            eq(float(env_value(ctr, "OTEL_TRACES_SAMPLER_ARG")), float(otel["samplerRatio"]), f"{name} sampler ratio")
            eq(env_value(ctr, "OTEL_SERVICE_NAME"), f"arqonbus-{c}", f"{name} OTEL_SERVICE_NAME")
        else:
            check(not any(n.startswith("OTEL_") for n in names), f"{name} has no OTEL_* without an endpoint")

        # The Service in front of it.
        service = find(docs, "Service", name)
        check(service is not None, f"Service {name} is rendered")
        if service:
            eq(service["spec"]["selector"], selector, f"Service {name} selector")
            svc_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
            eq(svc_ports, {k: (v, k) for k, v in want_ports.items()}, f"Service {name} ports")
            services[c] = service

        hpa = find(docs, "HorizontalPodAutoscaler", name)
        if svc_values["autoscaling"]["enabled"]:
            check(hpa is not None, f"HPA {name} is rendered")
            if hpa:
                eq(hpa["apiVersion"], "autoscaling/v2", f"HPA {name} apiVersion")
                eq(hpa["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                   f"HPA {name} target")
                eq(hpa["spec"]["metrics"][0], {"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization",
                    "averageUtilization": svc_values["autoscaling"]["targetCPUUtilizationPercentage"]}}},
                   f"HPA {name} CPU metric")
                check("cpu" in (ctr.get("resources", {}).get("requests") or {}), f"{name} requests CPU for its HPA")
        else:
            check(hpa is None, f"no HPA {name} when autoscaling is off")

        pdb = find(docs, "PodDisruptionBudget", name)
        if svc_values["podDisruptionBudget"]["enabled"]:
            check(pdb is not None and pdb["spec"]["selector"]["matchLabels"] == selector, f"PDB {name} selects its pods")
        else:
            check(pdb is None, f"no PDB {name} when disabled")

    # The Secret: made by the chart unless existingSecret names one; never both.
    made = find(docs, "Secret", fullname)
    if values["existingSecret"]["name"]:
        check(not [d for d in docs if d["kind"] == "Secret"], "no Secret is made with existingSecret")
        for c in COMPONENTS:
            dep = find(docs, "Deployment", f"{fullname}-{c}")
            check("checksum/secret" not in (dep["spec"]["template"]["metadata"].get("annotations") or {}),
                  f"{c} has no checksum of a Secret the chart does not make")
    else:
        check(made is not None, "the chart makes its Secret")
        if made:
            want = {values["existingSecret"]["keys"]["serviceToken"]}
            if values["auth"]["jwtSecret"]:
                want.add(values["existingSecret"]["keys"]["jwtSecret"])
            if values["auth"]["publicKey"]:
                want.add(values["existingSecret"]["keys"]["jwtPublicKey"])
            nauth = values["nats"]["auth"]
            for method, field, key in [("userPassword", "password", "natsPassword"), ("token", "token", "natsToken"),
                                       ("nkey", "nkeySeed", "natsNkeySeed")]:
                if nauth["method"] == method:
                    want.add(values["existingSecret"]["keys"][key])
                    eq(made["data"].get(values["existingSecret"]["keys"][key]),
                       base64.b64encode(nauth[field].encode()).decode(), f"the Secret holds nats.auth.{field}")
            eq(set(made["data"]), want, "the Secret's keys")

    # Least RBAC: only the policy service, only casilpolicies in arqonbus.io, only here.
    role = find(docs, "Role", f"{fullname}-policy")
    binding = find(docs, "RoleBinding", f"{fullname}-policy")
    check(not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")], "no cluster-wide RBAC")
    if values["policy"]["kubernetesSource"]["enabled"]:
        check(role is not None and binding is not None, "the policy Role and RoleBinding are rendered")
        if role:
            eq(role["rules"], [
                {"apiGroups": ["arqonbus.io"], "resources": ["casilpolicies"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["arqonbus.io"], "resources": ["casilpolicies/status"], "verbs": ["get", "patch", "update"]},
            ], "the policy Role's rules")
        if binding:
            eq(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{fullname}-policy"},
               "the RoleBinding's role")
            eq(binding["subjects"], [{"kind": "ServiceAccount", "name": f"{fullname}-policy", "namespace": NAMESPACE}],
               "the RoleBinding's subject")
    else:
        check(role is None and binding is None, "no Role without the Kubernetes source")
    sa = find(docs, "ServiceAccount", f"{fullname}-policy")
    check(sa is not None and sa.get("automountServiceAccountToken") is False,
          "the policy ServiceAccount mounts no token unless its pods ask")
    eq([d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"], [f"{fullname}-policy"],
       "the only ServiceAccount")

    # NetworkPolicies: only the edge's WebSocket port is open to anyone by default.
    nps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    if values["networkPolicy"]["enabled"]:
        edge_np = nps.get(f"{fullname}-edge")
        internal = nps.get(f"{fullname}-internal")
        check(edge_np is not None and internal is not None, "the NetworkPolicies are rendered")
        if edge_np and internal:
            ws_rule = edge_np["spec"]["ingress"][0]
            eq(ws_rule["ports"], [{"port": "ws", "protocol": "TCP"}], "edge NetworkPolicy: WebSocket port")
            eq(ws_rule.get("from"), values["networkPolicy"]["websocketFrom"] or None, "edge NetworkPolicy: WebSocket peers")
            grpc_rule = internal["spec"]["ingress"][0]
            eq(grpc_rule["ports"], [{"port": "grpc", "protocol": "TCP"}], "internal NetworkPolicy: gRPC port")
            eq(grpc_rule["from"][0], {"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "arqonbus", "app.kubernetes.io/instance": RELEASE}}},
               "internal NetworkPolicy: gRPC from this release's pods")
            eq(grpc_rule["from"][1:], values["networkPolicy"]["grpcFrom"], "internal NetworkPolicy: gRPC from grpcFrom")
            eq(internal["spec"]["podSelector"]["matchExpressions"], [{
                "key": "app.kubernetes.io/component", "operator": "In", "values": GRPC_COMPONENTS}],
               "internal NetworkPolicy selects policy, dispatcher, operators")
            for np in (edge_np, internal):
                eq(np["spec"]["policyTypes"], ["Ingress"], f"{np['metadata']['name']} restricts ingress only")
                http_rule = np["spec"]["ingress"][1]
                eq(http_rule.get("from"), values["networkPolicy"]["httpFrom"] or None,
                   f"{np['metadata']['name']} HTTP peers")
    else:
        check(f"{fullname}-edge" not in nps and f"{fullname}-internal" not in nps, "no NetworkPolicies when disabled")
    nats_np = nps.get(f"{fullname}-nats")
    if values["nats"]["networkPolicy"]["enabled"]:
        check(nats_np is not None, "the NATS NetworkPolicy is rendered")
        if nats_np:
            eq(nats_np["spec"]["podSelector"]["matchLabels"], values["nats"]["networkPolicy"]["podLabels"],
               "NATS NetworkPolicy selects the NATS pods")
            client = nats_np["spec"]["ingress"][0]
            eq(client["ports"], [{"port": 4222, "protocol": "TCP"}], "NATS NetworkPolicy: client port")
            eq(client["from"][0]["podSelector"]["matchLabels"], {
                "app.kubernetes.io/name": "arqonbus", "app.kubernetes.io/instance": RELEASE},
               "NATS NetworkPolicy: clients are this release's pods")
    else:
        check(nats_np is None, "no NATS NetworkPolicy when disabled")

    # Monitoring.
    sm = find(docs, "ServiceMonitor", fullname)
    pm = find(docs, "PodMonitor", fullname)
    check((sm is not None) == values["metrics"]["serviceMonitor"]["enabled"], "ServiceMonitor iff enabled")
    check((pm is not None) == values["metrics"]["podMonitor"]["enabled"], "PodMonitor iff enabled")
    if sm:
        endpoint = sm["spec"]["endpoints"][0]
        eq((endpoint["port"], endpoint["path"]), ("http", "/metrics"), "ServiceMonitor endpoint")
        eq(sm["spec"]["selector"]["matchLabels"], {"app.kubernetes.io/name": "arqonbus",
                                                   "app.kubernetes.io/instance": RELEASE}, "ServiceMonitor selector")
        eq(endpoint["relabelings"], [{"sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
                                      "targetLabel": "service"}], "ServiceMonitor sets `service` for the dashboard")
        for c, service in services.items():
            check(any(p["name"] == "http" for p in service["spec"]["ports"]), f"Service {c} has the monitored port")
    if pm:
        endpoint = pm["spec"]["podMetricsEndpoints"][0]
        eq((endpoint["port"], endpoint["path"]), ("http", "/metrics"), "PodMonitor endpoint")
    dash = find(docs, "ConfigMap", f"{fullname}-dashboard")
    if values["metrics"]["grafanaDashboard"]["enabled"]:
        check(dash is not None, "the dashboard ConfigMap is rendered")
        if dash:
            for key, value in values["metrics"]["grafanaDashboard"]["labels"].items():
                eq(dash["metadata"]["labels"].get(key), value, f"dashboard label {key}")
            with open(os.path.join(ROOT, "deploy/compose/grafana/dashboards/arqonbus.json")) as f:
                eq(dash["data"]["arqonbus.json"], f.read().rstrip("\n"), "the dashboard is compose's, byte for byte")
    else:
        check(dash is None, "no dashboard ConfigMap when disabled")

    # The CasilPolicy.
    cp = [d for d in docs if d["kind"] == "CasilPolicy"]
    if values["casilPolicy"]["create"]:
        eq(len(cp), 1, "one CasilPolicy")
        if cp:
            eq(cp[0]["apiVersion"], "arqonbus.io/v1alpha1", "CasilPolicy apiVersion")
            eq(cp[0]["metadata"]["name"], values["casilPolicy"]["name"], "CasilPolicy name")
            eq(cp[0]["spec"], {"policy": values["casilPolicy"]["policy"]}, "CasilPolicy spec.policy")
    else:
        eq(cp, [], "no CasilPolicy unless casilPolicy.create")

    ing = find(docs, "Ingress", f"{fullname}-edge")
    check((ing is not None) == values["edge"]["ingress"]["enabled"], "Ingress iff enabled")


# Literal expectations per set: what the values above do not spell out -------------------

def literal(name, docs):
    def dep(c):
        return find(docs, "Deployment", f"{RELEASE}-{c}")["spec"]["template"]["spec"]

    def nats_env(c):
        return [e for e in dep(c)["containers"][0]["env"] if e["name"].startswith("ARQONBUS_NATS_")]

    if name == "minimal":
        for c in COMPONENTS:
            eq(nats_env(c), [{"name": "ARQONBUS_NATS_URL", "value": "nats://nats:4222"}], f"{c}: no NATS credentials or TLS")
            check("volumes" not in dep(c), f"{c} has no volumes")
        eq(env_value(dep("edge")["containers"][0], "ARQONBUS_AUTH_SYSTEM_SCOPE"), "false", "system scope off by default")
        check("ARQONBUS_AUTH_DEFAULT_TENANT" not in env_of(dep("edge")["containers"][0]), "no default tenant by default")
        eq(dep("edge")["terminationGracePeriodSeconds"], 20, "edge grace: 5 s preStop + 10 s drain + 5 s")
        for c in GRPC_COMPONENTS:
            eq(dep(c)["terminationGracePeriodSeconds"], 18, f"{c} grace: 3 s preStop + 10 s drain + 5 s")
        eq(dep("edge")["containers"][0]["image"], "arqonbus:0.1.0", "the image tag defaults to appVersion")
        eq(dep("edge")["containers"][0]["lifecycle"], {"preStop": {"sleep": {"seconds": 5}}}, "edge preStop")
        eq(find(docs, "HorizontalPodAutoscaler", "arqonbus-edge")["spec"]["behavior"]["scaleDown"]["policies"],
           [{"type": "Pods", "value": 1, "periodSeconds": 60}], "the edge scales down one pod a minute")
        eq(sorted(d["kind"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"), ["HorizontalPodAutoscaler"],
           "only the edge autoscales by default")
        eq(dep("edge")["containers"][0]["resources"], {"requests": {"cpu": "250m", "memory": "128Mi"},
                                                       "limits": {"memory": "512Mi"}}, "edge resources")
        # Unset limits render the services' own defaults.
        for c in VALUE_ENV:
            for var, _ in VALUE_ENV[c]:
                eq(env_value(dep(c)["containers"][0], var), SERVICE_DEFAULTS[var], f"{c} {var} is the service's default")
    if name == "tenant-limits":
        want = {
            "edge": {
                "ARQONBUS_MAX_CONNECTIONS_PER_TENANT": "2000",
                "ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT": "0",
                "ARQONBUS_MAX_CHANNELS_PER_CONNECTION": "64",
                "ARQONBUS_MAX_JSON_DEPTH": "16",
                "ARQONBUS_RATE_LIMIT_PER_SECOND": "40",
                "ARQONBUS_RATE_LIMIT_BURST": "80",
                "ARQONBUS_RATE_LIMIT_STRIKES": "5",
                "ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND": "1048576",
                "ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND": "8388608",
                "ARQONBUS_PRESENCE_MAX_MEMBERS": "500",
                "ARQONBUS_PRESENCE_MAX_REPLY_BYTES": "131072",
                "ARQONBUS_POLICY_BYPASS": "false",
                "ARQONBUS_CONSOLE": "true",
                "ARQONBUS_CONSOLE_OPERATOR_LOGIN": "true",
                "ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS": "900",
                "ARQONBUS_CONSOLE_MAX_FEEDS": "8",
                "ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND": "20",
                "ARQONBUS_OUTBOUND_QUEUE": "512",
            },
            "dispatcher": {
                "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES": "2048",
                "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS": "128",
                "ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT": "16",
                "ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT": "0",
                "ARQONBUS_MAX_CHANNELS_PER_TENANT": "500",
                "ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS": "0",
                "ARQONBUS_CHANNEL_INFO_MAX_MEMBERS": "250",
                "ARQONBUS_STATUS_MAX_TENANTS": "50",
                "ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT": "33554432",
                "ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL": "4194304",
            },
            "operators": {
                "ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT": "20000",
                "ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT": "4194304",
            },
            "policy": {},
        }
        for c, env in want.items():
            ctr = dep(c)["containers"][0]
            got = {n: v for n, v in ((e["name"], e.get("value")) for e in ctr["env"])
                   if n in SERVICE_DEFAULTS or n == "ARQONBUS_OUTBOUND_QUEUE"}
            eq(got, env, f"{c} limits")
    if name == "production":
        eq(dep("edge")["terminationGracePeriodSeconds"], 45, "edge grace: 10 + 25 + 10")
        eq(dep("policy")["terminationGracePeriodSeconds"], 38, "policy grace: 3 + 25 + 10")
        eq(dep("edge")["imagePullSecrets"], [{"name": "registry-credentials"}], "pull secret")
        eq(dep("edge")["containers"][0]["image"], "registry.example.com/arqonbus/arqonbus:0.1.0", "image")
        eq(env_value(dep("edge")["containers"][0], "ARQONBUS_RATE_LIMIT_PER_SECOND"), "50", "edge.rateLimit.perSecond")
        eq(env_value(dep("edge")["containers"][0], "ARQONBUS_PING_INTERVAL_SECONDS"), "15", "edge extraEnv")
        eq(env_value(dep("policy")["containers"][0], "ARQONBUS_CASIL_MODE"), "enforce", "CASIL mode")
        eq(env_value(dep("dispatcher")["containers"][0], "ARQONBUS_MAX_HISTORY_SIZE"), "5000", "history size")
        eq(env_value(dep("dispatcher")["containers"][0], "ARQONBUS_HISTORY_MAX_AGE_SECONDS"), "604800", "history age")
        eq(env_value(dep("dispatcher")["containers"][0], "ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT"), "268435456", "history bytes per tenant")
        eq(env_value(dep("edge")["containers"][0], "ARQONBUS_MAX_CONNECTIONS"), "20000", "max connections")
        eq(dep("edge")["nodeSelector"], {"node-pool": "edge"}, "edge nodeSelector")
        eq(dep("edge")["priorityClassName"], "high-priority", "edge priorityClassName")
        eq(dep("edge")["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone", "zone spread")
        eq(find(docs, "Deployment", "arqonbus-edge")["metadata"]["labels"].get("team"), "realtime", "commonLabels")
        eq(sorted(d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"),
           ["arqonbus-dispatcher", "arqonbus-edge"], "HPAs")
        check(any(d["kind"] == "CustomResourceDefinition" for d in docs), "the CRD comes with --include-crds")
        # NATS: user and password (the password from existingSecret), TLS with the CA and a
        # client certificate from one Secret, for all four services.
        for c in COMPONENTS:
            eq(nats_env(c), [
                {"name": "ARQONBUS_NATS_URL", "value": "nats://nats-0.nats.messaging.svc:4222,"
                 "nats://nats-1.nats.messaging.svc:4222,nats://nats-2.nats.messaging.svc:4222"},
                {"name": "ARQONBUS_NATS_USER", "value": "arqonbus"},
                {"name": "ARQONBUS_NATS_PASSWORD",
                 "valueFrom": {"secretKeyRef": {"name": "arqonbus-secrets", "key": "nats-pass"}}},
                {"name": "ARQONBUS_NATS_TLS_CA_FILE", "value": "/etc/arqonbus/nats/ca.crt"},
                {"name": "ARQONBUS_NATS_TLS_CERT_FILE", "value": "/etc/arqonbus/nats/tls.crt"},
                {"name": "ARQONBUS_NATS_TLS_KEY_FILE", "value": "/etc/arqonbus/nats/tls.key"},
                {"name": "ARQONBUS_NATS_TLS_REQUIRED", "value": "true"},
            ], f"{c} NATS settings")
            eq(dep(c)["volumes"], [{"name": "nats-files", "projected": {"defaultMode": 0o440, "sources": [
                {"secret": {"name": "arqonbus-nats-client-tls", "items": [
                    {"key": "ca.crt", "path": "ca.crt"}, {"key": "tls.crt", "path": "tls.crt"},
                    {"key": "tls.key", "path": "tls.key"}]}}]}}], f"{c} NATS TLS volume")
            eq(dep(c)["containers"][0]["volumeMounts"],
               [{"name": "nats-files", "mountPath": "/etc/arqonbus/nats", "readOnly": True}], f"{c} NATS TLS mount")
        eq(env_value(dep("edge")["containers"][0], "ARQONBUS_AUTH_SYSTEM_SCOPE"), "true", "system scope honoured")
    if name == "no-autoscaling":
        eq(dep("edge")["terminationGracePeriodSeconds"], 15, "edge grace without preStop: 0 + 10 + 5")
        eq(env_value(dep("dispatcher")["containers"][0], "ARQONBUS_ENABLE_PERSISTENCE"), "false", "history off")
        eq([d["kind"] for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget",
                                                       "NetworkPolicy", "Role", "RoleBinding")], [],
           "no optional resources")
    if name == "monitoring":
        ctr = dep("edge")["containers"][0]
        eq(env_value(ctr, "OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf", "OTLP protocol")
        eq(env_value(ctr, "OTEL_TRACES_SAMPLER"), "parentbased_traceidratio", "sampler")
        eq(env_value(ctr, "OTEL_TRACES_SAMPLER_ARG"), "0.1", "sampler ratio")
        eq(env_value(ctr, "OTEL_RESOURCE_ATTRIBUTES"), "deployment.environment=staging", "resource attributes")
        sm = find(docs, "ServiceMonitor", RELEASE)
        eq(sm["metadata"]["labels"].get("release"), "kube-prometheus-stack", "ServiceMonitor label")
        eq(sm["spec"]["endpoints"][0]["interval"], "30s", "scrape interval")
        dash = find(docs, "ConfigMap", "arqonbus-dashboard")
        eq(dash["metadata"]["labels"].get("grafana_dashboard"), "1", "grafana sidecar label")
        eq(dash["metadata"]["namespace"], "monitoring", "dashboard namespace")
    if name == "ingress":
        ing = find(docs, "Ingress", "arqonbus-edge")
        eq(ing["spec"]["ingressClassName"], "nginx", "ingress class")
        eq(ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3600", "read timeout")
        paths = ing["spec"]["rules"][0]["http"]["paths"]
        eq([(p["path"], p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"]) for p in paths],
           [("/ws", "arqonbus-edge", "ws"), ("/ready", "arqonbus-edge", "http")], "ingress paths")
        eq(ing["spec"]["tls"], [{"secretName": "bus-example-com-tls", "hosts": ["bus.example.com"]}], "ingress TLS")
        ctr = dep("edge")["containers"][0]
        eq(env_value(ctr, "ARQONBUS_AUTH_AUDIENCE"), "arqonbus", "audience")
        eq(env_value(ctr, "ARQONBUS_AUTH_ISSUER"), "https://id.example.com/", "issuer")
        eq(set(find(docs, "Secret", RELEASE)["data"]), {"service-token", "nats-token"},
           "no JWT secret with a JWKS; the NATS token")
        eq(find(docs, "Secret", RELEASE)["data"]["nats-token"], "dGVzdC1vbmx5LW5hdHMtdG9rZW4=", "the NATS token, base64")
        for c in COMPONENTS:
            eq(nats_env(c), [
                {"name": "ARQONBUS_NATS_URL", "value": "nats://nats:4222"},
                {"name": "ARQONBUS_NATS_TOKEN", "valueFrom": {"secretKeyRef": {"name": "arqonbus", "key": "nats-token"}}},
            ], f"{c} NATS token from the chart's Secret")
            check("volumes" not in dep(c), f"{c} has no volumes (no NATS files)")
        eq(env_value(ctr, "ARQONBUS_AUTH_DEFAULT_TENANT"), "acme", "default tenant")
        eq(env_value(ctr, "ARQONBUS_AUTH_SYSTEM_SCOPE"), "false", "system scope off")
    if name == "nats-creds":
        # The .creds file from its own Secret and key, TLS required, no CA file (system roots).
        for c in COMPONENTS:
            eq(nats_env(c), [
                {"name": "ARQONBUS_NATS_URL", "value": "tls://nats.example.com:4222"},
                {"name": "ARQONBUS_NATS_CREDS_FILE", "value": "/etc/arqonbus/nats/nats.creds"},
                {"name": "ARQONBUS_NATS_TLS_REQUIRED", "value": "true"},
            ], f"{c} NATS creds file and TLS")
            eq(dep(c)["volumes"], [{"name": "nats-files", "projected": {"defaultMode": 0o440, "sources": [
                {"secret": {"name": "arqonbus-nats-creds", "items": [{"key": "arqonbus.creds", "path": "nats.creds"}]}}]}}],
               f"{c} the .creds volume")
            eq(dep(c)["containers"][0]["volumeMounts"],
               [{"name": "nats-files", "mountPath": "/etc/arqonbus/nats", "readOnly": True}], f"{c} the .creds mount")
        eq(set(find(docs, "Secret", RELEASE)["data"]), {"jwt-secret", "service-token"}, "no NATS secret in the chart's Secret")


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
current = ""


def main():
    global current
    chart, values_dir, render_dir = sys.argv[1:4]
    with open(os.path.join(chart, "values.yaml")) as f:
        defaults = yaml.safe_load(f)
    sets = sorted(n[:-5] for n in os.listdir(values_dir) if n.endswith(".yaml"))
    for name in sets:
        current = name
        with open(os.path.join(values_dir, name + ".yaml")) as f:
            values = merge(defaults, yaml.safe_load(f))
        with open(os.path.join(render_dir, name + ".yaml")) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        common(docs, values)
        literal(name, docs)
    for line in failed:
        print(f"FAIL {line}")
    print(f"assertions: {passed} passed, {len(failed)} failed over {len(sets)} renders")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
