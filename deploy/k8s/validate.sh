#!/usr/bin/env bash
# Validates the Kubernetes manifests of deploy/k8s/; CI runs it, and so can you before
# `kubectl apply -k deploy/k8s`. Exits non-zero on any problem.
#
# 1. render.py renders the kustomization as `kubectl kustomize` does (secrets.env.example
#    standing in for your secrets.env) and checks it against the repository: every file
#    listed, platform.toml equal to ../../platform.toml, the grace period covering preStop +
#    the host's drain, the Secret's keys, the ports of platform.toml, the selectors.
# 2. kubernetes-validate (pinned below, installed with pip if another version or none is
#    there) checks every rendered object against the Kubernetes schemas of each version
#    below, strictly: an unknown field, a missing required one, a wrong type, or a kind or
#    apiVersion it has no schema for fails.
# 3. Where kubectl is installed, its own kustomize renders the folder too, and both
#    renderings must be the same objects (so what was validated is what `kubectl apply -k`
#    applies).
set -euo pipefail

KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest and the newest Kubernetes the manifests are checked against.
KUBERNETES_VERSIONS="1.30.0 1.37.0"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}

installed=$("$python" -m kubernetes_validate --version 2>/dev/null || true)
if [ "$installed" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (found: ${installed:-none})"
  "$python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rendered=$work/rendered.yaml

failed=0
echo "== render and check against the repository"
# A failed check still leaves the rendering, so the schemas are checked too.
"$python" "$here/render.py" render "$here" "$rendered" || failed=1
if [ ! -s "$rendered" ]; then
  echo "deploy/k8s: INVALID (nothing rendered)" >&2
  exit 1
fi
objects=$(grep -c '^kind: ' "$rendered")

for version in $KUBERNETES_VERSIONS; do
  echo "== kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict, Kubernetes $version"
  status=0
  output=$("$python" -m kubernetes_validate --strict --kubernetes-version "$version" \
    "$rendered" 2>&1) || status=$?
  printf '%s\n' "$output" | sed "s|$rendered|rendered|"
  passed=$(printf '%s\n' "$output" | grep -c '^INFO .* passed for resource ' || true)
  # A kind kubernetes-validate has no schema for is only a warning (exit 0) to it: here it
  # is a failure, as is any object that did not report `passed`.
  if [ "$status" -ne 0 ] || printf '%s\n' "$output" | grep -qv '^INFO ' \
    || [ "$passed" -ne "$objects" ]; then
    echo "FAILED: Kubernetes $version: $passed of $objects objects passed" >&2
    failed=1
  fi
done

if command -v kubectl >/dev/null 2>&1; then
  echo "== kubectl kustomize renders the same objects"
  cp -R "$here" "$work/k8s"
  cp "$work/k8s/secrets.env.example" "$work/k8s/secrets.env"
  kubectl kustomize "$work/k8s" >"$work/kubectl.yaml"
  if "$python" "$here/render.py" compare "$rendered" "$work/kubectl.yaml"; then
    echo "the same $objects objects ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo kustomize))"
  else
    failed=1
  fi
else
  echo "== no kubectl here: render.py's rendering is the one validated"
fi

if [ "$failed" -ne 0 ]; then
  echo "deploy/k8s: INVALID" >&2
  exit 1
fi
echo "deploy/k8s: valid ($objects objects, Kubernetes $KUBERNETES_VERSIONS)"
