"""What every layer may import: settings, the error types, the telemetry interfaces.

The leaf of the layers (pyproject.toml, [tool.importlinter]): it imports only the standard
library and third-party libraries, never another package of this repository, so ops,
consumers, retry_topics, storage and schemas can all depend on it without pointing an import
upwards or making a cycle. `settings.py`, `errors.py`, `telemetry.py` (what the runtime
reports, for metrics) and `tracing.py` (OpenTelemetry spans across the Kafka hops).
"""
