"""Disagreements between facesets and the user's Immich people, as manifests record them
(`immich_disagreements`) and as the import summary and the report word them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MERGED = "immich_merged"  # faces of one person far from its core: two people merged?
SPLIT = "immich_split"  # one person with two faces of one photo (cannot-link)
NAMED_TWICE = "immich_named_twice"  # two named people whose centroids lie close
KINDS = {
    MERGED: "faces Immich gave one person lie far from that person's other faces "
    "(two people merged?)",
    NAMED_TWICE: "two named people look like one person (named twice?)",
    SPLIT: "Immich gave one person two faces of one photo",
}


def describe(item: Mapping[str, Any]) -> str:
    """One line of plain text for a disagreement."""
    kind = str(item.get("kind", ""))
    if kind == NAMED_TWICE:
        people = " and ".join(f"'{p}'" for p in item.get("people", []))
        if item.get("held_by"):
            return f"named twice: {people} (the first one's faces are in {item['held_by']})"
        return (
            f"named twice: {people} (centroids {item.get('distance')} apart, "
            f"<= {item.get('threshold')})"
        )
    faces = len(item.get("face_ids", []))
    if kind == MERGED:
        return (
            f"merged: '{item.get('person')}' has {faces} face(s) beyond "
            f"{item.get('threshold')} of its core (left out of its faceset)"
        )
    if kind == SPLIT:
        return f"split by cannot-link: '{item.get('person')}' has {faces + 1} faces in one photo"
    return kind
