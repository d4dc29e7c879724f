"""How schemathesis holds each running service to its OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.specs.openapi.schemas import OpenApiSchema

# A request line over gunicorn's limit is refused (414, problem+json, documented on every
# operation) before the service reads it, and a body over MAX_BODY_BYTES (413, documented on
# every operation with a body) before it is parsed: each as much a rejection as a 422, and
# schemathesis's negative cases with very long strings or arrays reach them.
_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413", "414"]
            }
        }
    }
)


def service_schema(spec: Path | str) -> OpenApiSchema:
    return schemathesis.openapi.from_path(str(spec), config=_CONFIG)
