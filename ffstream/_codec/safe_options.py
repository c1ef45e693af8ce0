"""What a setting may hand to ffmpeg: encoder options that name no file and no output.

Settings come from users, from episode.json files and from the command line, so they
are checked as untrusted input. Two traps are closed here:

- ffmpeg's command line reads its *own* options first. libx264's private option
  ``stats`` is also ffmpeg's flag ``-stats`` (no value), so ``-stats PATH`` made PATH a
  second output file. An ``extra_options`` key that ffmpeg's command line knows is
  refused, whatever the encoder says.
- ``x264-params``, ``x265-params``, ``x264opts`` and ``svtav1-params`` hand ``k=v:k=v``
  lists to the encoder library, where some keys write files (``dump-yuv``, ``csv``,
  ``analysis-save``, ``stats``...). Their values are parsed and each key must be on an
  allowlist of keys that only tune the encoder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import UnsafeSettingError

# Every option name ffmpeg's own command line reads (``ffmpeg -h long`` of 5.1 and of
# 9.0, plus the few it takes without listing them). The binary in use adds its own list
# (FFmpeg.own_options) when it is known.
FFMPEG_OWN_OPTIONS = frozenset(
    """
    ? L ab abort_on absf ac accurate_seek acodec adrift_threshold af aframes an apad
    apply_cropping apre aq ar aspect async atag attach auto_conversion_filters
    autorotate autoscale b benchmark benchmark_all bitexact bits_per_raw_sample bsf bsfs
    buildconf c canvas_size ch_layout channel_layout chroma_intra_matrix codec codecs
    colors content_light copy_unknown copyinkf copypriorss copytb copyts cpucount
    cpuflags dcodec debug_ts decoders demuxers devices dframes discard display_hflip
    display_rotation display_vflip disposition dispositions dn drop_changed
    dts_delta_threshold dts_error_threshold dump dump_attachment enc_time_base encoders
    f filter filter_buffered_frames filter_complex filter_complex_script
    filter_complex_threads filter_hw_device filter_script filter_threads filters
    find_stream_info fix_sub_duration fix_sub_duration_heartbeat force_fps
    force_key_frames formats fpre fps_mode fpsmax frame_drop_threshold frames fs
    guess_layout_max h help hex hide_banner hwaccel hwaccel_device hwaccel_output_format
    hwaccels ignore_unknown init_hw_device inter_matrix intra_matrix isync itsoffset
    itsscale lavfi layouts license loglevel map map_channel map_chapters map_metadata
    mastering_display max_alloc max_error_rate max_muxing_queue_size metadata muxdelay
    muxers muxing_queue_data_threshold muxpreload n pass passlogfile pix_fmt pix_fmts
    pre print_graphs print_graphs_file print_graphs_format profile program progress
    protocols psnr q qphist qscale qsv_device r rc_override re readrate readrate_catchup
    readrate_initial_burst recast_media reinit_filter report s sample_fmt sample_fmts
    scodec sdp_file seek_timestamp shortest shortest_buf_duration sinks sn sources spre
    ss sseof stag start_at_zero stats stats_enc_post stats_enc_post_fmt stats_enc_pre
    stats_enc_pre_fmt stats_mux_pre stats_mux_pre_fmt stats_period stdin stream_group
    stream_loop streamid t tag target thread_queue_size time_base timecode timelimit
    timestamp to top v vaapi_device vbsf vcodec version vf vframes vn vol vpre vstats
    vstats_file vstats_version vsync vtag xerror y i o ps dump_separator max_pixels
    protocol_whitelist protocol_blacklist
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# ffmpeg's own options that only set the encoder's option of the same name.
HARMLESS_OWN_OPTIONS = frozenset({"profile", "b"})

# Private encoder options whose value is text: only these may be set (others name files,
# such as libx264's stats and passlogfile or libx265's x265-stats, or load code).
TEXT_OPTIONS = frozenset(
    {"tune", "profile", "level", "wpredp", "psy-rd", "deblock", "partitions", "preset"}
)

_COMMON_264_265 = """
    keyint min-keyint scenecut bframes b-adapt b-pyramid b-bias ref weightb weightp me
    subme merange trellis psy-rd psy aq-mode aq-strength rc-lookahead mbtree crf crf-max qp
    qpmin qpmax qpstep bitrate vbv-maxrate vbv-bufsize vbv-init ipratio pbratio qcomp
    cplxblur qblur deblock open-gop intra-refresh aud repeat-headers annexb slices threads
    lookahead-threads sar overscan videoformat range colorprim transfer colormatrix
    chromaloc fps level level-idc nal-hrd hrd constrained-intra log-level psnr ssim
    """
X264_PARAMS = frozenset(
    (
        _COMMON_264_265
        + """
    sliced-threads sync-lookahead deterministic cpu-independent bluray-compat fullrange
    alternative-transfer frame-packing slice-max-size slice-max-mbs slice-min-mbs
    slices-max cabac cabac-idc interlaced tff bff analyse partitions direct 8x8dct
    fast-pskip dct-decimate deadzone-inter deadzone-intra nr chroma-me mixed-refs mvrange
    mvrange-thread chroma-qp-offset ratetol filler pic-struct fake-interlaced stitchable
    force-cfr avcintra-class avcintra-flavor mbtree b-adapt no-mbtree cqm
    """
    ).split()
)
X265_PARAMS = frozenset(
    (
        _COMMON_264_265
        + """
    lossless cu-lossless frame-threads pools numa-pools wpp pmode pme high-tier
    scenecut-bias hist-scenecut lookahead-slices bframe-bias max-merge temporal-mvp rect amp
    early-skip rskip fast-intra tskip tskip-fast b-intra sao sao-non-deblock selective-sao
    ctu min-cu-size max-tu-size tu-intra-depth tu-inter-depth limit-tu rdoq-level rd
    rd-refine psy-rdoq aq-motion qg-size cutree crf-min cbqpoffs crqpoffs
    strong-intra-smoothing info hash temporal-layers master-display max-cll hdr10
    hdr10-opt min-luma max-luma uhd-bd allow-non-conformance interlace signhide limit-modes
    limit-refs splitrd-skip fades idr-recovery-sei single-sei radl ssim-rd
    """
    ).split()
)
SVTAV1_PARAMS = frozenset(
    """
    preset crf qp rc tbr mbr buf-sz buf-initial-sz buf-optimal-sz keyint irefresh-type
    scd lookahead hierarchical-levels pred-struct enable-overlays tune fast-decode lp
    pin tile-rows tile-columns film-grain film-grain-denoise enable-tf enable-qm qm-min
    qm-max chroma-qm-min chroma-qm-max enable-cdef enable-dlf enable-restoration
    enable-variance-boost variance-boost-strength variance-octile sharpness aq-mode
    enable-hdr color-primaries transfer-characteristics matrix-coefficients color-range
    chroma-sample-position mastering-display content-light scm enable-dg startup-mg-size
    level profile max-qp min-qp tf-strength kf-tf-strength frame-luma-bias
    luminance-qp-bias enable-tpl-la use-fixed-qindex-offsets
    """.split()  # noqa: SIM905 - a word list reads better as text
)
# Allowed keys whose value the library reads as a file name unless it is one of a few
# words: only those words are let through.
PARAM_VALUES: dict[str, frozenset[str]] = {
    "cqm": frozenset({"flat", "jvt"}),  # libx264 opens any other value as a matrix file
}
PARAMS_OPTIONS: dict[str, frozenset[str]] = {
    "x264-params": X264_PARAMS,
    "x264opts": X264_PARAMS,
    "x265-params": X265_PARAMS,
    "svtav1-params": SVTAV1_PARAMS,
}

_PARAM_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def own_option(key: str) -> str | None:
    """The ffmpeg command-line option ``-key`` would be read as, or None."""
    name = key.split(":", 1)[0]
    if name in FFMPEG_OWN_OPTIONS:
        return name
    if name.startswith("no") and name[2:] in FFMPEG_OWN_OPTIONS:  # -nostats, -nostdin
        return name[2:]
    return None


def check_option_name(key: str, own_options: Iterable[str] = ()) -> None:
    """Refuse an ``extra_options`` key that ffmpeg's command line reads as its own option."""
    name = key.split(":", 1)[0]
    hit = own_option(key)
    if hit is None and (name in own_options or name.startswith("no") and name[2:] in own_options):
        hit = name
    if hit is not None and hit not in HARMLESS_OWN_OPTIONS:
        raise UnsafeSettingError(
            f"extra_options key {key!r} is refused: ffmpeg's command line reads -{name} as "
            f"its own option (-{hit}), not as an encoder option, and it could add outputs "
            "or files; set the encoder through EncoderConfig's fields instead"
        )
    if name in ("stats", "passlogfile", "x265-stats", "load_plugins", "qsv_params"):
        raise UnsafeSettingError(
            f"extra_options key {key!r} is refused: it names files or plug-ins to load"
        )


def check_text_option(key: str, type_name: str) -> None:
    """Private options whose value is free text must be on the TEXT_OPTIONS allowlist."""
    if type_name not in ("string", "dictionary", "binary"):
        return
    if key in TEXT_OPTIONS or key in PARAMS_OPTIONS:
        return
    raise UnsafeSettingError(
        f"extra_options key {key!r} is refused: it takes free text ({type_name}) that "
        "ffstream cannot check; allowed text options: "
        + ", ".join(sorted(TEXT_OPTIONS | set(PARAMS_OPTIONS)))
    )


def check_params(option: str, value: str) -> str:
    """Parse a ``k=v:k=v`` list for an encoder library; every key must be allowlisted."""
    allowed = PARAMS_OPTIONS.get(option)
    if allowed is None:
        return value
    bad = sorted({c for c in value if c in "\\'\"\x00\n\r"})
    if bad:
        raise UnsafeSettingError(
            f"extra_options[{option!r}] contains {''.join(bad)!r}: quotes and backslashes "
            "change how the encoder splits the list; write plain key=value:key=value"
        )
    for item in value.split(":"):
        if not item:
            continue
        key = item.split("=", 1)[0].strip()
        name = key
        if name.startswith("no"):  # the libraries read no-KEY / noKEY as KEY=false
            name = name[3:] if name.startswith("no-") else name[2:]
        if not _PARAM_KEY.match(key) or name not in allowed:
            raise UnsafeSettingError(
                f"extra_options[{option!r}]: key {key!r} is not allowed (keys that write or "
                "read files, such as dump-yuv, csv, stats or analysis-save, are refused; "
                f"ffstream._codec.safe_options lists the {len(allowed)} allowed keys)"
            )
        words = PARAM_VALUES.get(name)
        given = item.split("=", 1)[1].strip() if "=" in item else ""
        if words is not None and given not in words:
            raise UnsafeSettingError(
                f"extra_options[{option!r}]: {key}={given!r} is refused: {key} takes "
                f"{' or '.join(sorted(words))}; any other value is opened as a file"
            )
    return value
