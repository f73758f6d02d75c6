"""HTTP service for Hindi-to-English translation (FastAPI)."""

from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "create_app"]
