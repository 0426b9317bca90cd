"""What an administrator types into a device's panel so that it sends through this gateway:
the SMTP server's address, each open port with its security, and the HTTP API's address.

Built once from the settings (`DevicePanel.of`); the console shows it next to a new secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from .settings import GatewaySettings

Security = Literal["STARTTLS", "SSL/TLS", "None"]


@dataclass(frozen=True)
class SmtpPort:
    port: int
    security: Security


@dataclass(frozen=True)
class DevicePanel:
    smtp_host: str
    smtp_ports: tuple[SmtpPort, ...]
    """The ports the listener opens, the most secure first (none: devices use the HTTP API)."""
    http_url: str

    @classmethod
    def of(cls, settings: GatewaySettings) -> DevicePanel:
        """The TLS ports open only with a certificate, as the listener decides."""
        ports: list[SmtpPort] = []
        if settings.smtp_tls_cert is not None and settings.smtp_tls_key is not None:
            if settings.smtp_starttls_port:
                ports.append(SmtpPort(settings.smtp_starttls_port, "STARTTLS"))
            if settings.smtp_tls_port:
                ports.append(SmtpPort(settings.smtp_tls_port, "SSL/TLS"))
        if settings.smtp_plain_port:
            ports.append(SmtpPort(settings.smtp_plain_port, "None"))
        public = settings.public_url.rstrip("/")
        host = settings.smtp_public_host or urlsplit(public).hostname or public
        return cls(smtp_host=host, smtp_ports=tuple(ports), http_url=public)
