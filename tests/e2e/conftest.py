"""e2e fixtures: the API-server emulator (`cluster`) and moto's S3 server (`s3_server`)."""

from tests.support.operator_fixtures import cluster, s3_server  # noqa: F401
