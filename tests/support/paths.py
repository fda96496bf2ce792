"""Where the tests find the project and which database and model they use."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTENT_DIR = ROOT / "faq_content"
DATA_DIR = ROOT / "tests" / "data"
PG_URL = os.environ.get("FAQLOOP_TEST_DATABASE_URL")
TEST_MODEL = os.environ.get("FAQLOOP_TEST_EMBEDDING_MODEL", "multilingual-e5-small")
