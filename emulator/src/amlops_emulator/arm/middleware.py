"""The ARM front door every request passes: request ids, bearer authentication, throttling, error shapes.

Order (outermost first): :func:`envelope` (ids on every response, any exception rendered as an ARM error), then
the shared statistics and fault middlewares (:mod:`amlops_emulator.instrumentation`), then :func:`authenticate` and
:func:`throttle`. ``/_emulator/`` control routes skip authentication and throttling.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from amlops_emulator.arm.errors import ArmError, error_response
from amlops_emulator.arm.throttle import SubscriptionThrottle, kind_of
from amlops_emulator.arm.versions import DEFAULT, ErrorShape, api_version
from amlops_emulator.credentials import BEARER_CHALLENGE, bearer_problem
from amlops_emulator.identity import Identity, is_identity_path
from amlops_emulator.instrumentation import CONTROL_PREFIX

log = logging.getLogger(__name__)

_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def render_error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """The :data:`amlops_emulator.instrumentation.ErrorRenderer` for ARM: faults look like ARM's own errors."""
    return error_response(status, code, message, shape=error_shape(request))


def error_shape(request: web.Request) -> ErrorShape:
    """The error body shape of the request's api-version (the operator's version when it names none we serve)."""
    return (api_version(request.query.get("api-version")) or DEFAULT).errors


def envelope(region: str) -> Middleware:
    routing_region = region.upper()

    @web.middleware
    async def arm_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ArmError as exc:
            response = exc.response(error_shape(request))
        except web.HTTPException as exc:
            # aiohttp's own refusals (body too large, bad request line...) in ARM's shape.
            code = exc.reason.replace(" ", "") or "BadRequest"
            response = error_response(exc.status, code, exc.text or exc.reason, shape=error_shape(request))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(
                500, "InternalServerError", "The emulator failed to handle the request.", shape=error_shape(request)
            )
        if request.path.startswith(CONTROL_PREFIX):
            return response
        request_id = str(uuid.uuid4())
        headers = response.headers
        headers["x-ms-request-id"] = request_id
        headers["x-ms-correlation-request-id"] = request.headers.get("x-ms-correlation-request-id", request_id)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers["x-ms-routing-request-id"] = f"{routing_region}:{stamp}:{uuid.uuid4()}"
        if request.headers.get("x-ms-return-client-request-id", "").lower() == "true":
            client_id = request.headers.get("x-ms-client-request-id")
            if client_id:
                headers["x-ms-client-request-id"] = client_id
        headers.setdefault("x-ms-response-type", "standard")
        headers["Cache-Control"] = "no-cache"
        headers["Pragma"] = "no-cache"
        headers["Expires"] = "-1"
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return response

    return arm_envelope


def authenticate(identity: Identity) -> Middleware:
    @web.middleware
    async def arm_authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The workspace's discovery document is read without a token (azure-ai-ml's _get_workspace_url).
        if request.path.startswith(CONTROL_PREFIX) or is_identity_path(request.path) or request.path == "/discovery":
            return await handler(request)
        problem = bearer_problem(request.headers.get("Authorization"), identity.valid)
        if problem == "missing":
            raise _unauthenticated(
                "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        if problem == "malformed":
            raise _unauthenticated(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        if problem == "invalid":
            raise _unauthenticated("InvalidAuthenticationToken", "The access token is invalid.")
        return await handler(request)

    return arm_authenticate


def _unauthenticated(code: str, message: str) -> ArmError:
    return ArmError(401, code, message, headers={"WWW-Authenticate": BEARER_CHALLENGE})


def throttle(buckets: SubscriptionThrottle) -> Middleware:
    @web.middleware
    async def arm_throttle(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = _SUBSCRIPTION.match(request.path)
        if match is None:
            return await handler(request)
        subscription = match.group(1)
        verdict = buckets.take(subscription, kind_of(request.method))
        if not verdict.allowed:
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{verdict.kind}' requests for subscription '{subscription}' actor "
                f"'emulator' exceeded. Please try again after '{verdict.retry_after}' seconds after the "
                "additional tokens are available. Refer to https://aka.ms/arm-throttling for additional "
                "information.",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        remaining = {
            f"x-ms-ratelimit-remaining-subscription-{verdict.kind}": str(verdict.remaining),
            f"x-ms-ratelimit-remaining-subscription-global-{verdict.kind}": str(verdict.global_remaining),
        }
        try:
            response = await handler(request)
        except ArmError as exc:
            exc.headers.update(remaining)
            raise
        response.headers.update(remaining)
        return response

    return arm_throttle
