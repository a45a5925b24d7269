"""The live second look: a young identity found, with more evidence, to be an older one.

Online, a track waits while it is a close call and, out of patience, becomes someone new (a
split is the lesser error than a merge). Its identity keeps gathering faces. Once it has
``second_look_faces`` good faces, and while it has fewer than ``young_faces``, it is compared
with the older identities as the file mode's second look (:mod:`stream.identity.refine`)
compares whole identities: by average linkage, the mean distance from the template of all its
good faces to each older identity's exemplars, under the same fixed bar (the threshold less
``close_band``). The older identity it joins must be the clear nearest (``margin`` before the
next; one it was on screen with, a cannot-link pair, is neither a candidate nor a rival), and
not both may be named by a user (two named people are one only by the user's ``merge``).

The bar is checked on videos held out from those it was made for (``python -m
benchmarks.calibrate_spread``: demo, speed, hard-roll, hard-blur, hard-bar, three-at-once,
occlusion): one person's later visits at 0.085-0.284 from their earlier exemplars, two people
from 0.331, so 0.295 sits between; an identity's own spread does not move the best bar (the
fitted slope is 0), so the bar is the same for every identity. On the splits it was made for
(24 good faces): one person's two identities at 0.278-0.290, the closest different people
0.303-0.317; the nearest exemplar alone does not separate them (0.265-0.278 against 0.272).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stream.identity.gallery import Gallery
from stream.identity.track import template
from stream.types import FloatArray


@dataclass(frozen=True)
class Duplicate:
    """A young identity that is an older one: ``gone`` joins ``keep`` at ``linkage``."""

    keep: int
    gone: int
    linkage: float


def older_identity(gallery: Gallery, young: int, faces: FloatArray, *, bar: float,
                   margin: float, neighbours: int, threshold: float, apart: frozenset[int],
                   named: Callable[[int], bool]) -> Duplicate | None:
    """The older identity (lower number) that ``young`` is, by the good ``faces`` of its tracks
    (see the module), or ``None``. ``apart``: the identities seen on screen with it;
    ``named``: whether a user named one. An identity a user said faces like these are not
    (within ``threshold``, as the matcher asks) is never it."""
    query = template(faces)
    found = gallery.search(query[None], neighbours)
    # One seen on screen with it is not it, so it is no rival for the margin either.
    older = {int(identity) for identity in found.identities[0] if 0 < identity < young
             and int(identity) not in apart
             and not gallery.rejected(int(identity), query, threshold)}
    linkages = sorted((float(np.mean(np.linalg.norm(gallery.vectors(identity) - query,
                                                     axis=1))), identity)
                      for identity in older)
    if not linkages:
        return None
    linkage, keep = linkages[0]
    second = linkages[1][0] if len(linkages) > 1 else float("inf")
    if linkage >= bar or second - linkage < margin or (named(keep) and named(young)):
        return None
    return Duplicate(keep, young, linkage)


__all__ = ["Duplicate", "older_identity"]
