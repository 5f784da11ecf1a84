"""Cloud side: the catalogue (Chroma) and the collaborative index the cloud searches."""
