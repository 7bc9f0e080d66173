"""Placeholder: filled in by the voices work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
