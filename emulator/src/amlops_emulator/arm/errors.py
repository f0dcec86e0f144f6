"""ARM error bodies and the exception that carries them.

The body's shape depends on the api-version (:mod:`amlops_emulator.arm.versions`): ``MachineLearningServiceError``
``{"error": {"code", "message", "details"}}`` up to 2021-04-01, the common-types ``ErrorResponse``
``{"error": {"code", "message", "target", "details", "additionalInfo"}}`` from 2021-07-01.

Never attach ``Retry-After`` to 400/404/409: azure-core retries any response that has one (fidelity trap 7).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from amlops_emulator.arm.versions import DEFAULT, ErrorShape


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, shape: ErrorShape = DEFAULT.errors) -> dict[str, Any]:
        return error_body(self.code, self.message, shape)

    def response(self, shape: ErrorShape = DEFAULT.errors) -> web.Response:
        return error_response(self.status, self.code, self.message, self.headers, shape)


def error_body(code: str, message: str, shape: ErrorShape = DEFAULT.errors) -> dict[str, Any]:
    if shape is ErrorShape.COMMON_TYPES:
        # common-types ErrorDetail: every field is read-only and present; target null when none applies.
        return {"error": {"code": code, "message": message, "target": None, "details": [], "additionalInfo": []}}
    return {"error": {"code": code, "message": message, "details": []}}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    shape: ErrorShape = DEFAULT.errors,
) -> web.Response:
    response = web.json_response(error_body(code, message, shape), status=status, headers=headers)
    response.headers["x-ms-response-type"] = "error"
    return response


def bad_request(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)


def resource_group_not_found(rg: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")


def subscription_not_found(subscription: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")


def parent_not_found(workspace: str) -> ArmError:
    return ArmError(
        404,
        "ParentResourceNotFound",
        f"Can not perform requested operation on nested resource. Parent resource '{workspace}' not found.",
    )


def resource_not_found(resource_type: str, name: str, rg: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{rg}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def conflict(message: str, code: str = "Conflict") -> ArmError:
    return ArmError(409, code, message)
