"""The repository's root, for tests that run its files (googlenet.py, the lessons, bench/)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
