"""The certificates of a local control plane: one CA, serving certificates, client certificates.

What kubeadm lays out under /etc/kubernetes/pki, for one machine: a CA that signs the API server's
serving certificate (valid for 127.0.0.1, localhost and the `kubernetes` Service's names), the node
agent's serving certificate (the kubelet API, which the API server verifies with the same CA), the
API server's client certificate for the kubelet API, and the service-account signing key pair.
Everything is PEM; keys are ECDSA P-256 (accepted everywhere Kubernetes reads keys) except the
service-account key, RSA as the Kubernetes docs' examples use.
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Every file the control plane's components are started with."""

    ca: Pair
    apiserver: Pair
    kubelet_client: Pair  # the API server's identity towards the kubelet API
    node_serving: Pair  # the node agent's kubelet API
    service_account_key: Path
    service_account_public_key: Path


def create(folder: Path, node_name: str, apiserver_host: str = "127.0.0.1") -> Pki:
    """Write a fresh PKI into `folder` (created if needed); the paths of what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "autoscene-control-plane-ca")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = _write(folder, "ca", ca_cert, ca_key)

    def leaf(name: str, common_name: str, usage: x509.ObjectIdentifier, hosts: tuple[str, ...] = ()) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), ca_cert.subject, key
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        return _write(folder, name, builder.sign(ca_key, hashes.SHA256()), key)

    service_names = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    apiserver = leaf(
        "apiserver",
        "kube-apiserver",
        ExtendedKeyUsageOID.SERVER_AUTH,
        (apiserver_host, "127.0.0.1", "localhost", "10.0.0.1", *service_names),
    )
    kubelet_client = leaf(
        "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    node_serving = leaf(
        "node", node_name, ExtendedKeyUsageOID.SERVER_AUTH, ("127.0.0.1", "localhost", node_name)
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private = folder / "sa.key"
    sa_private.write_bytes(_private_pem(sa_key))
    sa_private.chmod(0o600)
    sa_public = folder / "sa.pub"
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(ca, apiserver, kubelet_client, node_serving, sa_private, sa_public)


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + VALIDITY)
    )


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(folder: Path, name: str, cert: x509.Certificate, key: PrivateKey) -> Pair:
    pair = Pair(folder / f"{name}.crt", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_private_pem(key))
    pair.key.chmod(0o600)
    return pair
