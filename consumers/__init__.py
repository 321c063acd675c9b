"""The consumer runtime: listeners poll, dispatch runs handlers, offsets commit safely."""
