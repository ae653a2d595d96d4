"""Segments: named groups of customers defined by rules over scores, features and attributes.

Rules are written in a small expression language (:mod:`serving.segments.expressions`,
parsed without ``eval``), declared in YAML (:mod:`serving.segments.config`) and checked on
load against the names klantbeeld knows (:mod:`serving.segments.schema`).
"""
