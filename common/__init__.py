"""The leaf package every layer may import (consumers, retry_topics, storage, ops, schemas).

It imports only the standard library and optional third-party extras, never another package
of this repository, so that importing it can never create a cycle. Today it holds the
telemetry interface (`common.tracing`); the settings and the error types shared by the
layers will move here later.
"""
