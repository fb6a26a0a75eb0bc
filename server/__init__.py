"""The HTTP server: OpenAI-compatible routes, streaming, metrics, auth."""
