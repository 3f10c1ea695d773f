"""Scoring and re-ranking for the online path.

Candidate retrieval, fold-in, re-ranking and list metrics are pure functions over numpy
arrays; only adapter modules named after their client (e.g. ``onnx_session``) do I/O.
"""
