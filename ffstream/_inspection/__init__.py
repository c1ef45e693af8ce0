"""Looking at recordings after the fact: health checks, their verdicts, the HTML report."""
