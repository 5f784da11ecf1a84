"""Structured sequence models, shared by both sides: file formats and NumPy inference.

Neither side: the cloud's training (``cdarec.cloud.training``) writes and validates these
models and the device runs them. ``sasrec`` is the self-attentive model's NumPy runtime
and file format, ``transition`` the item-to-item transition model, ``structured`` the
blend of the two that both sides form, ``metrics`` the ranking metrics and candidate
sampling (the training's validation and every evaluation protocol), ``config`` the
SASRec configuration and ``artefacts`` where a trained model is shipped. Importing this
package never imports torch.
"""
