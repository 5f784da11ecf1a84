"""Graph: where the two sides meet — the graph builder, its checkpointers, both sides' resources."""
