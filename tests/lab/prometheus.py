"""A real Prometheus server (Debian's ``prometheus``) for tests, and TLS files for them.

``PrometheusServer`` writes a config of its own into a temporary folder, stores
its TSDB there, listens on a free loopback port, scrapes its jobs every second
and is stopped (SIGTERM, then SIGKILL) at the end. Readiness is its own log
line, not a poll. ``make_tls`` writes a throwaway CA and a server certificate
for 127.0.0.1/localhost signed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

PROMETHEUS = Path("/usr/bin/prometheus")
READY_LINE = "Server is ready to receive web requests"
START_TIMEOUT = 30.0


def prometheus_missing() -> str | None:
    """Why a Prometheus server cannot run here, or None."""
    if not PROMETHEUS.exists():
        return f"{PROMETHEUS} is missing: scripts/install-system-deps installs Debian's prometheus"
    return None


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: a target, and how to reach it.

    Attributes:
        name: the job label.
        target: ``host:port``.
        scheme: ``http`` or ``https``.
        token: a bearer token to send, or None.
        ca_file: the CA to trust for ``https``.
        server_name: the name to check the certificate against (the target's host if None).
    """

    name: str
    target: str
    scheme: str = "http"
    token: str | None = None
    ca_file: Path | None = None
    server_name: str | None = None


class PrometheusError(RuntimeError):
    """The Prometheus server could not start or answered an error."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """A Prometheus server scraping ``jobs`` every ``interval``; an async context manager."""

    def __init__(self, jobs: list[ScrapeJob], *, interval: str = "1s") -> None:
        self.jobs = jobs
        self.interval = interval
        self.port = 0
        self._dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._log: list[str] = []
        self._http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_tail(self) -> str:
        return "\n".join(self._log[-30:])

    def _config(self, folder: Path) -> dict[str, object]:
        scrape_configs: list[dict[str, object]] = []
        for job in self.jobs:
            config: dict[str, object] = {
                "job_name": job.name,
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "metrics_path": "/metrics",
                "scheme": job.scheme,
                "static_configs": [{"targets": [job.target]}],
            }
            if job.token is not None:
                # From a file of its own: the token never appears on a command line.
                token_file = folder / f"{job.name}.token"
                token_file.write_text(job.token)
                token_file.chmod(0o600)
                config["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
            if job.ca_file is not None:
                tls: dict[str, object] = {"ca_file": str(job.ca_file)}
                if job.server_name is not None:
                    tls["server_name"] = job.server_name
                config["tls_config"] = tls
            scrape_configs.append(config)
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "scrape_configs": scrape_configs,
        }

    async def start(self) -> None:
        """Start it and return once it says it is ready for web requests."""
        folder = self._dir = Path(tempfile.mkdtemp(prefix="otto-prometheus-"))
        config_file = folder / "prometheus.yml"
        config_file.write_text(json.dumps(self._config(folder), indent=1))  # JSON is YAML
        self.port = _free_port()
        self._process = await asyncio.create_subprocess_exec(
            str(PROMETHEUS),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=info",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=folder,
        )
        self._reader = asyncio.create_task(self._read_log())
        ready = asyncio.create_task(self._ready.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, self._reader}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if not self._ready.is_set():
            await self.stop()
            reason = "exited" if done else f"was not ready within {START_TIMEOUT:g}s"
            raise PrometheusError(f"prometheus {reason}; its log ends:\n{self.log_tail}")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=10.0)

    async def _read_log(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        async for raw in self._process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._log.append(line)
            if READY_LINE in line:
                self._ready.set()

    async def query(self, promql: str) -> list[dict[str, object]]:
        """The result vector of an instant query (``/api/v1/query``)."""
        assert self._http is not None, "start() first"
        response = await self._http.get("/api/v1/query", params={"query": promql})
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {response.status_code} {body}")
        result = body["data"]["result"]
        assert isinstance(result, list)
        return result

    async def targets(self) -> list[dict[str, object]]:
        """The active targets, with their health and last error (``/api/v1/targets``)."""
        assert self._http is not None, "start() first"
        response = await self._http.get("/api/v1/targets", params={"state": "active"})
        response.raise_for_status()
        active = response.json()["data"]["activeTargets"]
        assert isinstance(active, list)
        return active

    async def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A CA certificate and a server certificate and key it signed, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for ``localhost``, 127.0.0.1 and ::1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otto test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(files.key, 0o600)
    return files
