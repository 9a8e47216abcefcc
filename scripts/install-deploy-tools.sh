#!/usr/bin/env bash
# Install the tools that validate the deployment files, idempotently, into
# ~/.cache/webhookmaster/deploy-tools (beside the Kafka jars; $DEPLOY_TOOLS_DIR to choose): helm built from its Go module, the KEDA and Prometheus-operator CRDs from their
# Go modules, the classpath of Strimzi's model classes (io.strimzi:api, Maven Central) for the
# KafkaTopic check, and kubernetes-validate + check-jsonschema into .venv (PyPI). A second run
# does nothing but check stamps. Needs: go, mvn, java, .venv (scripts/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${DEPLOY_TOOLS_DIR:-${WM_CACHE_DIR:-$HOME/.cache/webhookmaster}/deploy-tools}
HELM_VERSION=v3.22.0
KEDA_VERSION=v2.21.0
PROM_OPERATOR_VERSION=v0.85.0
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
mkdir -p "$TOOLS/bin" "$TOOLS/crds" "$TOOLS/strimzi"
# the Go toolchain's usual place, for shells whose PATH lacks it
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  PATH=$PATH:/usr/local/go/bin
fi

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "install-deploy-tools: '$1' is missing ($2)" >&2
    exit 1
  }
}

if [ ! -f "$TOOLS/helm-$HELM_VERSION.stamp" ] || [ ! -x "$TOOLS/bin/helm" ]; then
  need go "the Go toolchain builds helm from helm.sh/helm/v3"
  echo "install-deploy-tools: building helm $HELM_VERSION from its Go module (a few minutes once)"
  GOBIN="$TOOLS/bin" GOFLAGS=-buildvcs=false go install \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$TOOLS/helm-$HELM_VERSION.stamp"
fi

module_dir() {  # the module's folder in the Go module cache, downloaded when missing
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

if [ ! -f "$TOOLS/crds/keda-$KEDA_VERSION.stamp" ]; then
  need go "the CRDs come from Go modules"
  dir=$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")
  install -m 0644 "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$TOOLS/crds/"
  touch "$TOOLS/crds/keda-$KEDA_VERSION.stamp"
fi

if [ ! -f "$TOOLS/crds/prometheus-operator-$PROM_OPERATOR_VERSION.stamp" ]; then
  need go "the CRDs come from Go modules"
  dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION")
  for crd in servicemonitors prometheusrules; do
    install -m 0644 "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" \
      "$TOOLS/crds/"
  done
  touch "$TOOLS/crds/prometheus-operator-$PROM_OPERATOR_VERSION.stamp"
fi

STRIMZI_POM=tests/deploy/strimzi/pom.xml
STRIMZI_STAMP="$TOOLS/strimzi/$(sha256sum "$STRIMZI_POM" | cut -c1-16).stamp"
if [ ! -f "$STRIMZI_STAMP" ]; then
  need mvn "Maven fetches Strimzi's model classes"
  need java "the KafkaTopic check runs on Java 17+"
  mvn -q -B -f "$STRIMZI_POM" dependency:build-classpath \
    -Dmdep.outputFile="$TOOLS/strimzi/classpath.txt" ${WM_MAVEN_ARGS:-}
  rm -f "$TOOLS"/strimzi/*.stamp
  touch "$STRIMZI_STAMP"
fi

if ! .venv/bin/python - <<EOF 2>/dev/null
from importlib.metadata import version
assert version("kubernetes-validate") == "$KUBERNETES_VALIDATE_VERSION"
assert version("check-jsonschema") == "$CHECK_JSONSCHEMA_VERSION"
EOF
then
  .venv/bin/python -m pip install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi
echo "install-deploy-tools: ready in $TOOLS ($("$TOOLS/bin/helm" version --short))"
