#!/usr/bin/env python3
"""Validates rendered manifests against the Kubernetes schemas of kubernetes-validate.

    validate.py --kube-version 1.30.0 RENDER.yaml...

Every document is checked in strict mode (unknown fields are errors) against the
schemas of one Kubernetes version. A kind the schemas do not know is an error, except
the custom kinds listed in CUSTOM_KINDS: those are checked against the openAPIV3Schema of
their CustomResourceDefinition when the same render carries it (`helm template
--include-crds`), and otherwise reported as skipped, by name. Exit status 1 when any
document fails.
"""

import argparse
import functools
import sys

import jsonschema
import yaml
from kubernetes_validate import utils

# The custom kinds the chart may render, and why kubernetes-validate cannot know them.
CUSTOM_KINDS = {
    ("arqonbus.io/v1alpha1", "CasilPolicy"): "ArqonBus's own CRD (crds/casilpolicies.arqonbus.io.yaml)",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "a Prometheus Operator CRD",
    ("monitoring.coreos.com/v1", "PodMonitor"): "a Prometheus Operator CRD",
}

# Loading the schema files is most of the cost; every document of a kind reuses them.
utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)


def crd_schemas(documents):
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in the render."""
    schemas = {}
    for doc in documents:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec", {})
        group, kind = spec.get("group"), spec.get("names", {}).get("kind")
        for version in spec.get("versions", []):
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is not None:
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def describe(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kube-version", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    failures = checked = skipped = 0
    for path in args.files:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        crds = crd_schemas(documents)
        for doc in documents:
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in CUSTOM_KINDS:
                schema = crds.get(key)
                if schema is None:
                    print(f"SKIP {path}: {describe(doc)}: {key[0]} {key[1]} is {CUSTOM_KINDS[key]}; "
                          "no CRD in this render to check it against")
                    skipped += 1
                    continue
                errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
                for error in errors:
                    where = ".".join(str(p) for p in error.absolute_path)
                    print(f"ERROR {path}: {describe(doc)} against its CRD: {where}: {error.message}")
                failures += bool(errors)
                checked += 1
                continue
            try:
                utils.validate(doc, args.kube_version, strict=True)
                checked += 1
            except utils.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                print(f"ERROR {path}: {describe(doc)} (Kubernetes {e.version}, strict): {where}: {e.message}")
                failures += 1
            except utils.SchemaNotFoundError as e:
                print(f"ERROR {path}: {describe(doc)}: {e.message} (an unknown kind is an error; "
                      "only the custom kinds in CUSTOM_KINDS may be skipped)")
                failures += 1
    print(f"validate: {checked} manifests valid against Kubernetes {args.kube_version} (strict), "
          f"{skipped} custom resources skipped, {failures} invalid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
