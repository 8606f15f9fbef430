"""The csr web app (Gradio): retouch, teach a style, manage styles; all work is done by ``csr_core``.

Start it with ``csr app`` or ``python -m csr_plugins.gradio_app`` (needs the ``app`` extra: pip install 'csr-retouch[app]').
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: no telemetry calls home
