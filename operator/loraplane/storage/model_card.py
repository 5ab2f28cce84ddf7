"""Amend a published adapter's model card (README.md) with a section written after publishing.

The section sits between two HTML comments named by its key, so writing it again
replaces it. The manifest's entry for the card is updated after the card, so the
adapter stays verifiable; the card is outside the adapter's digest (`CARD_FILE`).
"""

from __future__ import annotations

import hashlib

from .manifest import CARD_FILE, MANIFEST_FILE, FileEntry, ManifestError, read_manifest
from .uris import filesystem, join


def with_section(card: str, key: str, section: str) -> str:
    """The card with `section` between the markers of `key`, replacing an earlier one or appended."""
    begin, end = f"<!-- loraplane:{key} -->", f"<!-- /loraplane:{key} -->"
    block = f"{begin}\n{section.strip()}\n{end}\n"
    start = card.find(begin)
    stop = card.find(end, start) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        return card[:start] + block + card[stop + len(end):].lstrip("\n")
    return card.rstrip("\n") + ("\n\n" if card.strip() else "") + block


def amend_card(adapter_uri: str, key: str, section: str) -> str:
    """Write `section` into the adapter's README.md and its manifest entry; returns the card's URI."""
    manifest = read_manifest(adapter_uri)
    if manifest is None:
        raise ManifestError(f"{join(adapter_uri, MANIFEST_FILE)}: not found, so the adapter is not published")
    uri = join(adapter_uri, CARD_FILE)
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            card = f.read().decode()
    except FileNotFoundError:
        card = ""
    body = with_section(card, key, section).encode()
    fs.pipe_file(path, body)
    entry = FileEntry(path=CARD_FILE, sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    manifest.files = [*(e for e in manifest.files if e.path != CARD_FILE), entry]
    mfs, mpath = filesystem(join(adapter_uri, MANIFEST_FILE))
    mfs.pipe_file(mpath, manifest.to_json().encode())
    return uri
