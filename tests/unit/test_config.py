"""Loading the service configuration from YAML: values, environment variables, error lines."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from stream.config import ServerSettings, ServiceConfig, load_config
from stream.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "example.yaml"

CAMERAS = """\
cameras:
  - name: door
    url: rtsp://cam.local/stream1
"""


def write(tmp_path: Path, *parts: str) -> Path:
    """``tmp_path/site.yaml`` holding ``parts``, each dedented, one after the other."""
    path = tmp_path / "site.yaml"
    path.write_text("".join(textwrap.dedent(part) for part in parts), encoding="utf-8")
    return path


def error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def field_names(model: type[BaseModel]) -> set[str]:
    """Every field name of ``model`` and of the models its fields hold, however nested."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        stack: list[Any] = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= field_names(annotation)
            stack.extend(getattr(annotation, "__args__", ()))
    return names


def test_example_loads_with_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PASSWORD", "hunter2")
    monkeypatch.setenv("MQTT_PASSWORD", "mqtt-secret")
    monkeypatch.setenv("FACESTREAM_TOKEN", "tok")
    config = load_config(EXAMPLE)
    assert [camera.name for camera in config.cameras] == ["entrance", "desk"]
    assert config.cameras[0].url == "rtsp://user:hunter2@192.168.1.20:554/stream1"
    assert [camera.kind for camera in config.cameras] == ["network", "webcam"]
    assert config.mqtt is not None
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "mqtt-secret"
    assert config.server.token is not None
    assert config.server.token.get_secret_value() == "tok"


def test_example_defaults_mean_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CAM_PASSWORD", "MQTT_PASSWORD", "FACESTREAM_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(EXAMPLE)
    assert config.cameras[0].url == "rtsp://user:secret@192.168.1.20:554/stream1"
    assert config.mqtt is not None
    assert config.mqtt.password is None
    assert config.mqtt.username == "facestream"
    assert config.server.token is None


def test_example_documents_every_field() -> None:
    keys = set(re.findall(r"^[ #]*(?:- )?([a-z_]+):", EXAMPLE.read_text(), re.MULTILINE))
    names = field_names(ServiceConfig)
    assert {"cameras", "sample_fps", "ping_timeout_s", "ca_file", "insecure"} <= names
    assert names - keys == set()


def test_empty_credentials_mean_none() -> None:
    assert ServerSettings(token="").token is None
    assert ServerSettings(token="t").token is not None


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CAMERAS))
    assert config.cameras[0].sample_fps == 5.0
    assert config.mqtt is None
    assert config.server.port == 8080


def test_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "    sample_fps: fast\n")
    assert error(path) == (f"{path} line 4: cameras[0].sample_fps: Input should be a valid "
                           "number, unable to parse string as a number")


def test_out_of_range_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        # site config

        cameras:
          - name: door
            url: rtsp://cam.local/stream1
          - name: yard
            url: /dev/video1
            sample_fps: 0
        """)
    assert error(path) == (f"{path} line 8: cameras[1].sample_fps: Input should be greater "
                           "than 0")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "servers:\n  port: 80\n")
    assert error(path) == (f"{path} line 4: servers: unknown key (known: cameras, sources, "
                           "engine, events, server, mqtt, gallery, node); did you mean server?")


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "engine:\n  device: cpu\n  detect_widht: 320\n")
    message = error(path)
    assert message.startswith(f"{path} line 6: engine.detect_widht: unknown key (known: "
                              "embedder, weights, allow_download, device, detect_width,")
    assert message.endswith("; did you mean detect_width?")


def test_unsupported_url_scheme(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        cameras:
          - name: door
            url: ftp://cam.local/video.mp4
        """)
    message = error(path)
    assert message.startswith(f"{path} line 3: cameras[0].url: unsupported source "
                              "'ftp://cam.local/video.mp4'")


def test_duplicate_camera_names_point_at_the_repeat(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        cameras:
          - name: door
            url: rtsp://cam.local/stream1
          - name: yard
            url: /dev/video0
          - {name: door, url: /dev/video1}
        """)
    assert error(path) == (f"{path} line 6: cameras[2].name: camera name 'door' is already "
                           "used by cameras[0]; give each camera its own name")


def test_missing_required_key_points_at_its_parent(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "mqtt:\n  qos: 1\n")
    assert error(path) == f"{path} line 4: mqtt.url: required key is missing; add it"


def test_nested_model_check_points_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "sources:\n  backoff_initial_s: 10\n  backoff_max_s: 5\n")
    assert error(path) == (f"{path} line 4: sources: backoff_max_s must be at least "
                           "backoff_initial_s")


def test_several_problems_are_all_reported_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        server:
          port: 70000
        cameras:
          - name: bad name
            url: /dev/video0
        """)
    lines = error(path).splitlines()
    assert lines[0] == f"{path}: 2 problems"
    assert lines[1].startswith(f"{path} line 2: server.port: Input should be less than or equal")
    assert lines[2].startswith(f"{path} line 4: cameras[0].name: camera name 'bad name' may")
    assert len(lines) == 3


def test_environment_variables_are_substituted(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_HOST", "10.0.0.5")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("PORT", raising=False)
    path = write(tmp_path, """\
        cameras:
          - name: door
            url: rtsp://${CAM_HOST}/s1
        server:
          port: ${PORT:-9000}
          host: ${EMPTY:-0.0.0.0}
        """)
    config = load_config(path)
    assert config.cameras[0].url == "rtsp://10.0.0.5/s1"
    assert config.server.port == 9000
    assert config.server.host == "0.0.0.0"


def test_missing_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_PASSWORD", raising=False)
    path = write(tmp_path, CAMERAS, """\
        mqtt:
          url: mqtt://broker:1883
          password: ${MQTT_PASSWORD}
        """)
    assert error(path) == (f"{path} line 6: mqtt.password: environment variable MQTT_PASSWORD "
                           "is not set; set it or give a default as ${MQTT_PASSWORD:-default}")


def test_malformed_variable(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "server:\n  token: ${NOT CLOSED\n")
    assert error(path).startswith(f"{path} line 5: server.token: malformed ${{...}}")


def test_escaped_dollar_brace_is_literal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET", "expanded")
    path = write(tmp_path, CAMERAS + "server:\n  token: a$${SECRET}b\n")
    token = load_config(path).server.token
    assert token is not None
    assert token.get_secret_value() == "a${SECRET}b"


def test_variable_values_cannot_inject_yaml(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "x\nport: 1\n[")
    path = write(tmp_path, CAMERAS + "server:\n  token: ${TOKEN}\n")
    config = load_config(path)
    assert config.server.port == 8080
    assert config.server.token is not None
    assert config.server.token.get_secret_value() == "x\nport: 1\n["


def test_only_string_values_are_substituted(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY", "port")
    path = write(tmp_path, CAMERAS + "server:\n  ${KEY}: 80\n")
    assert error(path).startswith(f"{path} line 5: server.${{KEY}}: unknown key")


def test_repeated_key(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "server:\n  port: 80\n  port: 81\n")
    assert error(path) == (f"{path} line 6: server.port: repeated key (first on line 5); keep "
                           "only one")


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS, "server:\n  host: a: b\n  port: 80\n")
    assert error(path).startswith(f"{path} line 5: invalid YAML: mapping values are not "
                                  "allowed here;")


def test_unknown_yaml_tag_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS + "server: !!python/object:os.system {}\n")
    assert error(path).startswith(f"{path} line 4: invalid YAML: could not determine a "
                                  "constructor")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert error(path).startswith(f"{path}: the configuration file is empty;")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "\n- name: door\n")
    assert error(path).startswith(f"{path} line 2: the top level is a list;")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error(path).startswith(f"{path}: no such configuration file;")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    assert error(tmp_path).startswith(f"{tmp_path}: cannot read the configuration file (")


# Any YAML a user might write: mappings and lists of the config's own keys, with odd values.
_KEYS = sorted(field_names(ServiceConfig) | {"cameras", "nope", "url", "name"})
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                     st.floats(allow_nan=True), st.text(max_size=30),
                     st.sampled_from(["rtsp://cam/1", "/dev/video0", "${UNSET}", "${X:-1}",
                                      "$${literal}", "${", "0.0.0.0", "mqtt://b:1883"]))
_DOCUMENTS = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)),
    max_leaves=25)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_DOCUMENTS, raw=st.text(max_size=80))
def test_any_yaml_is_a_config_or_one_line_that_names_what_is_wrong(
        tmp_path: Path, document: object, raw: str) -> None:
    for text in (yaml.safe_dump(document, allow_unicode=True), raw):
        path = tmp_path / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path)
        except ConfigError as problem:
            message = str(problem)
            assert message and "Traceback" not in message and str(path) in message
        else:
            assert config.cameras


def test_gate_and_recall_are_settings_of_the_engine(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CAMERAS, """\
        engine:
          min_face_px: 24
          gate:
            min_face_px: 48
          recall:
            faces: 8
        """))
    assert config.engine.min_face_px == 24
    assert (config.engine.gate.min_face_px, config.engine.gate.min_score) == (48, 0.95)
    assert (config.engine.recall.faces, config.engine.recall.min_face_px) == (8, 20)


def test_recall_past_the_gate_names_both_fields(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERAS, """\
        engine:
          recall:
            min_face_px: 50
        """)
    assert error(path) == (f"{path} line 4: engine: recall.min_face_px (50) must be at most "
                           "gate.min_face_px (40): recall takes faces the gate refuses")
    path = write(tmp_path, CAMERAS, """\
        engine:
          gate:
            min_score: 1.5
        """)
    assert error(path) == (f"{path} line 6: engine.gate.min_score: Input should be less than "
                           "or equal to 1")


def test_node_is_the_host_name_unless_named(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "cam box#2")
    assert load_config(write(tmp_path, CAMERAS)).node == "cam-box-2"
    assert load_config(write(tmp_path, CAMERAS, "node: lobby.site-1\n")).node == "lobby.site-1"
    path = write(tmp_path, CAMERAS, "node: lobby/1\n")
    assert error(path) == (f"{path} line 4: node: node name 'lobby/1' may only hold letters, "
                           "digits, _, - and . (1 to 64 of them)")
