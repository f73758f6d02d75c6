"""GET /languages: the language pairs this service translates, in LibreTranslate's shape."""

from __future__ import annotations

from fastapi import APIRouter

from service.schemas import SOURCE_LANGUAGE, TARGET_LANGUAGE, Language

router = APIRouter(tags=["translation"])

LANGUAGES = [Language(code=SOURCE_LANGUAGE, name="Hindi", targets=[TARGET_LANGUAGE])]


@router.get("/languages", response_model=list[Language])
async def list_languages() -> list[Language]:
    """List the source languages and the targets each can be translated into."""
    return LANGUAGES
