"""Audiences for ad platforms: definitions, hashed identifiers, data quality, holdouts, export.

ARCHITECTURE §6: no consent, no audience membership; exported identifiers are SHA-256 of
the normalised value (trimmed, lower-cased e-mail; E.164 phone). The CLI
(``klantbeeld audience export``) and the API (``GET /v1/audiences/{name}/export``) call the
same :func:`serving.audiences.export.select_members` and
:func:`serving.audiences.export.csv_lines`.
"""
