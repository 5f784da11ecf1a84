"""Web: the browser chat (an interface over the service)."""
