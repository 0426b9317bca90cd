"""A real Prometheus scrapes every service during an end-to-end run, and PromQL returns the
job counts the test sent.

Prometheus comes from Debian's `prometheus` package, which `.ci/run` installs; where the
binary is absent the test is skipped, and says so.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from fleetmail_devkit.ports import free_port
from fleetmail_devkit.probes import device_panel, tenant_with_administrator_grant

SERVICES = ("job-gateway", "token-service", "mail-service", "notifier")
JOBS = 12
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = Path(__file__).with_name("prometheus_rules_test.yml")

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="the prometheus binary is absent (Debian package 'prometheus'; .ci/run installs it)",
)


async def query(http: httpx.AsyncClient, promql: str) -> float:
    response = await http.get("/api/v1/query", params={"query": promql})
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


async def test_the_alert_rules_fire_on_their_conditions_only(tmp_path: Path) -> None:
    """deploy/prometheus/alerts.yml is valid and each rule fires when, and only when, its
    condition holds for its `for:` (promtool's rule unit tests, on synthetic series)."""
    shutil.copy(RULES, tmp_path / "alerts.yml")
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yml")
    for command in (("check", "rules", "alerts.yml"), ("test", "rules", "rules_test.yml")):
        process = await asyncio.create_subprocess_exec(
            "promtool",
            *command,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()


async def test_prometheus_scrapes_every_service_and_counts_the_jobs(stack, emulator_http) -> None:
    principal = await tenant_with_administrator_grant(stack, emulator_http)
    tenant = principal.tenant_id
    workdir = Path(tempfile.mkdtemp(prefix="fleetmail-prometheus-"))
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": service,
                "static_configs": [{"targets": [f"127.0.0.1:{stack.metrics_port(service)}"]}],
            }
            for service in SERVICES
        ],
        "rule_files": [str(RULES)],
    }
    # JSON is YAML: no YAML writer needed.
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    process = await asyncio.create_subprocess_exec(
        "prometheus",
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False
        ) as prom:
            for _ in range(100):
                try:
                    if (await prom.get("/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)

            # Prometheus hands targets to its scrape pools a few seconds after it is ready:
            # wait until each service has been scraped once.
            health: dict[str, str] = {}
            for _ in range(150):
                targets = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
                health = {t["labels"]["job"]: t["health"] for t in targets}
                if health == dict.fromkeys(SERVICES, "up"):
                    break
                await asyncio.sleep(0.2)
            assert health == dict.fromkeys(SERVICES, "up"), f"not every service is scraped: {health}"

            async with device_panel(stack, tenant) as panel:
                for _ in range(JOBS):
                    job = {"function": "scan_to_email", "to": ["x@fabrikam.example"]}
                    response = await panel.post("/v1/jobs", data={"job": json.dumps(job)})
                    assert response.status_code == 202, response.text

            received = f'sum(fleetmail_jobs_received_total{{tenant="{tenant}"}})'
            sent = f'sum(fleetmail_jobs_sent_total{{tenant="{tenant}"}})'
            latency = f'sum(fleetmail_delivery_latency_seconds_count{{tenant="{tenant}"}})'
            figures: tuple[float, ...] = ()
            for _ in range(100):
                figures = (await query(prom, received), await query(prom, sent), await query(prom, latency))
                if figures == (JOBS, JOBS, JOBS):
                    break
                await asyncio.sleep(0.3)
            assert figures == (JOBS, JOBS, JOBS), f"received, sent, latency count: {figures}"

            # Every service stayed a healthy target while the jobs ran. (A scrape counts as up
            # when it answers within the 1 s timeout; on two loaded cores one may not, so the
            # test asks whether each target was up during the run, not at this instant.)
            up = {
                service: await query(prom, f'max_over_time(up{{job="{service}"}}[5m])')
                for service in SERVICES
            }
            assert up == dict.fromkeys(SERVICES, 1.0), up
            # And each exposes fleetmail's own series (gauges are read every second: the next
            # scrape may be the first to carry them).
            own = {
                'sum(fleetmail_grants{status="active"})': 1,
                "count(fleetmail_consumer_pending)": 4,
                'sum(fleetmail_token_requests_total{outcome="granted"})': 1,
                # The series the alert rules read exist under the names the rules use.
                "max(fleetmail_attachment_store_limit_bytes)": 1,
                "count(fleetmail_attachment_store_bytes)": 1,
                "count(fleetmail_grant_time_to_predicted_death_seconds)": 1,
            }
            seen: dict[str, float] = {}
            for _ in range(50):
                seen = {promql: await query(prom, promql) for promql in own}
                if all(seen[promql] >= least for promql, least in own.items()):
                    break
                await asyncio.sleep(0.3)
            assert all(seen[promql] >= least for promql, least in own.items()), seen
            # The alert rules evaluate on the series as the services export them.
            rules: dict[str, str] = {}
            for _ in range(50):
                groups = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
                rules = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
                if rules and set(rules.values()) == {"ok"}:
                    break
                await asyncio.sleep(0.3)
            assert rules and set(rules.values()) == {"ok"}, rules
    finally:
        process.terminate()
        await process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
