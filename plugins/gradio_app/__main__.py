"""``python -m csr_plugins.gradio_app``: same as ``csr app``."""
from csr_cli.app import command

command(prog_name="python -m csr_plugins.gradio_app")
