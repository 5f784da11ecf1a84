"""Cloud side: the planner, semantic modelling, retrieval, the catalogue and model training; it
never imports the device side."""
