"""The worker's MongoDB client reads from the primary, whatever the URI asks for."""

from __future__ import annotations

import pytest
from pymongo import ReadPreference

from shared.config import Settings
from shared.db import _server_client


@pytest.mark.anyio
@pytest.mark.parametrize("uri_preference", ["secondaryPreferred", "secondary", "nearest", ""])
async def test_reads_go_to_the_primary_even_when_the_uri_prefers_replicas(
        uri_preference: str) -> None:
    query = f"?readPreference={uri_preference}" if uri_preference else ""
    settings = Settings(mongodb_uri=f"mongodb://127.0.0.1:9/{query}")
    client = _server_client(settings)  # connects lazily: no server needed to inspect it
    try:
        assert client.read_preference == ReadPreference.PRIMARY
        assert client["offload"]["orders"].read_preference == ReadPreference.PRIMARY
    finally:
        await client.close()
