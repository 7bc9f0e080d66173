"""Placeholder: filled in by the admin work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
