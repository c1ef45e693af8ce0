"""Encoded streams cut into samples: one access unit (a picture) per sample, and whether
a decoder can start there.

The live view gets each camera's packets as ffmpeg writes them to a pipe: H.264 as an
Annex B byte stream with an access-unit delimiter before every picture, AV1 as a
low-overhead OBU stream with a temporal delimiter before every temporal unit. A viewer
takes one picture per sample, so the bytes are cut at those delimiters; a sample that
a decoder can start from (an IDR picture, an AV1 key frame with its sequence header) is
marked, so that a lagging viewer can skip to the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ViewError

MAX_SAMPLE = 64 << 20  # one picture larger than this is not a picture: the stream is broken


@dataclass(frozen=True)
class Sample:
    data: bytes
    keyframe: bool


class SampleSplitter:
    """Bytes in (any chunking), whole samples out, in stream order."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Sample]:
        self._buf += data
        if len(self._buf) > MAX_SAMPLE:
            raise ValueError(f"no sample boundary in {len(self._buf)} bytes")
        cuts = self._boundaries()
        out = []
        start = cuts[0] if cuts else None
        for end in cuts[1:]:
            out.append(self._sample(bytes(self._buf[start:end])))
            start = end
        if start is not None:
            del self._buf[:start]
        return out

    def flush(self) -> list[Sample]:
        """The last sample, once the stream has ended."""
        rest, self._buf = bytes(self._buf), bytearray()
        return [self._sample(rest)] if rest and self._starts(rest) else []

    def _boundaries(self) -> list[int]:
        raise NotImplementedError

    def _starts(self, data: bytes) -> bool:
        raise NotImplementedError

    def _sample(self, data: bytes) -> Sample:
        raise NotImplementedError


class H264Splitter(SampleSplitter):
    """Annex B H.264 with an access-unit delimiter (NAL type 9) before each picture."""

    def _nals(self, data: bytes | bytearray, start: int = 0):
        """(offset of the start code, NAL type) of each NAL unit from ``start``."""
        i = data.find(b"\x00\x00\x01", start)
        while i >= 0 and i + 3 < len(data):
            at = i - 1 if i > 0 and data[i - 1] == 0 else i  # a 4-byte start code
            yield at, data[i + 3] & 0x1F
            i = data.find(b"\x00\x00\x01", i + 3)

    def _boundaries(self) -> list[int]:
        return [at for at, kind in self._nals(self._buf) if kind == 9]

    def _starts(self, data: bytes) -> bool:
        return any(kind == 9 for _, kind in self._nals(data))

    def _sample(self, data: bytes) -> Sample:
        return Sample(data, any(kind == 5 for _, kind in self._nals(data)))


def _leb128(data: bytes | bytearray, i: int) -> tuple[int, int]:
    """(value, bytes used) of the LEB128 number at ``i``."""
    value = 0
    for n in range(8):
        if i + n >= len(data):
            raise IndexError("cut")
        byte = data[i + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            return value, n + 1
    raise ValueError("an OBU size longer than 8 bytes")


OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, OBU_FRAME_HEADER, OBU_FRAME = 1, 2, 3, 6


class AV1Splitter(SampleSplitter):
    """AV1 OBUs, every one with its size field, a temporal delimiter before each unit."""

    def _obus(self, data: bytes | bytearray):
        """(offset, OBU type, payload offset, end) of each whole OBU."""
        i = 0
        while i < len(data):
            header = data[i]
            kind, extension, has_size = (header >> 3) & 0xF, header & 0x4, header & 0x2
            if not has_size:
                raise ValueError("an AV1 OBU without a size field")
            start = i + 1 + (1 if extension else 0)
            try:
                size, used = _leb128(data, start)
            except IndexError:
                return  # the rest has not arrived yet
            end = start + used + size
            if end > len(data):
                return
            yield i, kind, start + used, end
            i = end

    def _boundaries(self) -> list[int]:
        return [at for at, kind, _, _ in self._obus(self._buf) if kind == OBU_TEMPORAL_DELIMITER]

    def _starts(self, data: bytes) -> bool:
        return any(kind == OBU_TEMPORAL_DELIMITER for _, kind, _, _ in self._obus(data))

    def _sample(self, data: bytes) -> Sample:
        sequence = key = False
        for _, kind, payload, end in self._obus(data):
            sequence |= kind == OBU_SEQUENCE_HEADER
            if kind in (OBU_FRAME_HEADER, OBU_FRAME) and payload < end:
                first = data[payload]
                # show_existing_frame (1 bit), then frame_type (2 bits): 0 is KEY_FRAME
                key |= not first & 0x80 and (first >> 5) & 0x3 == 0
        return Sample(data, sequence and key)


SPLITTERS: dict[str, type[SampleSplitter]] = {"h264": H264Splitter, "av1": AV1Splitter}


_AV1 = ("libsvtav1", "libaom-av1")
_H264 = ("libx264",)


def preview_codec(vcodec: str, extra_options: dict) -> str:
    """The codec a viewer gets for a stream encoded with ``vcodec`` ("h264" or "av1");
    ViewError, saying what would work, when its packets cannot be shown as they are."""
    if vcodec in _AV1:
        return "av1"
    if vcodec in _H264:
        if str(extra_options.get("bf", "")).strip() == "0":
            return "h264"
        raise ViewError(
            "the live view shows H.264 without B-frames (viewers decode pictures in the "
            "order they arrive): record with extra_options={'bf': '0'}, which changes the "
            "file (no B-frames: somewhat larger at the same crf), or with AV1 (libsvtav1, "
            "the default)"
        )
    raise ViewError(
        f"the live view takes AV1 ({', '.join(_AV1)}) or H.264 without B-frames "
        f"(libx264 with extra_options={{'bf': '0'}}); {vcodec} is not shown. Record "
        "with one of those, or leave the view off"
    )
