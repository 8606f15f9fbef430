"""``csr app``: the web app (Gradio) on the shared style registry."""
from __future__ import annotations

import signal
from pathlib import Path

import click

from csr_core.errors import require

from .common import EXIT_USAGE, FiniteFloatRange, device_option, fail, handle_errors, WholeNumber

EXAMPLES = """\b
Examples:
  csr app                                  # http://127.0.0.1:7860, this machine only
  csr app --port 8080 --max-mb 50
  csr app --host 0.0.0.0                   # reachable from your network (no login: trusted networks only)
  csr app --host 0.0.0.0 --auth-file logins.txt   # ... with a login (user:password lines)
  csr app --allow-edits                    # also teach and delete styles from the page
"""


@click.command("app", epilog=EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=WholeNumber(0, 65535), default=7860, show_default=True, help="0 = any free port.")
@click.option("--share", is_flag=True, help="Also publish a temporary public gradio.live link (off by default).")
@click.option("--max-mb", type=FiniteFloatRange(min=0.01), help="Largest upload in MB [env CSR_APP_MAX_MB; 100].")
@click.option("--max-pixels", type=WholeNumber(min=1), help="Largest photo in pixels [env CSR_APP_MAX_PIXELS; 50e6].")
@click.option("--concurrency", type=WholeNumber(min=1), help="Retouch requests at once [env CSR_APP_CONCURRENCY; 2].")
@device_option
@click.option("--allow-edits", is_flag=True, help="Let the page teach new styles and delete user styles "
              "(off by default: anyone who can reach the app could change your registry; beyond this machine "
              "it needs a login).")
@click.option("--auth-file", type=click.Path(path_type=Path),
              help="Ask for a login: a file of user:password lines [env CSR_APP_AUTH: the same lines].")
@handle_errors
def command(host, port, share, max_mb, max_pixels, concurrency, device, allow_edits, auth_file):
    """Start the web app: retouch photos (and, with --allow-edits, teach and delete styles)."""
    require("app", "the web app")
    from csr_core.inference import resolve_device
    from csr_plugins.gradio_app import auth
    from csr_plugins.gradio_app.app import build_app, launch
    from csr_plugins.gradio_app.service import Limits

    logins = auth.credentials(auth_file)
    if allow_edits and not logins and (share or not auth.is_loopback(host)):
        fail(f"--allow-edits beyond this machine needs a login: add --auth-file FILE (user:password lines) "
             f"or set {auth.ENV}", EXIT_USAGE)
    port = _free_port(host, port)
    resolve_device(device)
    limits = Limits.from_env(max_mb=max_mb, max_pixels=max_pixels, concurrency=concurrency)
    demo = build_app(limits=limits, device=device, allow_edits=allow_edits)
    try:  # quiet: Gradio's own banner speaks of launch(share=True), not of this command's options
        _, url, share_url = launch(demo, host=host, port=port, share=share, block=False, quiet=True,
                                   auth=logins)
    except OSError as exc:  # port taken, address not ours, ...
        fail(f"cannot serve on {host}:{port}: {str(exc).split('. ')[0]}")
    click.echo(f"csr app: serving on {url.rstrip('/')}{'  (login required)' if logins else ''}  (Ctrl-C stops it)")
    if share_url:
        click.echo(f"csr app: public link {share_url} (temporary; anyone with the link"
                   f"{' and a login' if logins else ''} can use the app)")
    elif share:
        click.echo("csr: warning: could not create the public --share link; serving locally only", err=True)
    elif auth.is_loopback(host):
        click.echo("csr app: this machine only; --host 0.0.0.0 serves your network, --share adds a public link")
    else:
        click.echo(f"csr app: reachable from your network on {host}{'' if logins else ' (no login)'}; "
                   "--share adds a public link")
    for name in ("SIGTERM", "SIGHUP"):  # kill, a service manager, a closed terminal: stop as Ctrl-C does, so
        if hasattr(signal, name):        # the results and previews held in the temporary folder are removed
            signal.signal(getattr(signal, name), signal.default_int_handler)
    demo.block_thread()


def _free_port(host: str, port: int) -> int:
    """The port to serve on (with 0, one the system picks), after checking that ``host`` resolves to an
    address of this machine and the port is free there: otherwise one error at once (the server would
    retry an unusable address for minutes). An IPv6 address may come in brackets, [::1]; an empty one is
    the server's default, 127.0.0.1."""
    import errno
    import socket

    name = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except OSError as exc:
        fail(f"cannot serve on {host}: {exc.strerror or exc}")
    except (UnicodeError, ValueError):  # too long, an empty label, a NUL character: no host name at all
        fail(f"cannot serve on {host}: not a valid host name or address")
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"cannot serve on {host}:{port}: the port is in use (choose another with --port; 0 picks a "
                     "free one)")
            if exc.errno == errno.EADDRNOTAVAIL:
                fail(f"cannot serve on {host}: not an address of this machine (--host 0.0.0.0 serves all of them)")
            fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
        return sock.getsockname()[1]
