"""`helm install` of the injector chart as a user runs it, and the API
server calling the webhook through the chart's MutatingWebhookConfiguration
and Service: with the self-signed bootstrap, then with a certificate from a
pre-made Secret (what cert-manager leaves).
"""

from __future__ import annotations

import base64
import subprocess
from datetime import datetime, timezone

from clients import INJECTOR, RELEASE_NS, eventually, get, helm, injector_metrics_by_pod, kubectl
from conftest import install_injector

WEBHOOK_CONFIG = f"{INJECTOR}-{RELEASE_NS}"


def ca_bundle() -> bytes:
    config = get("mutatingwebhookconfiguration", WEBHOOK_CONFIG)
    return base64.b64decode(config["webhooks"][0]["clientConfig"].get("caBundle", ""))


def expiry_metric() -> set[float]:
    """The certificate expiry each replica reports."""
    return {v for metrics in injector_metrics_by_pod().values() for k, v in metrics.items()
            if k.startswith("linnix_injector_certificate_expiry_timestamp_seconds")}


def test_the_default_install_serves_a_self_signed_certificate(injector):
    assert helm("status", "linnix", "-n", RELEASE_NS).stdout.count("STATUS: deployed") == 1
    # Each replica merged its own CA into the caBundle it patched.
    assert ca_bundle().count(b"-----BEGIN CERTIFICATE-----") >= 1
    ready = get("deployment", INJECTOR, RELEASE_NS)["status"].get("readyReplicas")
    assert ready == 2


def test_a_certificate_from_a_pre_made_secret(injector, tmp_path):
    service = f"{INJECTOR}.{RELEASE_NS}.svc"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
            "-subj", "/CN=team-ca", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={service}",
            "-keyout", "tls.key", "-out", "tls.csr")
    (tmp_path / "ext").write_text(f"subjectAltName=DNS:{service}\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "20", "-extfile", "ext", "-out", "tls.crt")
    not_after = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", tmp_path / "tls.crt"],
                               check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    expected = datetime.strptime(not_after, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc).timestamp()

    kubectl("create", "secret", "tls", "webhook-tls", "-n", RELEASE_NS,
            f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}")
    ca = (tmp_path / "ca.crt").read_bytes()
    # In self-signed mode the injector owns the caBundle (field manager
    # linnix-injector), so an upgrade that changes the mode takes it over
    # with --force-conflicts (Helm 4 applies server-side). An upgrade, not
    # uninstall and install: recreating the policies' parameter ConfigMap
    # together with them leaves the API server evaluating stale parameters
    # (kubernetes/kubernetes#133827; README, Troubleshooting).
    try:
        install_injector("--force-conflicts","--set", "certificates.mode=existingSecret",
                         "--set", "certificates.existingSecret.name=webhook-tls",
                         "--set", f"certificates.existingSecret.caBundle={base64.b64encode(ca).decode()}")
        # The API server trusts only this CA now; its calls succeed (the
        # dry-run pod of install_injector came back injected), so the
        # replicas serve the Secret's certificate, as their metric says (a
        # replica that mounted an older copy of the Secret reloads it once
        # the kubelet has synced the volume).
        assert ca_bundle() == ca
        eventually("every replica serving the Secret's certificate",
                   lambda: expiry_metric() == {expected}, timeout=150, interval=2)
    finally:
        # --reset-values: without values, helm upgrade keeps the release's.
        install_injector("--force-conflicts", "--reset-values")
        kubectl("delete", "secret", "webhook-tls", "-n", RELEASE_NS, check=False)
    # Back to self-signed: once the rollout is over, every replica serves a
    # certificate of its own, and its CA is in the caBundle.
    eventually("every replica serving its own certificate again",
               lambda: expiry_metric() and expected not in expiry_metric(), timeout=120)
    eventually("the replicas' CAs in the caBundle",
               lambda: ca_bundle().replace(ca, b"").count(b"BEGIN CERTIFICATE"))
