"""Appearances into the gallery: the one adapter that persists what the lanes decided, for the
file driver and the live engine alike.

A write the store refuses (:class:`~stream.errors.StorageError`, a full disk) leaves the
recorder as it was before the call, so that calling again with the same appearances once the
store takes writes again records each of them once. A person removed meanwhile, by this
process or another sharing the gallery, is skipped.
"""

from __future__ import annotations

import time

from stream.errors import NotFoundError
from stream.identity.gallery import Gallery
from stream.pipeline.appearances import OpenAppearance
from stream.types import PersonLeft


class AppearanceRecorder:
    """Writes appearances to the gallery's store. ``wall_clock``: record wall-clock times (live
    cameras); otherwise the times on the video's own timeline (files)."""

    def __init__(self, gallery: Gallery, *, wall_clock: bool) -> None:
        self.gallery = gallery
        self.wall_clock = wall_clock
        self._rows: dict[tuple[str, str], int] = {}  # open appearance -> its row

    def save_open(self, opened: dict[str, list[OpenAppearance]]) -> None:
        """Write how far the open appearances (by source) have got, so that a crash loses
        only the last moments of them."""
        store = self.gallery.store
        added: dict[tuple[str, str], int] = {}  # kept once the transaction is committed
        with store.transaction():
            for source, appearances in opened.items():
                for appearance in appearances:
                    identity = Gallery.number(appearance.person)
                    if identity not in self.gallery:
                        continue  # forgotten or merged meanwhile
                    row = self._rows.get((source, appearance.person))
                    if row is not None:
                        store.extend_appearance(row, appearance.last_seen)
                        continue
                    try:
                        added[source, appearance.person] = store.add_appearance(
                            identity, source, appearance.start, appearance.last_seen)
                    except NotFoundError:
                        continue  # removed by another process since the gallery last looked
        self._rows.update(added)

    def record(self, source: str, left: list[PersonLeft], *, widen_s: float = 0.0,
               until: float = float("inf")) -> None:
        """Write appearances that ended (extending their row when one was saved open).
        On a video's timeline, each is widened by ``widen_s`` either side, within [0, until],
        as the report shows it."""
        if not left:
            return
        store = self.gallery.store
        with store.transaction():
            for event in left:
                start, end = ((event.start, event.end) if self.wall_clock else
                              (max(0.0, event.start_frame_time - widen_s),
                               min(until, event.end_frame_time + widen_s)))
                row = self._rows.get((source, event.person))
                if not self.wall_clock:  # a video's times are not when the person was seen
                    store.seen(Gallery.number(event.person), time.time())
                if row is not None:
                    store.extend_appearance(row, end)
                elif Gallery.number(event.person) in self.gallery:
                    try:
                        store.add_appearance(Gallery.number(event.person), source, start, end)
                    except NotFoundError:
                        continue  # removed by another process since the gallery last looked
        for event in left:
            self._rows.pop((source, event.person), None)
