"""``python -m plugins.gradio_app``: same as ``csr app``."""
from cli.app import command

command(prog_name="python -m plugins.gradio_app")
