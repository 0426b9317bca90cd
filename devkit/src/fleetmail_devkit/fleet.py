"""A sample fleet: a demo tenant, its administrator token and a few devices sending scans.

Used by `make run` / `make demo` and by the end-to-end test; it talks to the stack only
through job-gateway's HTTP API and the emulators' control APIs, as a real fleet would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .stack import Stack

TENANT = "contoso"
ADMINISTRATOR = "scanner-admin@contoso.example"


def sample_pdf(title: str) -> bytes:
    """A small, valid one-page PDF."""
    text = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(text)).encode() + b" >>\nstream\n" + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@dataclass
class Device:
    device_id: str
    secret: str


class DemoError(Exception):
    pass


class SampleFleet:
    def __init__(self, stack: Stack, say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.say = say
        self.http = httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0)
        self.emulator = httpx.AsyncClient(verify=stack.ssl_context(), timeout=10.0, trust_env=False)
        self.admin_headers = {"Authorization": f"Bearer {stack.admin_api_key()}"}

    async def close(self) -> None:
        await self.http.aclose()
        await self.emulator.aclose()

    async def _ok(self, response: httpx.Response) -> dict:
        if response.status_code >= 400:
            raise DemoError(
                f"{response.request.method} {response.request.url.path} → {response.status_code}: {response.text}"
            )
        return response.json()

    async def create_tenant(self) -> None:
        body = {
            "tenant_id": TENANT,
            "display_name": "Contoso (demo)",
            "oauth_enabled": True,
            "provider": "microsoft",
            "administrator_address": ADMINISTRATOR,
            "smtp": {"host": "127.0.0.1", "port": self.stack.ports.smtp_starttls, "security": "starttls"},
            "from_policy": "administrator_address",
        }
        await self._ok(
            await self.http.put(f"/v1/admin/tenants/{TENANT}", json=body, headers=self.admin_headers)
        )
        self.say(f"tenant '{TENANT}': OAuth 2.0 on, provider Microsoft, administrator {ADMINISTRATOR}")

    async def acquire_administrator_token(self, timeout_s: float = 60.0) -> None:
        started = await self._ok(
            await self.http.post(
                f"/v1/admin/tenants/{TENANT}/tokens/administrator/acquire", headers=self.admin_headers
            )
        )
        self.say("")
        self.say("  ┌─ [OAuth 2.0] Refresh Tokens (Administrator) ─ Acquire")
        self.say(f"  │ To sign in, open {started['verification_uri']}")
        self.say(f"  │ and enter the code {started['user_code']}")
        self.say("  └─ (the Microsoft emulator approves it as the administrator)")
        self.say("")
        approved = await self.emulator.post(
            f"{self.stack.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": started["user_code"], "user": ADMINISTRATOR},
        )
        if approved.status_code != 200:
            raise DemoError(f"the emulator did not accept the code: {approved.text}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = await self._ok(
                await self.http.get(
                    f"/v1/admin/tenants/{TENANT}/acquisitions/{started['acquisition_id']}",
                    headers=self.admin_headers,
                )
            )
            if status["state"] == "succeeded":
                self.say(f"refresh token (administrator): Acquired — {status.get('detail')}")
                return
            if status["state"] in ("failed", "expired"):
                raise DemoError(f"token acquisition {status['state']}: {status.get('detail')}")
            await asyncio.sleep(0.5)
        raise DemoError("token acquisition did not finish in time")

    async def register_devices(self, count: int) -> list[Device]:
        devices = []
        for n in range(1, count + 1):
            device_id = f"mfp-{n:02d}"
            body = await self._ok(
                await self.http.post(
                    f"/v1/admin/tenants/{TENANT}/devices",
                    json={"device_id": device_id, "name": f"Floor {n} multifunction printer"},
                    headers=self.admin_headers,
                )
            )
            devices.append(Device(device_id, body["secret"]))
        self.say(f"registered {count} devices: {', '.join(d.device_id for d in devices)}")
        return devices

    async def submit_scan(self, device: Device, n: int) -> str:
        job = {
            "function": "scan_to_email",
            "to": [f"recipient{n}@fabrikam.example"],
            "subject": f"Scan {n} from {device.device_id}",
            "body": "Scanned document attached.",
        }
        files = {
            "files": (f"scan-{n}.pdf", sample_pdf(f"Scan {n} from {device.device_id}"), "application/pdf")
        }
        body = await self._ok(
            await self.http.post(
                "/v1/jobs", data={"job": json.dumps(job)}, files=files, auth=(device.device_id, device.secret)
            )
        )
        return str(body["job_id"])

    async def run(
        self, devices: int = 3, jobs_per_device: int = 2, timeout_s: float = 90.0
    ) -> tuple[int, int]:
        await self.create_tenant()
        await self.acquire_administrator_token()
        fleet = await self.register_devices(devices)
        submitted: dict[str, Device] = {}
        n = 0
        for device in fleet:
            for _ in range(jobs_per_device):
                n += 1
                submitted[await self.submit_scan(device, n)] = device
        self.say(f"submitted {len(submitted)} scan-to-email jobs")
        pending = dict(submitted)
        delivered = 0
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for job_id, device in list(pending.items()):
                status = await self._ok(
                    await self.http.get(f"/v1/jobs/{job_id}", auth=(device.device_id, device.secret))
                )
                if status["status"] == "sent":
                    delivered += 1
                    self.say(
                        f"  delivered  job {job_id[:8]} from {device.device_id} — {status.get('smtp_reply', '')[:60]}"
                    )
                    del pending[job_id]
                elif status["status"] == "failed":
                    self.say(
                        f"  FAILED     job {job_id[:8]} from {device.device_id} — {status.get('detail')}"
                    )
                    del pending[job_id]
            await asyncio.sleep(0.3)
        for job_id in pending:
            self.say(f"  MISSING    job {job_id[:8]}: not delivered within {timeout_s:.0f} s")
        return delivered, len(submitted)
