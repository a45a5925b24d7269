"""A looping RTSP test server: ``rtsp_server.py VIDEO.mp4 PORT [--mount /cam]``.

Serves an H.264 mp4 on rtsp://127.0.0.1:PORT/cam with GStreamer's RTSP server, prints "ready"
once listening and runs until killed. Every client gets its own pipeline, from the video's start,
and the video loops, so a stream never ends by itself.

It runs with Debian's /usr/bin/python3, which has PyGObject and GstRtspServer (packages
gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad).
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class LoopingFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]  # gi: no stubs
    """Media that play ``video`` and seek back to its start instead of ending."""

    def __init__(self, video: str) -> None:
        super().__init__()
        self.video = video
        self.set_launch("( filesrc name=src ! qtdemux ! h264parse ! "
                        "rtph264pay name=pay0 pt=96 config-interval=-1 )")
        self.set_shared(False)  # each client gets its own pipeline, from the start

    def do_configure(self, media: GstRtspServer.RTSPMedia) -> None:
        top = media.get_element()
        top.get_by_name("src").set_property("location", self.video)
        pipeline = top
        while pipeline.get_parent() is not None:
            pipeline = pipeline.get_parent()

        def rewind() -> bool:
            # A flushing seek on the pipeline also restarts its clock, so playback stays paced.
            pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH, 0)
            return False

        def on_event(pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
            if info.get_event().type != Gst.EventType.EOS:
                return Gst.PadProbeReturn.OK
            # Past the payloader, EOS would end the client's session (RTCP BYE).
            GLib.idle_add(rewind)  # seeking from a streaming thread would deadlock
            return Gst.PadProbeReturn.DROP

        pay = top.get_by_name("pay0")
        pay.get_static_pad("sink").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="an H.264 mp4 file")
    parser.add_argument("port", type=int)
    parser.add_argument("--mount", default="/cam")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.mount, LoopingFactory(args.video))
    if not server.attach(None):
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
