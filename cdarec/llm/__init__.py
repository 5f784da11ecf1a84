"""Shared: model clients for either side — llama.cpp in process, OpenAI-compatible HTTP, Ollama,
the embedder."""
