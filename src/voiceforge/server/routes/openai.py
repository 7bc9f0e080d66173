"""Placeholder: filled in by the openai work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
