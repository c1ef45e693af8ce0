"""What ffmpeg is asked to do: codec options checked once, the one argv builder, the
probe that finds which encoders really work here, and reading videos back."""
