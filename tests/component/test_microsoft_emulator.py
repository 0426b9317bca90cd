"""The Microsoft emulator, driven by the real MSAL Python, as token-service drives it."""

import re
import uuid

import httpx
import jwt
import msal
import pytest
import requests
from fleetmail_devkit.stack import Stack
from token_service.adapters.microsoft import raise_for_error
from token_service.errors import ReauthorizationRequired

SMTP_SCOPE = ["https://outlook.office.com/SMTP.Send"]


def msal_app(emulators: Stack, client_id: str, directory: str = "contoso") -> msal.PublicClientApplication:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulators.ca_file)
    return msal.PublicClientApplication(
        client_id,
        authority=f"{emulators.microsoft_url}/{directory}",
        instance_discovery=False,
        http_client=session,
    )


@pytest.fixture
async def app_and_user(
    emulators: Stack, emulator_http: httpx.AsyncClient
) -> tuple[msal.PublicClientApplication, str]:
    client_id = f"test-{uuid.uuid4().hex[:8]}"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/apps",
        json={
            "client_id": client_id,
            "redirect_uris": ["http://127.0.0.1:1/oauth/callback", "http://127.0.0.1:1/cb"],
        },
    )
    return msal_app(emulators, client_id), f"user-{uuid.uuid4().hex[:6]}@contoso.example"


async def sign_in(
    emulators: Stack, http: httpx.AsyncClient, app: msal.PublicClientApplication, user: str
) -> dict:
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    assert flow["interval"] == 5 and flow["expires_in"] == 900
    pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)
    assert pending["error"] == "authorization_pending"
    approved = await http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": flow["user_code"], "user": user},
    )
    assert approved.status_code == 200
    flow["_last_poll"] = 0  # the test does not wait out the interval; MSAL only warns
    with pytest.warns(UserWarning, match="too soon"):
        return app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)


async def test_device_code_flow_issues_signed_tokens(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    result = await sign_in(emulators, emulator_http, app, user)
    assert result["id_token_claims"]["preferred_username"] == user
    assert result["refresh_token"] and result["access_token"].count(".") == 2


async def test_the_id_tokens_tid_is_the_directory_signed_in_to(
    emulators, emulator_http, app_and_user
) -> None:
    """As Entra: a directory named by id is that id; `organizations` signs a work account in
    to its home directory, so two companies' people carry two different tids."""
    app, user = app_and_user
    directory = str(uuid.uuid4())
    by_id = msal_app(emulators, app.client_id, directory)
    assert (await sign_in(emulators, emulator_http, by_id, user))["id_token_claims"]["tid"] == directory
    anywhere = msal_app(emulators, app.client_id, "organizations")
    contoso = (await sign_in(emulators, emulator_http, anywhere, user))["id_token_claims"]["tid"]
    fabrikam_user = f"user-{uuid.uuid4().hex[:6]}@fabrikam.example"
    fabrikam = (await sign_in(emulators, emulator_http, anywhere, fabrikam_user))["id_token_claims"]["tid"]
    assert uuid.UUID(contoso) and uuid.UUID(fabrikam) and contoso != fabrikam


async def test_refresh_rotates_and_the_old_token_still_works(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    first = await sign_in(emulators, emulator_http, app, user)
    second = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=SMTP_SCOPE)
    assert second["refresh_token"] != first["refresh_token"]
    again = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=SMTP_SCOPE)
    assert "access_token" in again


async def test_revoked_and_inactive_grants(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    tokens = await sign_in(emulators, emulator_http, app, user)
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/grants/age", json={"user": user, "days": 91}
    )
    aged = app.acquire_token_by_refresh_token(tokens["refresh_token"], scopes=SMTP_SCOPE)
    assert aged["error"] == "invalid_grant" and aged["error_codes"] == [700082]
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert key in aged
    # MSAL caches an identical 400 for 60 s, so the revocation is checked on a new grant.
    fresh = await sign_in(emulators, emulator_http, app, user)
    await emulator_http.post(f"{emulators.microsoft_url}/_emulator/grants/revoke", json={"user": user})
    revoked = app.acquire_token_by_refresh_token(fresh["refresh_token"], scopes=SMTP_SCOPE)
    assert revoked["error"] == "invalid_grant" and revoked["error_codes"] == [50173]


async def test_throttling_and_call_counts(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    tokens = await sign_in(emulators, emulator_http, app, user)
    before = (await emulator_http.get(f"{emulators.microsoft_url}/_emulator/calls")).json()["token"]
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/faults", json={"status": 429, "count": 1, "retry_after_s": 7}
    )
    response = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
        },
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    after = (await emulator_http.get(f"{emulators.microsoft_url}/_emulator/calls")).json()["token"]
    assert after == before + 1


async def test_a_fault_for_one_grant_type_is_not_taken_by_another(
    emulators, emulator_http, app_and_user
) -> None:
    app, user = app_and_user
    tokens = await sign_in(emulators, emulator_http, app, user)
    token_url = f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/faults",
        json={"status": 503, "count": 1, "grant_type": "refresh_token"},
    )
    # A device-code poll (a sign-in some other test left pending) passes the fault by ...
    poll = await emulator_http.post(
        token_url,
        data={
            "client_id": app.client_id,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": "no-such-code",
        },
    )
    assert poll.status_code == 400
    # ... and the refresh it was meant for gets it, once.
    refresh = {
        "client_id": app.client_id,
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
    }
    assert (await emulator_http.post(token_url, data=refresh)).status_code == 503
    assert (await emulator_http.post(token_url, data=refresh)).status_code == 200


async def test_scope_mixing_and_unknown_apps_are_refused(emulators, emulator_http) -> None:
    mixed = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
        data={
            "client_id": "fleetmail-demo-client",
            "scope": "https://graph.microsoft.com/Mail.Send https://outlook.office.com/SMTP.Send",
        },
    )
    assert mixed.status_code == 400 and mixed.json()["error_codes"] == [70011]
    unknown = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
        data={"client_id": "nobody", "scope": "openid"},
    )
    assert unknown.json()["error_codes"] == [700016]


def posted_form(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))


async def test_authorization_code_with_pkce_through_msal(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE,
        redirect_uri="http://127.0.0.1:1/oauth/callback",
        login_hint=user,
        response_mode="form_post",
    )
    assert flow["code_verifier"] and "code_challenge_method=S256" in flow["auth_uri"]
    page = await emulator_http.get(flow["auth_uri"])
    assert 'action="http://127.0.0.1:1/oauth/callback"' in page.text
    query = posted_form(page.text)
    result = app.acquire_token_by_auth_code_flow(flow, query)
    assert result["id_token_claims"]["preferred_username"] == user and result["refresh_token"]
    replay = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": "http://127.0.0.1:1/oauth/callback",
            "code_verifier": flow["code_verifier"],
        },
    )
    assert replay.json()["error_codes"] == [54005]


async def test_pkce_verifier_must_match(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE, redirect_uri="http://127.0.0.1:1/cb", login_hint=user, response_mode="form_post"
    )
    code = posted_form((await emulator_http.get(flow["auth_uri"])).text)["code"]
    wrong = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:1/cb",
            "code_verifier": "x" * 43,
        },
    )
    assert wrong.status_code == 400 and wrong.json()["error_codes"] == [50148]


async def test_declined_device_code(emulators, emulator_http, app_and_user) -> None:
    app, _ = app_and_user
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/decline", json={"user_code": flow["user_code"]}
    )
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)
    assert result["error"] == "authorization_declined"


async def test_an_unregistered_redirect_uri_is_refused(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE, redirect_uri="https://attacker.example/cb", login_hint=user, response_mode="form_post"
    )
    page = await emulator_http.get(flow["auth_uri"])
    assert page.status_code == 400 and "AADSTS50011" in page.text


async def test_preferred_username_is_the_upn_and_email_only_when_configured(emulators, emulator_http) -> None:
    """Entra: `preferred_username` is the UPN, which differs from the mail address for many
    users; `email` (the primary SMTP address) comes only as a configured optional claim."""
    suffix = uuid.uuid4().hex[:6]
    upn, smtp = f"jd{suffix}@contoso.onmicrosoft.com", f"john.doe.{suffix}@contoso.example"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/users", json={"upn": upn, "primary_smtp": smtp}
    )
    plain, with_email = f"plain-{suffix}", f"email-{suffix}"
    for client_id, claims in ((plain, []), (with_email, ["email", "xms_edov"])):
        await emulator_http.post(
            f"{emulators.microsoft_url}/_emulator/apps",
            json={"client_id": client_id, "optional_claims": claims},
        )
    bare = (await sign_in(emulators, emulator_http, msal_app(emulators, plain), smtp))["id_token_claims"]
    assert bare["preferred_username"] == upn and "email" not in bare
    configured = (await sign_in(emulators, emulator_http, msal_app(emulators, with_email), upn))[
        "id_token_claims"
    ]
    assert configured["preferred_username"] == upn
    assert configured["email"] == smtp and configured["xms_edov"] is True


async def test_id_and_refresh_tokens_only_when_asked_for(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    token_url = f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token"

    async def redeem(scope: str) -> dict:
        started = await emulator_http.post(
            f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
            data={"client_id": app.client_id, "scope": scope},
        )
        flow = started.json()
        await emulator_http.post(
            f"{emulators.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": flow["user_code"], "user": user},
        )
        grant = {
            "client_id": app.client_id,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
        }
        return (await emulator_http.post(token_url, data=grant)).json()

    only_smtp = await redeem(SMTP_SCOPE[0])
    assert "access_token" in only_smtp and "id_token" not in only_smtp and "refresh_token" not in only_smtp
    offline = await redeem(f"{SMTP_SCOPE[0]} offline_access")
    assert "refresh_token" in offline and "id_token" not in offline
    everything = await redeem(f"{SMTP_SCOPE[0]} offline_access openid profile")
    assert "refresh_token" in everything and "id_token" in everything


async def test_error_bodies_are_entras(emulators, emulator_http, app_and_user) -> None:
    """An unknown refresh token is `invalid_grant`; each injectable code answers with Entra's
    body: `error`, the AADSTS code first in the description, `error_codes`, the ids, and
    `suberror` where Entra sends one."""
    app, _ = app_and_user
    token_url = f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token"
    refresh = {"client_id": app.client_id, "grant_type": "refresh_token", "refresh_token": "1.AQ-not-issued"}
    unknown = await emulator_http.post(token_url, data=refresh)
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    expected = {
        50076: ("invalid_grant", "basic_action"),
        50079: ("invalid_grant", "basic_action"),
        65001: ("invalid_grant", "consent_required"),
        53003: ("invalid_grant", "message_only"),
        50196: ("invalid_grant", None),
        7000222: ("invalid_client", None),
    }
    for code, (error, suberror) in expected.items():
        await emulator_http.post(
            f"{emulators.microsoft_url}/_emulator/faults",
            json={"error_code": code, "grant_type": "refresh_token"},
        )
        body = (await emulator_http.post(token_url, data=refresh)).json()
        assert body["error"] == error and body["error_codes"] == [code]
        assert body["error_description"].startswith(f"AADSTS{code}: ")
        assert body.get("suberror") == suberror
        assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/faults",
        json={"error_code": 50076, "grant_type": "refresh_token", "claims": '{"access_token":{}}'},
    )
    challenged = (await emulator_http.post(token_url, data=refresh)).json()
    assert challenged["claims"] == '{"access_token":{}}'
    # MFA also comes as `interaction_required` (a fault option); fleetmail takes either form as
    # a sign-in the user must complete, not a dead grant.
    for code in (50076, 50079):
        await emulator_http.post(
            f"{emulators.microsoft_url}/_emulator/faults",
            json={"error_code": code, "grant_type": "refresh_token", "error": "interaction_required"},
        )
        body = (await emulator_http.post(token_url, data=refresh)).json()
        assert body["error"] == "interaction_required" and body["error_codes"] == [code]
        assert body["suberror"] == "basic_action"
        with pytest.raises(ReauthorizationRequired) as raised:
            raise_for_error(body)
        assert raised.value.error == "interaction_required"


async def test_an_expired_client_secret(emulators, emulator_http) -> None:
    client_id = f"conf-{uuid.uuid4().hex[:8]}"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/apps",
        json={"client_id": client_id, "client_secret": "s3cret", "secret_expired": True},
    )
    response = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token",
        data={
            "client_id": client_id,
            "client_secret": "s3cret",
            "grant_type": "client_credentials",
            "scope": "https://outlook.office365.com/.default",
        },
    )
    assert response.status_code == 401 and response.json()["error_codes"] == [7000222]


async def test_device_code_states_have_their_codes(emulators, emulator_http, app_and_user) -> None:
    app, user = app_and_user
    flow = app.initiate_device_flow(scopes=SMTP_SCOPE)
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/approve",
        json={"user_code": flow["user_code"], "user": user},
    )
    poll = {
        "client_id": app.client_id,
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": flow["device_code"],
    }
    token_url = f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token"
    assert (await emulator_http.post(token_url, data=poll)).status_code == 200
    again = (await emulator_http.post(token_url, data=poll)).json()
    assert again["error_codes"] == [90120]
    expired = app.initiate_device_flow(scopes=SMTP_SCOPE)
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/device-codes/expire", json={"user_code": expired["user_code"]}
    )
    late = (await emulator_http.post(token_url, data={**poll, "device_code": expired["device_code"]})).json()
    assert late["error"] == "expired_token" and late["error_codes"] == [70019]
    unknown = (await emulator_http.post(token_url, data={**poll, "device_code": "DAQABAAEAAA-never"})).json()
    assert unknown["error"] == "bad_verification_code"


async def test_the_tokens_audience_and_scopes_follow_the_resource(
    emulators, emulator_http, app_and_user
) -> None:
    app, user = app_and_user
    token_url = f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token"
    claims = {}
    for scope in ("https://outlook.office.com/SMTP.Send", "https://graph.microsoft.com/Mail.Send"):
        flow = (
            await emulator_http.post(
                f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
                data={"client_id": app.client_id, "scope": scope},
            )
        ).json()
        await emulator_http.post(
            f"{emulators.microsoft_url}/_emulator/device-codes/approve",
            json={"user_code": flow["user_code"], "user": user},
        )
        grant = {
            "client_id": app.client_id,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
        }
        token = (await emulator_http.post(token_url, data=grant)).json()["access_token"]
        claims[scope] = jwt.decode(token, options={"verify_signature": False})
    smtp, graph = claims.values()
    assert (smtp["aud"], smtp["scp"]) == ("https://outlook.office.com", "SMTP.Send")
    assert (graph["aud"], graph["scp"]) == ("https://graph.microsoft.com", "Mail.Send")


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        ("https://outlook.office.com/SMTP.Sned", 70011),  # a permission Exchange does not have
        ("https://outlook.office.com/", 70011),
        ("outlook.office.com/SMTP.Send", 70011),  # no scheme
        ("https://graph.microsoft.com/SMTP.Send", 70011),  # Exchange's permission on Graph
        ("SMTP.Send", 70011),  # a bare name is Graph's
        ("https://outlook.example.com/SMTP.Send", 500011),  # no such resource
    ],
)
async def test_unknown_or_malformed_scopes_are_refused(
    emulators, emulator_http, scope: str, code: int
) -> None:
    answer = await emulator_http.post(
        f"{emulators.microsoft_url}/contoso/oauth2/v2.0/devicecode",
        data={"client_id": "fleetmail-demo-client", "scope": f"{scope} offline_access"},
    )
    body = answer.json()
    assert answer.status_code == 400 and body["error_codes"] == [code]
    assert body["error"] == ("invalid_scope" if code == 70011 else "invalid_resource")


async def test_client_credentials_need_a_directory_and_admin_consent(emulators, emulator_http) -> None:
    client_id = f"daemon-{uuid.uuid4().hex[:8]}"
    await emulator_http.post(
        f"{emulators.microsoft_url}/_emulator/apps", json={"client_id": client_id, "client_secret": "s"}
    )

    async def app_only(directory: str) -> httpx.Response:
        return await emulator_http.post(
            f"{emulators.microsoft_url}/{directory}/oauth2/v2.0/token",
            data={
                "client_id": client_id,
                "client_secret": "s",
                "grant_type": "client_credentials",
                "scope": "https://outlook.office365.com/.default",
            },
        )

    for alias in ("organizations", "common"):
        refused = await app_only(alias)
        assert refused.status_code == 400 and refused.json()["error_codes"] == [50059]

    def roles(answer: httpx.Response) -> list[str] | None:
        return jwt.decode(answer.json()["access_token"], options={"verify_signature": False}).get("roles")

    assert roles(await app_only("contoso")) is None
    consent = {"client_id": client_id, "directory": "fabrikam"}
    await emulator_http.post(f"{emulators.microsoft_url}/_emulator/admin-consent", json=consent)
    assert roles(await app_only("contoso")) is None  # consent is per directory
    assert roles(await app_only("fabrikam")) == ["SMTP.SendAsApp"]


async def test_a_code_redeemed_in_another_directory_is_refused(
    emulators, emulator_http, app_and_user
) -> None:
    app, user = app_and_user
    flow = app.initiate_auth_code_flow(
        SMTP_SCOPE, redirect_uri="http://127.0.0.1:1/cb", login_hint=user, response_mode="form_post"
    )
    code = posted_form((await emulator_http.get(flow["auth_uri"])).text)["code"]
    redeem = {
        "client_id": app.client_id,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://127.0.0.1:1/cb",
        "code_verifier": flow["code_verifier"],
    }
    elsewhere = await emulator_http.post(f"{emulators.microsoft_url}/fabrikam/oauth2/v2.0/token", data=redeem)
    assert elsewhere.status_code == 400 and elsewhere.json()["error_codes"] == [700005]
    home = await emulator_http.post(f"{emulators.microsoft_url}/contoso/oauth2/v2.0/token", data=redeem)
    assert home.status_code == 200, home.text
