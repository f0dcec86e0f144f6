"""The emulator's Microsoft identity platform: azure-identity's real ``ClientSecretCredential`` gets a token for a
known service principal, is refused as the platform refuses, and ARM accepts exactly the tokens it issued.

Sources: Microsoft identity platform docs, "OAuth 2.0 client credentials flow" (token response fields
``token_type``/``expires_in``/``ext_expires_in``/``access_token``; error fields ``error``,
``error_description``, ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``), the AADSTS error code
reference (7000215 invalid client secret, 700016 application not found, 90002 tenant not found), and
"OpenID Connect on the Microsoft identity platform" (discovery document at
``/{tenant}/v2.0/.well-known/openid-configuration`` with ``token_endpoint`` and ``issuer``). ARM's 401 for an
unknown token: ``InvalidAuthenticationToken`` (azure-rest-api-specs, common error responses)."""

from __future__ import annotations

import jwt
import pytest
from azure.batch.aio import BatchClient
from azure.core.exceptions import ClientAuthenticationError
from azure.core.rest import AsyncHttpResponse
from azure.identity.aio import ClientSecretCredential

from amlops_emulator.identity import DEFAULT_PRINCIPAL
from amlops_emulator.seed import DEFAULT_BATCH_ACCOUNT
from amlops_emulator.server import RunningEmulator

from .conftest import BASE, FAST, Arm, Starter, session_for

pytestmark = pytest.mark.emulator
ARM_SCOPE = "https://management.azure.com/.default"


def _credential(
    running: RunningEmulator, secret: str = DEFAULT_PRINCIPAL.client_secret, **ids: str
) -> ClientSecretCredential:
    return ClientSecretCredential(
        ids.get("tenant", DEFAULT_PRINCIPAL.tenant_id),
        ids.get("client", DEFAULT_PRINCIPAL.client_id),
        secret,
        authority=running.arm_url,
        disable_instance_discovery=True,
        connection_verify=str(running.tls.ca),
    )


async def test_a_known_service_principal_gets_a_token_arm_accepts(emulator: RunningEmulator) -> None:
    async with _credential(emulator) as credential:
        token = await credential.get_token(ARM_SCOPE)
        assert token.token
        assert token.expires_on > 0
    async with session_for(emulator, token=token.token) as session:
        status, _, _ = await Arm(emulator, session).call("GET", f"{BASE}/computes")
        assert status == 200
    async with session_for(emulator, token="aad.forged") as session:
        status, headers, body = await Arm(emulator, session).call("GET", f"{BASE}/computes")
        assert status == 401
        assert body["error"]["code"] == "InvalidAuthenticationToken"
        assert "WWW-Authenticate" in headers


async def test_an_access_token_is_a_jwt_for_the_requested_resource(emulator: RunningEmulator) -> None:
    """The identity platform's access tokens are JWTs whose ``aud`` names the resource of the scope asked for
    ("Microsoft identity platform access tokens": the ``aud``, ``tid``, ``appid`` claims). azure-ai-ml reads
    ``aud`` of the Azure ML token (scope ``https://ml.azure.com/.default``) before it submits a pipeline job
    (``JobOperations._set_headers_with_user_aml_token``): the operator's credential must give one."""
    async with _credential(emulator) as credential:
        ml_token = await credential.get_token("https://ml.azure.com/.default")
        arm_token = await credential.get_token(ARM_SCOPE)
    ml_claims = jwt.decode(ml_token.token, options={"verify_signature": False})
    assert ml_claims["aud"] == "https://ml.azure.com"
    assert ml_claims["tid"] == DEFAULT_PRINCIPAL.tenant_id
    assert ml_claims["appid"] == DEFAULT_PRINCIPAL.client_id
    assert jwt.decode(arm_token.token, options={"verify_signature": False})["aud"] == "https://management.azure.com"
    async with session_for(emulator, token=ml_token.token) as session:
        status, _, _ = await Arm(emulator, session).call("GET", f"{BASE}/computes")
        assert status == 200, "ARM accepts every token issued here, as before"


@pytest.mark.parametrize(
    ("secret", "ids", "code"),
    [
        ("wrong", {}, "AADSTS7000215"),
        (DEFAULT_PRINCIPAL.client_secret, {"client": "00000000-0000-0000-0000-00000000dead"}, "AADSTS700016"),
        (DEFAULT_PRINCIPAL.client_secret, {"tenant": "00000000-0000-0000-0000-00000000beef"}, "AADSTS90002"),
    ],
    ids=["InvalidClientSecret", "UnknownApplication", "UnknownTenant"],
)
async def test_the_platform_refuses_what_it_does_not_know(
    emulator: RunningEmulator, secret: str, ids: dict[str, str], code: str
) -> None:
    async with _credential(emulator, secret, **ids) as credential:
        with pytest.raises(ClientAuthenticationError) as refused:
            await credential.get_token(ARM_SCOPE)
    assert code in str(refused.value)


async def test_batch_accepts_the_tokens_issued_here_and_refuses_a_real_token_issued_elsewhere(
    start_emulator: Starter,
) -> None:
    """Issue 15, point 7: Batch in AAD mode checks bearer tokens as ARM does (one function, ``bearer_problem``).
    azure-batch's own ``BatchClient`` with azure-identity's ``ClientSecretCredential`` (scope
    ``https://batch.core.windows.net//.default``) works against the emulator that issued its token. A token that
    is genuine but was issued by another identity platform (a second emulator) is refused by both halves: Batch
    answers 401 ``AuthenticationFailed``, "Server failed to authenticate the request. Make sure the value of
    Authorization header is formed correctly." with the token's problem as ``AuthenticationErrorDetail``
    (azure-sdk-for-net issue 8026 and microsoft-authentication-library-for-js issue 1735, a token Batch did not
    accept), with a ``Bearer`` ``WWW-Authenticate`` challenge; ARM answers 401 ``InvalidAuthenticationToken``."""
    ours = await start_emulator(speed=FAST, serve_batch=True)
    elsewhere = await start_emulator(speed=FAST, serve_batch=True)
    assert ours.batch_tls_url is not None
    endpoint = f"{ours.batch_tls_url}/{DEFAULT_BATCH_ACCOUNT}"
    verify = str(ours.tls.ca)

    async with _credential(ours) as issued_here, BatchClient(endpoint, issued_here, connection_verify=verify) as batch:
        pools = [pool async for pool in batch.list_pools()]
    async with (
        _credential(elsewhere) as issued_elsewhere,
        BatchClient(endpoint, issued_elsewhere, connection_verify=verify) as foreign,
    ):
        with pytest.raises(ClientAuthenticationError) as refused:
            [pool async for pool in foreign.list_pools()]
        foreign_token = (await issued_elsewhere.get_token(ARM_SCOPE)).token
    async with session_for(ours, token=foreign_token) as session:
        arm_status, _, arm_body = await Arm(ours, session).call("GET", f"{BASE}/computes")

    assert pools == []
    response = refused.value.response
    assert isinstance(response, AsyncHttpResponse), response  # the azure.core.rest response of a typespec client
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "Retry-After" not in response.headers
    body = response.json()
    assert body["code"] == "AuthenticationFailed"
    assert body["message"]["lang"] == "en-US"
    assert body["message"]["value"].startswith(
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
        "correctly.\nRequestId:"
    )
    assert body["values"] == [{"key": "AuthenticationErrorDetail", "value": "The access token is invalid."}]
    assert arm_status == 401
    assert arm_body["error"]["code"] == "InvalidAuthenticationToken"
