"""Service: what every interface shares — chat sessions, sessions listing, background
training. Imports neither the CLI, the web app nor the evaluation."""
