"""Hand-over protocol between the GIMP plug-in (GIMP's Python: stdlib + numpy) and the csr worker.

The plug-in starts ``PYTHON -m csr_plugins.gimp.worker`` with the project's own interpreter (recorded by
``csr gimp install``) and keeps it for the whole plug-in run, so the engine is imported once, while GIMP reads
the pixels. Each request is one JSON line on the worker's stdin followed by ``nbytes`` raw bytes; each
reply is one JSON line on its stdout (``{"ok": true, "nbytes": N, ...}`` then N bytes, or
``{"ok": false, "error": "<one line>"}``). Pixels are C-order H x W x C (C = 3 or 4), sRGB-encoded
(babl "R'G'B'(A) ..."), ``dtype`` u8 / u16 (only for layers stored that way with a non-linear TRC) or
f32 (everything else: float, half, linear precisions), so nothing is squeezed through 8 bits. Ops:

- ``styles``: reply ``styles`` (names) and ``default``.
- ``retouch`` (width, height, channels, style: a name or a mix such as 'C:0.7,auto:0.3', mix_with and
  mix_amount: a second style and how much of it (0-1) csr mixes in, strength, region [x, y, w, h], exact):
  the whole layer in; the region out, retouched with the condition vector of the whole layer, alpha passed
  through. The reply's ``style`` is the style spec used ('C:0.7,auto:0.3').
- ``teach`` (width, height, channels, name, finished: a folder of finished photos in the same look, "" for
  none): before + after layers in; reply ``style`` (and ``finished``, the photos used).

A ``retouch`` or ``teach`` request with ``check: true`` carries no pixels: the reply says whether that
request would be refused before its pixels are read (a layer over csr's size limit, an unknown style), so the
plug-in reads no layer it could not send. A request over the size limit that does carry pixels ends the session
unread.

A worker that dies leaves its last ``csr: error:`` stderr line as the message. This file is copied
beside the plug-in by ``csr gimp install``: keep it free of project imports.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

#: The protocol this plug-in speaks; a worker also serves plug-ins of OLDEST_PROTOCOL on (1: no check requests;
#: 2: no mix_with / mix_amount, the plug-in sent the mix in ``style``).
PROTOCOL, OLDEST_PROTOCOL = 3, 1
PLUGIN_NAME = "csr_retouch"
CONFIG_NAME = PLUGIN_NAME + ".json"
ENV_PYTHON = "CSR_GIMP_PYTHON"  # overrides the config's interpreter
ERROR_PREFIX = "csr: error: "
MAX_HEADER = 1 << 16
#: Variables of GIMP's own Python that must not leak into the project's interpreter.
STRIPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "GI_TYPELIB_PATH",
                "LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")
OPS = ("styles", "retouch", "teach")


class BridgeError(Exception):
    """A one-line, user-facing failure (GIMP shows it as the procedure's error)."""


#: Sample types on the wire: name -> (bytes per sample, babl component type).
DTYPES = {"u8": (1, "u8"), "u16": (2, "u16"), "f32": (4, "float")}


def nbytes(width: int, height: int, channels: int, dtype: str = "f32", layers: int = 1) -> int:
    return int(width) * int(height) * int(channels) * DTYPES[dtype][0] * layers


def payload_size(req: dict) -> int:
    """Bytes that follow a (checked) request header."""
    if req["op"] == "styles" or req["check"]:
        return 0
    return nbytes(req["width"], req["height"], req["channels"], req["dtype"], 2 if req["op"] == "teach" else 1)


def babl_format(channels: int, dtype: str) -> str:
    """The babl format of the wire pixels: non-linear sRGB (R'G'B'), as csr works."""
    return f"R'G'B'{'A' if channels == 4 else ''} {DTYPES[dtype][1]}"


# -- framing -----------------------------------------------------------------------------------
def write_message(stream, header: dict, payload=b"") -> None:
    """The header line, then ``payload``: bytes, or a list of them sent one after another (two layers are
    never joined into a third copy)."""
    stream.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
    for part in payload if isinstance(payload, list) else [payload]:
        if len(part):
            stream.write(part)
    stream.flush()


def read_header(stream) -> dict | None:
    """One JSON header line (None at a clean EOF); BridgeError when it is not a JSON object."""
    line = stream.readline(MAX_HEADER)
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError:
        raise BridgeError(f"malformed message {line[:60]!r} (not JSON)") from None
    if not isinstance(data, dict):
        raise BridgeError(f"malformed message {line[:60]!r} (not an object)")
    return data


def read_exact(stream, n: int) -> bytearray:
    """Exactly ``n`` bytes (BridgeError when the stream ends early)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise BridgeError(f"the pixel data ended after {got} of {n} bytes")
        got += k
    return buf


def request(op: str, **args) -> dict:
    return dict(args, op=op, protocol=PROTOCOL)


def check_request(req: dict) -> dict:
    """Validate a request header (worker side); raises BridgeError with one line."""
    if req.get("op") not in OPS:
        raise BridgeError(f"unknown request {req.get('op')!r} from the GIMP plug-in")
    if req.get("protocol") not in range(OLDEST_PROTOCOL, PROTOCOL + 1):
        raise BridgeError(f"the GIMP plug-in speaks protocol {req.get('protocol')}, this csr speaks "
                          f"{PROTOCOL}: run 'csr gimp install' again")
    req["check"] = bool(req.get("check", False))
    if req["op"] == "styles":
        return req
    for key in ("width", "height", "channels"):
        if type(req.get(key)) is not int or req[key] <= 0:
            raise BridgeError(f"bad request: {key} must be a positive integer")
    if req["channels"] not in (3, 4):
        raise BridgeError(f"bad request: channels must be 3 or 4, got {req['channels']}")
    if req.setdefault("dtype", "f32") not in DTYPES:
        raise BridgeError(f"bad request: dtype must be one of {', '.join(DTYPES)}, got {req['dtype']!r}")
    if req["op"] == "retouch":
        req["region"] = check_region(req.get("region") or [0, 0, req["width"], req["height"]],
                                     req["width"], req["height"])
        try:
            req["strength"] = float(req.get("strength", 1.0))
        except (TypeError, ValueError):
            raise BridgeError(f"bad request: strength {req.get('strength')!r} is not a number") from None
        if not isinstance(req.setdefault("style", "auto"), str):
            raise BridgeError("bad request: style must be a string")
        if not isinstance(req.setdefault("mix_with", ""), str):
            raise BridgeError("bad request: mix_with must be a style name (text)")
        amount = req.setdefault("mix_amount", 0.0)
        if type(amount) not in (int, float) or not 0 <= amount <= 1:
            raise BridgeError(f"bad request: mix_amount must be a number from 0 to 1, got {amount!r}")
        req["exact"] = bool(req.get("exact", False))
    if req["op"] == "teach" and not isinstance(req.setdefault("finished", ""), str):
        raise BridgeError("bad request: finished must be a folder path (text)")
    return req


def check_region(region, width: int, height: int) -> list[int]:
    """[x, y, w, h] non-empty and inside a width x height layer, else BridgeError."""
    try:
        x, y, w, h = (int(v) for v in region)
    except (TypeError, ValueError):
        raise BridgeError(f"bad request: region {region!r} is not [x, y, w, h]") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise BridgeError(f"bad request: region {[x, y, w, h]} is outside the {width}x{height} layer")
    return [x, y, w, h]


# -- plug-in side ------------------------------------------------------------------------------
def load_config(plugin_dir: str) -> dict:
    """The installer's JSON config beside the plug-in ({} when absent or unreadable)."""
    try:
        with open(os.path.join(plugin_dir, CONFIG_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def record_styles(plugin_dir: str, names: list[str]) -> bool:
    """Keep the style list in the config (the fallback when the worker cannot list); True if it changed."""
    cfg = load_config(plugin_dir)
    if cfg.get("styles") == list(names):
        return False
    path = os.path.join(plugin_dir, CONFIG_NAME)
    fd, tmp = tempfile.mkstemp(prefix=".csr-", dir=plugin_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dict(cfg, styles=list(names)), fh, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def install_command(profile: str) -> str:
    """The command that installs the plug-in into the GIMP profile folder ``profile``."""
    return f'csr gimp install --profile "{profile}"'


def worker_command(plugin_dir: str, environ=None) -> tuple[list[str], dict]:
    """(argv, environment) that start the worker; BridgeError when csr is not set up (its advice names this
    GIMP's profile: installing into another one would not help)."""
    environ = os.environ if environ is None else environ
    cfg = load_config(plugin_dir)
    python = environ.get(ENV_PYTHON) or cfg.get("python")
    install = install_command(os.path.dirname(os.path.dirname(os.path.abspath(plugin_dir))))
    if not python:
        raise BridgeError(f"csr is not set up for GIMP ({CONFIG_NAME} missing in {plugin_dir}): "
                          f"run '{install}' from the environment that has csr")
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise BridgeError(f"the Python recorded for csr ({python}) is missing: run '{install}' again")
    env = {k: v for k, v in environ.items() if k not in STRIPPED_ENV}
    if cfg.get("pythonpath"):
        env["PYTHONPATH"] = cfg["pythonpath"]
    if cfg.get("device"):
        env.setdefault("CSR_GIMP_DEVICE", cfg["device"])
    return [python, "-m", "csr_plugins.gimp.worker"], env


def error_line(stderr: bytes, returncode: int | None) -> str:
    """The worker's last ``csr: error:`` stderr line, or a fallback naming how it ended."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):].strip()
    if returncode is not None and returncode < 0:
        return f"the csr worker was killed by signal {-returncode} (out of memory?)"
    tail = lines[-1].strip()[:300] if lines else "no message"
    return f"the csr worker stopped (exit {returncode}): {tail}"


class Worker:
    """One worker process serving requests over pipes; use as a context manager."""

    def __init__(self, plugin_dir: str, environ=None):
        cmd, env = worker_command(plugin_dir, environ)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr, env=env,
                                         cwd=plugin_dir if os.path.isdir(plugin_dir) else None)
        except OSError as exc:
            self._stderr.close()
            raise BridgeError(f"cannot start the csr worker {cmd[0]}: {exc.strerror or exc}") from None

    def _died(self) -> BridgeError:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._stderr.seek(0)
        return BridgeError(error_line(self._stderr.read(), code))

    def ask(self, op: str, payload=b"", **args) -> tuple[dict, bytes]:
        """Send one request; returns (reply header, reply bytes) or raises BridgeError."""
        try:
            write_message(self.proc.stdin, request(op, **args), payload)
            reply = read_header(self.proc.stdout)
            if reply is None:
                raise self._died()
            data = bytes(read_exact(self.proc.stdout, int(reply.get("nbytes", 0)))) if reply.get("ok") else b""
        except (BrokenPipeError, ConnectionError):
            raise self._died() from None
        if not reply.get("ok"):
            raise BridgeError(str(reply.get("error") or "the csr worker failed without a message"))
        return reply, data

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def list_styles(worker_or_dir, fallback=("auto",)) -> tuple[list[str], str, str | None]:
    """(names, default, None) from the worker, or (fallback, fallback[0], why it could not list)."""
    try:
        if isinstance(worker_or_dir, Worker):
            reply, _ = worker_or_dir.ask("styles")
        else:
            with Worker(worker_or_dir) as worker:
                reply, _ = worker.ask("styles")
        names = [n for n in reply.get("styles", []) if isinstance(n, str)]
        if names:
            default = reply.get("default") if reply.get("default") in names else names[0]
            return names, default, None
        return list(fallback), fallback[0], "no csr styles are installed"
    except BridgeError as exc:
        return list(fallback), fallback[0], str(exc)


if __name__ == "__main__":  # self-check: python bridge.py [PLUGIN_DIR]
    print(list_styles(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))))
