"""Operations: CLI, HTTP endpoints, dev servers."""
