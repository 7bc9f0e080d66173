"""Batch synthesis: a manifest of short texts spoken with bounded concurrency, resumable.

``manifest`` (parse and check rows, with line numbers), ``results`` (the append-only results
file), ``runner`` (the concurrent run, remote or local), ``cli`` (``voiceforge batch``).
"""
