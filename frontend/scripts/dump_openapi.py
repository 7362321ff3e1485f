"""Print the backend's OpenAPI document (what /api/v1/openapi.json serves), without starting a server."""

import json
import sys
import tempfile

from gpufl.backend.app import create_app
from gpufl.backend.config import Settings
from gpufl.backend.store import open_store

with tempfile.TemporaryDirectory() as d:
    settings = Settings(data_dir=d)
    store = open_store(settings.database_url())
    try:
        app = create_app(settings, store, start_jobs=False)
        json.dump(app.openapi(), sys.stdout, indent=1, sort_keys=True)
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
