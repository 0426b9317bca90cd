"""What a new device's panel is told to use, from the gateway's settings."""

from __future__ import annotations

from pathlib import Path

from job_gateway.device_panel import DevicePanel, SmtpPort
from job_gateway.settings import GatewaySettings


def test_the_panel_names_the_open_ports_with_their_security_and_the_public_host() -> None:
    tls = {"smtp_tls_cert": Path("/tls/cert.pem"), "smtp_tls_key": Path("/tls/key.pem")}
    panel = DevicePanel.of(GatewaySettings(public_url="https://mail.fleet.example:8443/", **tls))
    assert panel.smtp_host == "mail.fleet.example"
    assert panel.smtp_ports == (SmtpPort(587, "STARTTLS"), SmtpPort(465, "SSL/TLS"))
    assert panel.http_url == "https://mail.fleet.example:8443"

    lan = GatewaySettings(smtp_public_host="relay.lan", smtp_plain_port=25, smtp_tls_port=0, **tls)
    assert DevicePanel.of(lan).smtp_host == "relay.lan"
    assert DevicePanel.of(lan).smtp_ports == (SmtpPort(587, "STARTTLS"), SmtpPort(25, "None"))


def test_without_a_certificate_no_tls_port_is_offered() -> None:
    assert DevicePanel.of(GatewaySettings()).smtp_ports == ()
    assert DevicePanel.of(GatewaySettings(smtp_plain_port=2525)).smtp_ports == (SmtpPort(2525, "None"),)
