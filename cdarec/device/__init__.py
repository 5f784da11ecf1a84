"""Device side: the private history, the abstract, the structured model's ranking, the SLM's
judgement; it never imports the cloud side."""
