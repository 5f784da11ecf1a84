"""cdarec: cloud-device collaborative agents for sequential recommendation (CDA4Rec)."""
