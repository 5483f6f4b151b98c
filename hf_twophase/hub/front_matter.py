"""The YAML front matter of a repository card, parsed under limits, because any writer can put anything there.

The local Hub lists every repository with its card data, so one card that makes the parser explode (an alias
bomb, thousands of nested levels, a date used as a key) must cost its own repository its metadata and nothing
else. The loader is PyYAML's safe loader with three changes: no aliases at all (the Hub's cards have no use for
them, and they are how a 400-byte card expands to megabytes), a nesting limit checked while the document is
composed (before any recursion can run deep), and timestamps kept as the strings they were written as (so every
key and value stays JSON).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

MAX_FRONT_MATTER_BYTES = 64 * 1024
MAX_DEPTH = 32
_FRONT_MATTER = re.compile(r"^---\s*\n(.*?)\n---\s*(\n|$)", flags=re.S)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class FrontMatterError(ValueError):
    """A card's front matter is not YAML this server accepts; the message says why."""


class _CardLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise FrontMatterError("YAML aliases (*name) are not accepted in card metadata")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise FrontMatterError(f"card metadata is nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def front_matter_text(card: str) -> str | None:
    """The YAML between the leading ``---`` lines, or None when the card has none."""
    match = _FRONT_MATTER.match(card)
    return match.group(1) if match else None


def parse_yaml(text: str) -> Any:
    """YAML under the limits above, as JSON-compatible data; :class:`FrontMatterError` otherwise."""
    if len(text.encode("utf-8", "replace")) > MAX_FRONT_MATTER_BYTES:
        raise FrontMatterError(f"card metadata is larger than {MAX_FRONT_MATTER_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_CardLoader)  # noqa: S506 - a SafeLoader subclass
        return json.loads(json.dumps(data))  # non-string keys become strings, or fail here
    except FrontMatterError:
        raise
    except (yaml.YAMLError, TypeError, ValueError, RecursionError) as error:
        raise FrontMatterError(f"card metadata is not valid YAML: {str(error)[:200]}") from None


def card_metadata(card: str) -> dict:
    """The card's metadata, or ``{}`` when it has none or it cannot be accepted (only this card is affected)."""
    text = front_matter_text(card)
    if text is None:
        return {}
    try:
        data = parse_yaml(text)
    except FrontMatterError:
        return {}
    return data if isinstance(data, dict) else {}
