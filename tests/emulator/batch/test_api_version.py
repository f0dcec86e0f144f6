"""The Batch data plane refuses a request without an api-version, or with one it does not serve (issue 15,
point 9), as the service does.

Sources: azure-sdk-for-python issue 19224 (an api-version the service did not know yet: 400
``InvalidQueryParameterValue``, "Value for one of the query parameters specified in the request URI is
invalid.\\nRequestId:…\\nTime:…", in the OData error body) and azure-sdk-for-js issue 22398 (a task URL without
api-version: ``MissingRequiredQueryParameter`` in the same body). The ``values`` entries (``QueryParameterName``,
``QueryParameterValue``) follow the key names of the service's other errors; the threads do not show them.
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import AsyncHttpResponse, HttpRequest

from tests.emulator.batch.conftest import API_VERSION, BatchEmulator

pytestmark = pytest.mark.emulator


async def test_an_older_clients_api_version_is_refused_with_invalid_query_parameter_value(
    emulator: BatchEmulator,
) -> None:
    """azure-batch with an api-version the emulator does not serve (14.x's ``2024-07-01.20.0``) gets 400
    ``InvalidQueryParameterValue`` with the OData error body, no Retry-After, and the SDK raises on it."""
    async with emulator.client(api_version="2024-07-01.20.0") as old:
        with pytest.raises(HttpResponseError) as raised:
            [pool async for pool in old.list_pools()]
    response = raised.value.response
    assert isinstance(response, AsyncHttpResponse), response  # the azure.core.rest response of a typespec client
    assert response.status_code == 400
    assert "Retry-After" not in response.headers
    assert response.headers["DataServiceVersion"] == "3.0"
    assert response.headers["request-id"]
    body = response.json()
    assert body["odata.metadata"].endswith(
        "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
    )
    assert body["code"] == "InvalidQueryParameterValue"
    assert body["message"]["lang"] == "en-US"
    assert body["message"]["value"].startswith(
        "Value for one of the query parameters specified in the request URI is invalid.\nRequestId:"
    )
    assert body["values"] == [
        {"key": "QueryParameterName", "value": "api-version"},
        {"key": "QueryParameterValue", "value": "2024-07-01.20.0"},
    ]


async def test_a_request_without_api_version_is_refused_and_the_served_one_is_accepted(
    emulator: BatchEmulator,
) -> None:
    """No api-version at all: 400 ``MissingRequiredQueryParameter`` naming ``api-version``; the served version
    (azure-batch 15.1's default) is answered 200."""
    async with emulator.client() as client:
        with pytest.raises(HttpResponseError) as raised:
            await client.send_request(HttpRequest("GET", "/pools"))
        served = await client.send_request(HttpRequest("GET", f"/pools?api-version={API_VERSION}"))
        await served.read()

    missing = raised.value.response
    assert isinstance(missing, AsyncHttpResponse), missing
    assert missing.status_code == 400
    assert missing.json()["code"] == "MissingRequiredQueryParameter"
    assert missing.json()["values"] == [{"key": "QueryParameterName", "value": "api-version"}]
    assert served.status_code == 200
    assert served.json()["value"] == []
