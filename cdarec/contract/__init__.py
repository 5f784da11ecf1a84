"""Contract: what crosses between the sides — the state, its schemas, the plan, the request's
reading; imports neither side."""
