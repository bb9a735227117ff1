"""Composability cases of ranking losses (a part of ``composability_cases.CASES``)."""

from __future__ import annotations

CASES: list = []
NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {}
