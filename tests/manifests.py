"""Checks every shipped deployment manifest (docs/deploying.md).

1. Against the real schemas in ../shared/schemas/ (relative to the
   repository root): the Kubernetes kinds of envoy/k8s/ with the strict
   schemas of Kubernetes 1.30 and 1.37 (kubernetes-validate's, unknown
   fields refused as `kubectl apply` refuses them), the kustomization with
   kustomize's, the Istio resources of envoy/istio/ with the structural
   schemas of the Istio 1.28 and 1.30 CRDs (made strict the same way), and
   the compose files with the compose specification; the native module's
   Istio EnvoyFilter (envoy/native/) with the Istio schemas too (Envoy
   Gateway's resources there are checked by tests/shipped.rs: their CRDs
   are not among the schemas). When ../shared/schemas
   is absent, one line says so and this part is skipped.
2. The names across files, always: the Service's name, namespace and port
   are what the WasmPlugin's token_service cluster and authority and the
   DestinationRule's host name; the kustomization puts everything in that
   namespace, which a shipped Namespace creates; selectors, ports and the
   Secret match between the Deployment, the Service and the PDB; the
   EnvoyFilter sits on the WasmPlugin's workloads; the compose files run the
   service that envoy/envoy-compose.yaml's token_service cluster resolves.

Run by tests/manifests.rs (cargo test). Exit 0 when every check passes,
1 with one line per problem otherwise. Prints what it checked.
"""

import copy
import glob
import json
import os
import re
import sys

import jsonschema
import referencing
import yaml
from kubernetes_validate.utils import resources_from_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(os.path.dirname(ROOT), "shared", "schemas")
K8S_VERSIONS = ["v1.30.0", "v1.37.0"]
ISTIO_VERSIONS = ["1.28.10", "1.30.3"]

problems = []
checked = []


def problem(text):
    problems.append(text)


def rel(path):
    return os.path.relpath(path, ROOT)


def load(path):
    return resources_from_file(path)


def where(error):
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def report(path, doc, against, validator):
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors[:5]:
        problem(f"{rel(path)}: {doc.get('kind', 'document')} against {against}: {where(e)}: {e.message}")
    checked.append(f"{rel(path)} {doc.get('kind', '')} against {against}".rstrip())


# ---------------------------------------------------------------- schemas

def k8s_validator(version, kind, api_version):
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    base = os.path.join(SCHEMAS, "k8s", version)
    path = os.path.join(base, f"{kind.lower()}-{group}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        schema = json.load(f)
    with open(os.path.join(base, "_definitions.json")) as f:
        definitions = json.load(f)
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def object_meta_validator(version):
    """Kubernetes' ObjectMeta (strict), for the metadata of a custom resource."""
    with open(os.path.join(SCHEMAS, "k8s", version, "_definitions.json")) as f:
        definitions = json.load(f)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "https://kubernetes.io/api/_definitions.json#/$defs/"
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    }
    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def strict(schema):
    """An OpenAPI v3 structural schema as JSON schema, with unknown fields
    refused (what strict field validation does) except where the schema
    preserves them, and `nullable` honoured."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def istio_validators(version):
    """(group, version, kind) -> validator of the resource without its
    apiVersion, kind and metadata."""
    with open(os.path.join(SCHEMAS, "istio", f"crd-all.gen.{version}.yaml")) as f:
        crds = [d for d in yaml.safe_load_all(f) if d]
    out = {}
    for crd in crds:
        spec = crd["spec"]
        for v in spec["versions"]:
            if not v.get("served"):
                continue
            schema = strict(v["schema"]["openAPIV3Schema"])
            schema.setdefault("type", "object")
            out[(spec["group"], v["name"], spec["names"]["kind"])] = jsonschema.Draft7Validator(schema)
    return out


def istio_files():
    """envoy/istio/ and the native module's Istio EnvoyFilter (envoy/native/)."""
    return sorted(glob.glob(os.path.join(ROOT, "envoy", "istio", "*.yaml"))) + [
        os.path.join(ROOT, "envoy", "native", "istio-envoyfilter.yaml")]


def validate_with_schemas():
    k8s_docs = []
    for path in sorted(glob.glob(os.path.join(ROOT, "envoy", "k8s", "*.yaml"))):
        for doc in load(path):
            k8s_docs.append((path, doc))
    for path, doc in k8s_docs:
        if doc.get("kind") == "Kustomization":
            with open(os.path.join(SCHEMAS, "kustomize", "kustomization.json")) as f:
                report(path, doc, "kustomize", jsonschema.Draft7Validator(json.load(f)))
            continue
        for version in K8S_VERSIONS:
            validator = k8s_validator(version, doc["kind"], doc["apiVersion"])
            if validator is None:
                problem(f"{rel(path)}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}")
                continue
            report(path, doc, f"Kubernetes {version} (strict)", validator)

    meta = object_meta_validator(K8S_VERSIONS[-1])
    for version in ISTIO_VERSIONS:
        validators = istio_validators(version)
        for path in istio_files():
            for doc in load(path):
                if not doc["apiVersion"].split("/")[0].endswith("istio.io"):
                    continue
                group, _, api = doc["apiVersion"].partition("/")
                validator = validators.get((group, api, doc["kind"]))
                if validator is None:
                    problem(f"{rel(path)}: Istio {version} serves no {doc['apiVersion']} {doc['kind']}")
                    continue
                body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
                body_doc = dict(body, kind=doc["kind"])
                errors = list(validator.iter_errors(body)) + list(meta.iter_errors(doc.get("metadata", {})))
                for e in errors[:5]:
                    problem(f"{rel(path)}: {doc['kind']} against Istio {version}: {where(e)}: {e.message}")
                checked.append(f"{rel(path)} {body_doc['kind']} against Istio {version} (strict)")

    with open(os.path.join(SCHEMAS, "compose", "compose-spec.json")) as f:
        compose = jsonschema.Draft7Validator(json.load(f))
    for path in sorted(glob.glob(os.path.join(ROOT, "envoy", "docker-compose*.yaml"))):
        for doc in load(path):
            report(path, doc, "the compose specification", compose)


# ---------------------------------------------------------------- names

def one(docs, kind):
    found = [d for _, d in docs if d.get("kind") == kind]
    if len(found) != 1:
        problem(f"expected one {kind}, found {len(found)}")
        return {}
    return found[0]


def dockerfile_cmd(service):
    """The CMD of the compose service's build target, as a list."""
    build = service.get("build") or {}
    dockerfile = os.path.join(ROOT, "envoy", build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    target = build.get("target")
    stage = None
    with open(dockerfile) as f:
        for line in f:
            m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
            if m:
                stage = m.group(1)
            elif line.startswith("CMD ") and (target is None or stage == target):
                return json.loads(line[4:])
    return []


def check_names():
    k8s = []
    for path in sorted(glob.glob(os.path.join(ROOT, "envoy", "k8s", "*.yaml"))):
        for doc in load(path):
            k8s.append((path, doc))
    istio = []
    for path in sorted(glob.glob(os.path.join(ROOT, "envoy", "istio", "*.yaml"))):
        for doc in load(path):
            istio.append((path, doc))

    kustomization = one(k8s, "Kustomization")
    namespace = kustomization.get("namespace")
    if not namespace:
        problem("envoy/k8s/kustomization.yaml sets no namespace: `kubectl apply -k` would use the current one")
    listed = set(kustomization.get("resources", []))
    for path, doc in k8s:
        name = os.path.basename(path)
        if doc.get("kind") == "Kustomization":
            continue
        if name not in listed:
            problem(f"{rel(path)} is not in kustomization.yaml's resources")
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != namespace:
            problem(f"{rel(path)}: {doc['kind']} namespace {doc['metadata'].get('namespace')!r}, "
                    f"the kustomization's is {namespace!r}")
    ns = one(k8s, "Namespace")
    if ns.get("metadata", {}).get("name") != namespace:
        problem(f"the shipped Namespace is {ns.get('metadata', {}).get('name')!r}, the kustomization's {namespace!r}")

    service = one(k8s, "Service")
    deployment = one(k8s, "Deployment")
    pdb = one(k8s, "PodDisruptionBudget")
    secret = one(k8s, "Secret")
    svc_name = service["metadata"]["name"]
    ports = service["spec"]["ports"]
    port = ports[0]["port"] if len(ports) == 1 else None
    if port is None:
        problem(f"the Service has {len(ports)} ports, expected one")
    fqdn = f"{svc_name}.{namespace}.svc.cluster.local"

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for what, selector in [
        ("the Service's selector", service["spec"]["selector"]),
        ("the Deployment's selector", deployment["spec"]["selector"]["matchLabels"]),
        ("the PDB's selector", pdb["spec"]["selector"]["matchLabels"]),
    ]:
        if any(pod_labels.get(k) != v for k, v in selector.items()):
            problem(f"{what} {selector} does not select the Deployment's pods {pod_labels}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    target = ports[0].get("targetPort")
    if target not in container_ports and target not in container_ports.values():
        problem(f"the Service's targetPort {target!r} is no port of the container {container_ports}")
    args = container.get("args", [])
    listen = args[args.index("--listen") + 1] if "--listen" in args else ""
    if listen.rpartition(":")[2] != str(container_ports.get(target, target)):
        problem(f"the container listens on {listen!r}, the Service sends to {target!r}")
    refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    if secret["metadata"]["name"] not in refs:
        problem(f"the Deployment reads the Secrets {refs}, the shipped one is {secret['metadata']['name']!r}")

    plugin = one(istio, "WasmPlugin")
    rule = one(istio, "DestinationRule")
    envoy_filter = one(istio, "EnvoyFilter")
    ts = plugin["spec"]["pluginConfig"]["token_service"]
    if ts["cluster"] != f"outbound|{port}||{fqdn}":
        problem(f"the WasmPlugin's token_service cluster {ts['cluster']!r} is not the Service's "
                f"outbound|{port}||{fqdn}")
    if ts["authority"] != fqdn:
        problem(f"the WasmPlugin's token_service authority {ts['authority']!r} is not the Service's {fqdn}")
    with open(os.path.join(ROOT, "envoy", "istio", "plugin.json")) as f:
        plugin_json = json.load(f)["token_service"]
    if (plugin_json["cluster"], plugin_json["authority"]) != (ts["cluster"], ts["authority"]):
        problem("envoy/istio/plugin.json's token_service differs from the WasmPlugin's")
    if rule["spec"]["host"] != fqdn:
        problem(f"the DestinationRule's host {rule['spec']['host']!r} is not the Service's {fqdn}")
    if rule["metadata"].get("namespace") != namespace:
        problem(f"the DestinationRule is in {rule['metadata'].get('namespace')!r}, the Service in {namespace!r}")
    if envoy_filter["metadata"].get("namespace") != plugin["metadata"].get("namespace"):
        problem("the EnvoyFilter and the WasmPlugin are in different namespaces")
    if envoy_filter["spec"]["workloadSelector"]["labels"] != plugin["spec"]["selector"]["matchLabels"]:
        problem("the EnvoyFilter's workloadSelector is not the WasmPlugin's selector")
    own = f"{plugin['metadata'].get('namespace')}.{plugin['metadata']['name']}"
    for patch in envoy_filter["spec"]["configPatches"]:
        sub = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
        if own not in sub:
            problem(f"the EnvoyFilter patches around {sub!r}, not the WasmPlugin {own}")
    # The native module's EnvoyFilter (envoy/native/): on the WasmPlugin's
    # workloads, calling the same Service.
    native_path = os.path.join(ROOT, "envoy", "native", "istio-envoyfilter.yaml")
    native = load(native_path)[0]
    if native["spec"]["workloadSelector"]["labels"] != plugin["spec"]["selector"]["matchLabels"]:
        problem(f"{rel(native_path)}: its workloadSelector is not the WasmPlugin's selector")
    modules = [p["patch"]["value"] for p in native["spec"]["configPatches"]
               if "dynamic_modules" in p["patch"]["value"]["typed_config"]["@type"]]
    if len(modules) != 1:
        problem(f"{rel(native_path)}: {len(modules)} dynamic-module filters, expected one")
    for m in modules:
        native_ts = json.loads(m["typed_config"]["filter_config"]["value"])["token_service"]
        if (native_ts["cluster"], native_ts["authority"]) != (ts["cluster"], ts["authority"]):
            problem(f"{rel(native_path)}: the module's token_service is not the WasmPlugin's")
    checked.append(f"names: {rel(native_path)} on the WasmPlugin's workloads, calling {ts['cluster']}")
    checked.append(f"names: Service {svc_name}.{namespace}:{port} = WasmPlugin token_service = "
                   f"DestinationRule host; Namespace, kustomization, selectors, ports, Secret; EnvoyFilter on the WasmPlugin")

    # compose: envoy/envoy-compose.yaml's token_service cluster resolves to
    # the token service's containers.
    with open(os.path.join(ROOT, "envoy", "envoy-compose.yaml")) as f:
        bootstrap = yaml.safe_load(f)
    cluster = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "token_service")
    addresses = {
        (e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"])
        for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]
    }
    for path in sorted(glob.glob(os.path.join(ROOT, "envoy", "docker-compose*.yaml"))):
        for doc in load(path):
            services = doc["services"]
            for host, port_value in addresses:
                answering = []
                for name, s in services.items():
                    aliases = []
                    for net in (s.get("networks") or {}).values() if isinstance(s.get("networks"), dict) else []:
                        aliases += (net or {}).get("aliases", [])
                    if host == name or host in aliases:
                        answering.append((name, s))
                if not answering:
                    problem(f"{rel(path)}: no service answers to {host!r}, envoy-compose.yaml's token_service cluster")
                for name, s in answering:
                    # Without a command, the image's CMD (token-service/Dockerfile).
                    command = s.get("command") or dockerfile_cmd(s)
                    listen = command[command.index("--listen") + 1] if "--listen" in command else "127.0.0.1:8090"
                    if listen != f"0.0.0.0:{port_value}":
                        problem(f"{rel(path)}: {name} listens on {listen}, envoy-compose.yaml calls port {port_value}")
                    if "--db" in command and "TOKEN_SERVICE_DB" in (s.get("environment") or {}):
                        problem(f"{rel(path)}: {name} has a --db flag: TOKEN_SERVICE_DB would lose")
            checked.append(f"names: {rel(path)} answers envoy-compose.yaml's token_service cluster {sorted(addresses)}")


def main():
    if os.path.isdir(SCHEMAS):
        validate_with_schemas()
    else:
        print(f"manifests: {SCHEMAS} is absent: the schema validation is skipped (the names are still checked)")
    check_names()
    for line in checked:
        print(f"checked: {line}")
    for line in problems:
        print(f"PROBLEM: {line}")
    print(f"manifests: {len(checked)} checks, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
