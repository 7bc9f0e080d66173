"""Placeholder: filled in by the metrics work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
