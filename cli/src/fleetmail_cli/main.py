"""`fleetmail`: tenants, devices, tokens, jobs, dead letters and the fleet's health, over
job-gateway's admin API.

Where to: `FLEETMAIL_URL` (default http://127.0.0.1:8080) with the key in
`FLEETMAIL_API_KEY` (default: the local stack's `.fleetmail/run/admin-api-key`, so after
`make run` it just works). Errors are the API's own problem details, in one red line.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
tenants = typer.Typer(help="Tenants and their settings", no_args_is_help=True)
devices = typer.Typer(help="Devices: register, list, new secret, disable", no_args_is_help=True)
tokens = typer.Typer(help="Refresh tokens: status, Acquire, Delete", no_args_is_help=True)
jobs = typer.Typer(help="Jobs", no_args_is_help=True)
dead = typer.Typer(help="Dead letters: jobs that failed for good", no_args_is_help=True)
for sub, name in (
    (tenants, "tenants"),
    (devices, "devices"),
    (tokens, "tokens"),
    (jobs, "jobs"),
    (dead, "dead-letters"),
):
    app.add_typer(sub, name=name)

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def key_files() -> list[Path]:
    """Where a local key is looked for, in order: the data dir a service was given, then
    where `make run` keeps its data (`.fleetmail/run`), then a service's default data dir."""
    if data_dir := os.environ.get("FLEETMAIL_DATA_DIR"):
        return [Path(data_dir) / "admin-api-key"]
    return [Path(".fleetmail") / "run" / "admin-api-key", Path(".fleetmail") / "admin-api-key"]


def client() -> httpx.Client:
    url = os.environ.get("FLEETMAIL_URL", "http://127.0.0.1:8080")
    key = os.environ.get("FLEETMAIL_API_KEY")
    if not key:
        found = next((path for path in key_files() if path.exists()), None)
        if found is None:
            looked = ", ".join(str(path) for path in key_files())
            fail(
                f"no API key: set FLEETMAIL_API_KEY, or run where `make run` keeps its data (looked in {looked})",
                2,
            )
        key = found.read_text().strip()
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def call(method: str, path: str, **kwargs: Any) -> Any:
    with client() as http:
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach job-gateway at {http.base_url} ({type(exc).__name__}): start it or set FLEETMAIL_URL",
                2,
            )
    if response.status_code >= 400:
        try:
            problem = response.json()
            fail(f"{problem.get('title', response.status_code)}: {problem.get('detail', '')}")
        except ValueError:
            fail(f"HTTP {response.status_code}")
    return response.json() if response.content else None


def table(*headers: str, whole: tuple[str, ...] = ()) -> Table:
    """A table that stays readable in an 80-column terminal: no side borders, and no header
    word is cut (a column is at least as wide as its longest header word). Columns named in
    `whole` hold values a person copies (job ids): they are never folded, the others give way."""
    columns = [
        Column(h, no_wrap=True, min_width=32)
        if h in whole
        else Column(h, min_width=max(len(word) for word in h.split()), overflow="fold")
        for h in headers
    ]
    return Table(*columns, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)


FROM_POLICY = {"administrator_address": "administrator", "login_user_address": "login user", "allow": "allow"}


def day(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d") if value else "—"


def when(value: str | None, seconds: bool = False) -> str:
    if not value:
        return "—"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


# --- tenants ---------------------------------------------------------------------------


@tenants.command("list")
def tenants_list() -> None:
    shown = table("tenant", "OAuth 2.0", "provider", "transport", "administrator", "From", "Auto Delete")
    for t in call("GET", "/v1/admin/tenants"):
        shown.add_row(
            t["tenant_id"],
            "on" if t["oauth_enabled"] else "off",
            t["provider"],
            t.get("transport", "smtp"),
            t.get("administrator_address") or "—",
            FROM_POLICY.get(t["from_policy"], t["from_policy"]),
            "on" if t["auto_delete"] else "off",
        )
    out.print(shown)


@tenants.command("set")
def tenants_set(
    tenant_id: str,
    oauth: Annotated[bool | None, typer.Option("--oauth/--no-oauth", help="OAuth 2.0 on or off")] = None,
    provider: Annotated[str | None, typer.Option(help="microsoft or google")] = None,
    administrator: Annotated[str | None, typer.Option(help="the administrator e-mail address")] = None,
    smtp_host: Annotated[str | None, typer.Option()] = None,
    smtp_port: Annotated[int | None, typer.Option()] = None,
    from_policy: Annotated[
        str | None, typer.Option(help="administrator_address, login_user_address, allow")
    ] = None,
    auto_delete: Annotated[bool | None, typer.Option("--auto-delete/--no-auto-delete")] = None,
    transport: Annotated[
        str | None, typer.Option(help="smtp, graph (provider microsoft) or gmail_api (provider google)")
    ] = None,
) -> None:
    """Create a tenant or change some of its settings (the others stay as they are)."""
    with client() as http:
        existing = http.get(f"/v1/admin/tenants/{tenant_id}")
    body: dict[str, Any] = existing.json() if existing.status_code == 200 else {"tenant_id": tenant_id}
    changes = {
        "oauth_enabled": oauth,
        "provider": provider,
        "administrator_address": administrator,
        "from_policy": from_policy,
        "auto_delete": auto_delete,
        "transport": transport,
    }
    body.update({k: v for k, v in changes.items() if v is not None})
    if smtp_host or smtp_port:
        smtp = dict(body.get("smtp") or {})
        smtp.update({k: v for k, v in (("host", smtp_host), ("port", smtp_port)) if v is not None})
        if "host" not in smtp or "port" not in smtp:
            fail("give both --smtp-host and --smtp-port for a new SMTP server")
        body["smtp"] = smtp
    body.pop("revision", None)
    saved = call("PUT", f"/v1/admin/tenants/{tenant_id}", json=body)
    out.print(f"tenant [bold]{tenant_id}[/bold] saved (revision {saved['revision']})")
    if transport is not None and saved["oauth_enabled"]:
        show_readiness(call("GET", f"/v1/admin/tenants/{tenant_id}/tokens")["transport"])


def show_readiness(readiness: dict[str, Any]) -> None:
    """Whether the administrator's grant has what the tenant's transport needs."""
    mark = {True: "[green]ready[/green]", False: "[red]not ready[/red]"}.get(
        readiness["ready"], "[yellow]check[/yellow]"
    )
    out.print(f"transport [bold]{readiness['transport']}[/bold]: {mark}: {readiness['detail']}")


# --- devices ---------------------------------------------------------------------------


@devices.command("list")
def devices_list(tenant_id: str) -> None:
    rows = table("device", "name", "state", "Internet Fax address", "SMTP allowlist", "attention")
    for d in call("GET", f"/v1/admin/tenants/{tenant_id}/devices"):
        rows.add_row(
            d["device_id"],
            d.get("name") or "",
            "[red]disabled[/red]" if d["disabled"] else "active",
            d.get("machine_address") or "—",
            ", ".join(d.get("allow_cidrs") or []) or "—",
            "[yellow]" + "; ".join(d["attention"]) + "[/yellow]" if d.get("attention") else "",
        )
    out.print(rows)


def show_secret(credentials: dict[str, str]) -> None:
    out.print(
        f"device [bold]{credentials['device_id']}[/bold] — secret (shown once): {credentials['secret']}"
    )


@devices.command("add")
def devices_add(
    tenant_id: str,
    device_id: str,
    name: Annotated[str, typer.Option()] = "",
    allow: Annotated[list[str] | None, typer.Option(help="CIDR it may send from without AUTH")] = None,
) -> None:
    show_secret(
        call(
            "POST",
            f"/v1/admin/tenants/{tenant_id}/devices",
            json={"device_id": device_id, "name": name, "allow_cidrs": allow or []},
        )
    )


@devices.command("rotate")
def devices_rotate(tenant_id: str, device_id: str) -> None:
    """A new secret; the old one stops working at once."""
    show_secret(call("POST", f"/v1/admin/tenants/{tenant_id}/devices/{device_id}/secret"))


@devices.command("disable")
def devices_disable(tenant_id: str, device_id: str) -> None:
    call("PATCH", f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"disabled": True})
    out.print(f"device {device_id} disabled")


@devices.command("enable")
def devices_enable(tenant_id: str, device_id: str) -> None:
    call("PATCH", f"/v1/admin/tenants/{tenant_id}/devices/{device_id}", json={"disabled": False})
    out.print(f"device {device_id} enabled")


# --- tokens ----------------------------------------------------------------------------

NOT_ACQUIRED = "[yellow]Not acquired[/yellow]"
SHORT_STATUS = {
    "active": "[green]Acquired[/green]",
    "reauthorization_required": "[red]re-auth[/red]",
    "revoked": "[red]revoked[/red]",
}


@tokens.command("status")
def tokens_status(tenant_id: str) -> None:
    """The device's [Refresh Tokens] screen, for every grant of the tenant."""
    rows = table("token", "address", "status", "flow", "refreshed", "dies on", "why", whole=("address",))
    rows.caption = "re-auth: the owner must sign in again ([Acquire], or at the device)"
    tokens = call("GET", f"/v1/admin/tenants/{tenant_id}/tokens")
    administrator = tokens.get("administrator") or {}
    if administrator.get("status") == "not_acquired":
        # The device shows the administrator's row whether or not a token exists.
        address = administrator.get("address") or "(no administrator address)"
        rows.add_row("admin", address, NOT_ACQUIRED, "—", "—", "—")
    for g in tokens["grants"]:
        rows.add_row(
            "admin" if g["principal"]["kind"] == "administrator" else g["principal"]["kind"],
            g["principal"]["address"],
            SHORT_STATUS.get(g["status"], g["status"]),
            (g.get("flow") or "—").replace("_", " "),
            day(g.get("last_refreshed_at")),
            day(g.get("predicted_death_at")) if g.get("flow") != "app_only" else "never",
            g.get("status_detail") or "",
        )
    out.print(rows)
    show_readiness(tokens["transport"])


@tokens.command("acquire")
def tokens_acquire(
    tenant_id: str,
    flow: Annotated[str | None, typer.Option(help="device_code, authorization_code or app_only")] = None,
    wait_s: Annotated[float, typer.Option(help="how long to wait for the sign-in")] = 900,
) -> None:
    """[Acquire]: start the administrator's sign-in and wait until it is done."""
    params = {"flow": flow} if flow else {}
    started = call("POST", f"/v1/admin/tenants/{tenant_id}/tokens/administrator/acquire", params=params)
    if started["state"] == "succeeded":
        out.print(f"[green]Acquired[/green] {started.get('message') or ''}")
        return
    if started.get("user_code"):
        out.print(
            f"Open [bold]{started['verification_uri']}[/bold] and enter the code [bold]{started['user_code']}[/bold]"
        )
    elif started.get("authorization_url"):
        out.print(f"Open this address in a browser and sign in:\n{started['authorization_url']}")
    deadline = time.monotonic() + wait_s
    path = f"/v1/admin/tenants/{tenant_id}/acquisitions/{started['acquisition_id']}"
    with out.status("waiting for the sign-in …"):
        while time.monotonic() < deadline:
            status = call("GET", path)
            if status["state"] != "pending":
                break
            time.sleep(1)
        else:
            fail("stopped waiting; the sign-in may still finish — see `fleetmail tokens status`")
    if status["state"] != "succeeded":
        fail(f"{status['state']}: {status.get('detail') or ''}")
    out.print(f"[green]Acquired[/green] {status.get('detail') or ''}")


@tokens.command("delete")
def tokens_delete(
    tenant_id: str,
    user: Annotated[str | None, typer.Argument(help="the login user; omit with --all-users")] = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="every login user's token (not the administrator's)")
    ] = False,
) -> None:
    """[Delete] a login user's refresh token, or every user's: they sign in again next time."""
    if all_users == (user is not None):
        fail("name one user, or give --all-users")
    if user is None:
        count = call("DELETE", f"/v1/admin/tenants/{tenant_id}/tokens/users")["deleted"]
        out.print(f"{count} user token{'' if count == 1 else 's'} deleted")
        return
    deleted = call("DELETE", f"/v1/admin/tenants/{tenant_id}/tokens/users/{user}")["deleted"]
    out.print(f"{user}: {'deleted' if deleted else 'had no token'}")


# --- jobs and dead letters ---------------------------------------------------------------


@jobs.command("list")
def jobs_list(
    tenant_id: str,
    status: Annotated[str | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 20,
) -> None:
    params = {k: v for k, v in (("status", status), ("device_id", device), ("limit", limit)) if v is not None}
    rows = table("job", "device", "function", "status", "submitted", "goes at", "detail")
    for j in call("GET", f"/v1/admin/tenants/{tenant_id}/jobs", params=params):
        rows.add_row(
            j["job_id"],
            j["device_id"],
            j["function"],
            STATUS_SHOWN.get(j["status"], j["status"]),
            when(j["submitted_at"]),
            when(j.get("next_attempt_at"), seconds=True) if j["status"] in WAITING else "",
            j.get("detail") or "",
        )
    out.print(rows)


WAITING = frozenset({"paced", "waiting_for_quota", "deferred"})
"""Statuses of jobs that go at a known time (`next_attempt_at`)."""
STATUS_SHOWN = {"waiting_for_quota": "waiting for quota"}


def dead_letters(tenant_id: str, want: int, pages: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Up to `want` of the tenant's dead letters, newest first, following the API's pages (at
    most `pages` of them); and whether more may follow."""
    found: list[dict[str, Any]] = []
    before: int | None = None
    read = 0
    while len(found) < want and (pages is None or read < pages):
        params = {"limit": min(want - len(found), 500)} | ({"before": before} if before else {})
        page = call("GET", f"/v1/admin/tenants/{tenant_id}/dead-letters", params=params)
        found += page["dead_letters"]
        read += 1
        if (before := page["next"]) is None:
            return found, False
    return found, True


@dead.command("list")
def dead_list(tenant_id: str, limit: Annotated[int, typer.Option()] = 20) -> None:
    rows = table("seq", "job", "reason", "detail", "failed", whole=("job",))
    for d in dead_letters(tenant_id, limit)[0]:
        rows.add_row(
            str(d["sequence"]),
            d.get("job_id") or "?",
            d["reason_code"],
            d["detail"][:80],
            when(d["failed_at"]),
        )
    out.print(rows)


@dead.command("resend")
def dead_resend(
    tenant_id: Annotated[str | None, typer.Argument(help="with SEQUENCE: one dead letter")] = None,
    sequence: Annotated[int | None, typer.Argument()] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="all of the tenant's that match")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    since: Annotated[datetime | None, typer.Option(help="failed at or after (UTC unless given)")] = None,
    until: Annotated[datetime | None, typer.Option(help="failed before (UTC unless given)")] = None,
    batch: Annotated[int, typer.Option(help="dead letters per call")] = 100,
) -> None:
    """Send dead jobs again: one (TENANT SEQUENCE), or in bulk (--tenant, --reason, --since, --until)."""
    if sequence is not None and tenant_id is not None:
        accepted = call("POST", f"/v1/admin/tenants/{tenant_id}/dead-letters/{sequence}/resend")
        out.print(f"job {accepted['job_id']} queued again")
        return
    tenant_id = tenant or tenant_id
    if tenant_id is None:
        fail("name the tenant (--tenant), and a dead letter's sequence to resend just one")
    wanted: dict[str, Any] = {"limit": batch, "reason": reason}
    wanted |= {k: _utc(v).isoformat() for k, v in (("since", since), ("until", until)) if v is not None}
    resent, skipped = 0, []
    while True:
        report = call("POST", f"/v1/admin/tenants/{tenant_id}/dead-letters/resend", json=wanted)
        resent += report["resent"]
        skipped += report["skipped"]
        out.print(f"resent {resent}, skipped {len(skipped)}" + ("…" if report["next"] else ""))
        if report["next"] is None:
            break
        wanted["before"] = report["next"]
    if skipped:
        rows = table("seq", "job", "skipped", "why", whole=("job",))
        for s in skipped:
            rows.add_row(str(s["sequence"]), s.get("job_id") or "?", s["why"], s["detail"])
        out.print(rows)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# --- alerts ----------------------------------------------------------------------------

SEVERITY = {"critical": "[red]critical[/red]", "warning": "[yellow]warning[/yellow]", "info": "info"}


@app.command()
def alerts(
    tenant_id: str,
    history: Annotated[bool, typer.Option("--history", help="resolved ones too")] = False,
    acknowledge: Annotated[str | None, typer.Option(help="acknowledge this alert id")] = None,
) -> None:
    """The tenant's alerts, with what to do about each."""
    if acknowledge:
        call("POST", f"/v1/admin/tenants/{tenant_id}/alerts/{acknowledge}/acknowledge")
        out.print(f"alert {acknowledge} acknowledged")
        return
    found = call("GET", f"/v1/admin/tenants/{tenant_id}/alerts", params={"include_resolved": history})
    if not found:
        out.print("[green]no open alerts[/green]")
        return
    rows = table("id", "severity", "state", "since", "alert", "what to do")
    for a in found:
        rows.add_row(
            a["alert_id"][:8],
            SEVERITY.get(a["severity"], a["severity"]),
            a["state"],
            when(a["raised_at"]),
            a["title"],
            a.get("remedy") or "",
        )
    out.print(rows)


# --- status ----------------------------------------------------------------------------


@app.command()
def status() -> None:
    """The fleet's health on one screen: every tenant's tokens, failures and dead letters."""
    with client() as http:
        try:
            health = http.get("/readyz").json()
        except httpx.HTTPError:
            fail(f"cannot reach job-gateway at {http.base_url}", 2)
    out.print(f"job-gateway: {'[green]ready[/green]' if health.get('ready') else '[red]not ready[/red]'}")
    if health.get("smtp_min_tls") in ("1.0", "1.1"):
        out.print(
            f"[yellow]warning:[/yellow] the SMTP listener accepts TLS {health['smtp_min_tls']} "
            "(FLEETMAIL_GATEWAY_SMTP_MIN_TLS): only for devices that cannot do 1.2"
        )
    rows = table("tenant", "token", "dies in", "sign-ins", "alerts", "failed", "dead", "devices", "queued")
    rows.caption = (
        "token: the administrator's · sign-ins: users to sign in · alerts: unresolved (critical) · "
        "failed, dead: jobs dead-lettered in the last 24 h (failed: not sent again since) · "
        "queued: not finished (paced, quota: held back by the mailbox's sending limits)"
    )
    # One request a page for the whole fleet: the gateway gathers every tenant's figures.
    page, pages = 1, 1
    while page <= pages:
        overview = call("GET", "/v1/admin/overview", params={"page": page, "limit": STATUS_PAGE})
        for row in overview["rows"]:
            rows.add_row(*_tenant_row(row))
        page, pages = page + 1, overview["pages"]
    out.print(rows)
    lag = table("queue", "consumer", "waiting", "unacked", "redelivered")
    for q in call("GET", "/v1/admin/queues"):
        lag.add_row(
            q["stream"], q["consumer"], str(q["pending"]), str(q["unacknowledged"]), str(q["redelivered"])
        )
    out.print(lag)


STATUS_PAGE = 500

TOKEN_SHOWN = {
    "acquired": "[green]Acquired[/green]",
    "expiring": "[yellow]expiring[/yellow]",
    "not_acquired": NOT_ACQUIRED,
    "reauthorization_required": "[red]re-auth[/red]",
}


def _tenant_row(row: dict[str, Any]) -> list[str]:
    """One tenant's line of `fleetmail status`, from its overview row."""
    token = row["token"]
    alerts = row["alerts"]
    open_alerts = alerts["critical"] + alerts["warning"] + alerts["info"]
    by_status = row.get("queued_by_status") or {}
    # Jobs held back by their mailbox's limits, not by a fault: paced, or waiting for quota.
    held = [
        f"{by_status[s]} {label}"
        for s, label in (("paced", "paced"), ("waiting_for_quota", "quota"))
        if by_status.get(s)
    ]
    return [
        row["tenant_id"],
        TOKEN_SHOWN.get(token["state"], token["state"]) if row["oauth_enabled"] else "OAuth off",
        _days_left(token["days_left"]) if token.get("days_left") is not None else "—",
        str(row["users_waiting"]),
        (
            f"[red]{open_alerts} ({alerts['critical']})[/red]"
            if alerts["critical"]
            else f"[red]{open_alerts}[/red]"
        )
        if open_alerts
        else "0",
        f"[red]{row['failed_24h']}[/red]" if row["failed_24h"] else "0",
        str(row["dead_lettered_24h"]),
        str(row["devices"]),
        f"{row['queued']} ({', '.join(held)})" if held else str(row["queued"]),
    ]


def _days_left(days: int) -> str:
    text = f"{days} days" if days != 1 else "1 day"
    return f"[red]{text}[/red]" if days < 7 else text


if __name__ == "__main__":
    app()
