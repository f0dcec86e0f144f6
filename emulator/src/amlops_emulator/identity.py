"""The Microsoft identity platform, as far as azure-identity's ``ClientSecretCredential`` uses it: OpenID
discovery and the OAuth 2.0 client-credentials grant, served beside ARM on the emulator's HTTPS port.

A service principal's Secret (``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``) then works
against the emulator as it does against Azure: the operator points ``AMLOPS_AUTHORITY_HOST`` at the emulator,
exchanges the secret for a token here, and ARM and Batch accept exactly the tokens issued here (plus the fixed
emulator token of the operator's own identity). A wrong secret gets the identity platform's ``invalid_client``.

Shapes follow the Microsoft identity platform documentation ("OpenID Connect on the Microsoft identity
platform": the discovery document's ``token_endpoint``, ``issuer``, ``authorization_endpoint``; "Microsoft
identity platform and the OAuth 2.0 client credentials flow": the token response ``token_type``,
``expires_in``, ``ext_expires_in``, ``access_token`` and the error response ``error``, ``error_description``,
``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``; AADSTS7000215 for an invalid secret,
AADSTS700016 for an unknown application, AADSTS90002 for an unknown tenant).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

TOKEN_LIFETIME = 3599
ARM_SCOPE = "https://management.azure.com/.default"
BATCH_SCOPE = "https://batch.core.windows.net/.default"


@dataclass(frozen=True)
class ServicePrincipal:
    tenant_id: str
    client_id: str
    client_secret: str


# Not a secret: the local emulator's well-known service principal (endpoints.json names it too).
DEFAULT_PRINCIPAL = ServicePrincipal(
    "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000c1", "amlops-emulator-client-secret"
)


@dataclass
class Identity:
    """Who may get a token, and which tokens ARM and Batch accept."""

    static_token: str
    principals: list[ServicePrincipal] = field(default_factory=lambda: [DEFAULT_PRINCIPAL])
    _issued: dict[str, ServicePrincipal] = field(default_factory=dict)

    def valid(self, token: str) -> bool:
        return token == self.static_token or token in self._issued

    def principal_of(self, token: str) -> ServicePrincipal | None:
        return self._issued.get(token)

    def add(self, principal: ServicePrincipal) -> None:
        if principal not in self.principals:
            self.principals.append(principal)

    def issue(
        self, tenant: str, client_id: str, client_secret: str, scope: str = ARM_SCOPE
    ) -> str | tuple[int, str, str]:
        """A new access token, or (status, error, AADSTS description) as the identity platform refuses."""
        tenants = {p.tenant_id for p in self.principals}
        if tenant not in tenants:
            return 400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found."
        known = [p for p in self.principals if p.tenant_id == tenant and p.client_id == client_id]
        if not known:
            return (
                400,
                "unauthorized_client",
                (f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
            )
        if not any(secrets.compare_digest(p.client_secret, client_secret) for p in known):
            return (
                401,
                "invalid_client",
                (
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
                    f"client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            )
        token = access_token(tenant, client_id, scope)
        self._issued[token] = known[0]
        return token


def _segment(claims: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()


def access_token(tenant: str, client_id: str, scope: str) -> str:
    """An access token as the identity platform issues one: a JWT whose ``aud`` is the resource of the requested
    ``scope`` (``https://ml.azure.com/.default`` → ``https://ml.azure.com``), with ``tid``, ``appid``, ``iat``,
    ``exp`` ("Microsoft identity platform access tokens", access token claims reference). Clients read claims
    without checking the signature (azure-ai-ml checks ``aud`` before it submits a pipeline job:
    ``JobOperations._set_headers_with_user_aml_token``); the emulator knows its tokens by value, so the signature
    segment carries only randomness (``alg: none``)."""
    now = int(time.time())
    claims = {
        "aud": scope.split(" ")[0].removesuffix("/.default"),
        "iss": f"https://sts.windows.net/{tenant}/",
        "tid": tenant,
        "appid": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
        "uti": secrets.token_urlsafe(16),
    }
    return f"{_segment({'typ': 'JWT', 'alg': 'none'})}.{_segment(claims)}.{secrets.token_urlsafe(32)}"


def add_identity_routes(app: web.Application, identity: Identity) -> None:
    async def discovery(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = f"{request.scheme}://{request.host}/{tenant}"
        return web.json_response(
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "tenant_region_scope": "EU",
            }
        )

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
        issued = identity.issue(
            request.match_info["tenant"],
            str(form.get("client_id", "")),
            str(form.get("client_secret", "")),
            str(form.get("scope") or ARM_SCOPE),
        )
        if not isinstance(issued, str):
            return _error(*issued)
        return web.json_response(
            {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME,
             "access_token": issued}
        )  # fmt: skip

    async def add_principal(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            principal = ServicePrincipal(str(body["tenantId"]), str(body["clientId"]), str(body["clientSecret"]))
        except (KeyError, TypeError):
            return web.json_response({"error": "tenantId, clientId and clientSecret are required"}, status=400)
        identity.add(principal)
        return web.json_response({"tenantId": principal.tenant_id, "clientId": principal.client_id}, status=201)

    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", discovery)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_post("/_emulator/principals", add_principal)


def is_identity_path(path: str) -> bool:
    """Discovery and token requests carry no bearer token: they are how a client gets one."""
    parts = path.strip("/").split("/")
    return len(parts) >= 3 and parts[1] in ("v2.0", "oauth2")


def _error(status: int, error: str, description: str) -> web.Response:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    code = int(description.split(":", 1)[0].removeprefix("AADSTS"))
    return web.json_response(
        {
            "error": error,
            "error_description": f"{description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
        },
        status=status,
    )
