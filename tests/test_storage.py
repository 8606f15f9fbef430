"""Catalogues in object storage: the URL layer (csr_core.storage) and a real S3 API on 127.0.0.1.

The S3 tests run moto's server (``ThreadedMotoServer``, the ``test`` extra) with IAM authentication on:
csr gets a real access key through the environment only, as it would from AWS. They skip, saying so,
without moto or the ``cluster`` extra (fsspec, s3fs, Dask).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csr_core import storage
from csr_core.errors import CsrError

REPO = Path(__file__).resolve().parents[1]
CSR = Path(sys.executable).parent / "csr"
SUMMARY = re.compile(r"^(\d+) retouched, (\d+) skipped, (\d+) failed$", re.M)
SECRET = "s3cr3tV4lue/DoNotPrint"


# --- the URL layer, no server -------------------------------------------------------------------------

def test_urls_with_credentials_are_refused_and_redacted():
    for url in (f"s3://AKIAEXAMPLE:{SECRET}@bucket/shoot/", f"https://host/b/x.jpg?X-Amz-Signature={SECRET}",
                f"az://container/p?sv=2024&sig={SECRET}"):
        with pytest.raises(CsrError, match="must not hold credentials") as err:
            storage.location(url)
        assert SECRET not in str(err.value) and "***" in str(err.value)
    for pairs in ([f"key=AKIA"], [f"secret={SECRET}"], [f"client_kwargs.aws_session_token={SECRET}"],
                  [f"endpoint_url=http://u:{SECRET}@host:9000"]):
        with pytest.raises(CsrError) as err:
            storage.check_options(storage.options_from_args(pairs))
        assert SECRET not in str(err.value) and "credentials" in str(err.value)


def test_storage_options_nest_and_parse_literals():
    options = storage.options_from_args(["endpoint_url=http://127.0.0.1:9000", "client_kwargs.region_name=eu-west-1",
                                         "anon=false", "default_block_size=1048576"])
    assert options == {"endpoint_url": "http://127.0.0.1:9000", "client_kwargs": {"region_name": "eu-west-1"},
                       "anon": False, "default_block_size": 1048576}
    assert json.loads(storage.check_options(options)) == options
    with pytest.raises(CsrError, match="KEY=VALUE"):
        storage.options_from_args(["endpoint_url"])


def test_url_path_operations_and_local_paths_pass_through():
    pytest.importorskip("fsspec")
    assert storage.location("shoot/") == "shoot/" and storage.location("-") == "-"
    assert storage.location("file:///tmp/x.jpg") == "/tmp/x.jpg"
    url = storage.location("memory://bk/shoot/sub/a.JPG")
    root = storage.location("memory://bk/shoot/")
    assert str(url.relative_to(root)) == "sub/a.JPG" and url.stem == "a" and url.suffix == ".JPG"
    assert str(url.with_suffix(".png")).endswith("/bk/shoot/sub/a.png") and url.parent.name == "sub"
    with pytest.raises(CsrError, match="unknown storage protocol"):
        storage.location("nosuchstore://bk/x.jpg")


def _jpeg(rng, h=20, w=28) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 230, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_memory_store_batch_refuses_unsafe_keys_and_keeps_local_promises(run, tmp_path, rng):
    """In-process on fsspec's memory store: a hostile key ('..') never names a file outside the output
    folder; an output key equal to an input key is refused even with --overwrite."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/bk/in/ok.jpg", _jpeg(rng))
    fs.pipe_file("/bk/in/a/../../escape.jpg", _jpeg(rng))
    try:
        res = run("retouch", "memory://bk/in/", "-o", tmp_path / "out")
        assert res.exit_code == 1 and "skipped, its name has an empty, '.' or '..' part" in res.output
        assert [p.name for p in tmp_path.rglob("*.jpg")] == ["ok.jpg"], res.output
        res = run("retouch", "memory://bk/in/ok.jpg", "-o", "memory://bk/in/ok.jpg", "--overwrite")
        assert res.exit_code == 1 and "refusing to overwrite the input" in res.output
        res = run("retouch", "memory://bk/in/ok.jpg", "-o", "memory://bk/out/ok.jpg")
        assert res.exit_code == 0 and fs.cat_file("/bk/out/ok.jpg") == (tmp_path / "out" / "ok.jpg").read_bytes()
        fs.rm("/bk/in/a/../../escape.jpg")
        for _ in range(2):  # an output prefix inside the input prefix is never searched: no ok_retouched
            res = run("retouch", "memory://bk/in/", "-o", "memory://bk/in/edited/", "--overwrite")
            assert res.exit_code == 0 and fs.find("/bk/in") == ["/bk/in/edited/ok.jpg", "/bk/in/ok.jpg"], res.output
        res = run("retouch", "-", "-o", "memory://bk/piped.png", stdin=(tmp_path / "out" / "ok.jpg").read_bytes())
        assert res.exit_code == 0 and fs.cat_file("/bk/piped.png")[:4] == b"\x89PNG"
        res = run("retouch", "memory://bk/piped.png", "-o", "-")
        assert res.exit_code == 0 and res.stdout_bytes[:4] == b"\x89PNG"
    finally:
        fs.rm("/bk", recursive=True)


def test_memory_store_batch_leaves_out_the_files_csr_wrote_like_a_local_folder(run, tmp_path, rng):
    """A re-run over a prefix holding an earlier run's results retouches the originals only, and the summary
    counts the results left out; a prefix of results only is one line; a result named on its own is retouched."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/bk/shoot/a.jpg", _jpeg(rng))
    try:
        assert run("retouch", "memory://bk/shoot/", "-o", "memory://bk/shoot/edited/").exit_code == 0
        res = run("retouch", "memory://bk/shoot/", "-o", "memory://bk/other/")
        assert res.exit_code == 0 and res.output == "1 retouched, 0 skipped, 0 failed; 1 file csr wrote left out\n"
        assert fs.find("/bk/other") == ["/bk/other/a.jpg"]
        res = run("retouch", "memory://bk/shoot/**/*.jpg", "-o", "memory://bk/third/")
        assert res.exit_code == 0 and res.output.endswith("; 1 file csr wrote left out\n"), res.output
        res = run("retouch", "memory://bk/shoot/edited/", "-o", "memory://bk/again/")
        assert res.exit_code == 1 and res.output == (
            "csr: error: memory:///bk/shoot/edited: folder has only photos csr wrote (1); to retouch them again, "
            "name them one by one\n")
        assert run("retouch", "memory://bk/shoot/edited/a.jpg", "-o", "memory://bk/again/a.jpg").exit_code == 0
    finally:
        fs.rm("/bk", recursive=True)


def test_memory_store_in_place_run_never_replaces_a_photo_csr_did_not_write(run, rng):
    """Beside its photo, an existing NAME_retouched.jpg that csr did not write is one of your photos: kept
    even with --overwrite, as locally; csr's own earlier result there is replaced."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    mine = b"my own edit" + _jpeg(rng)
    try:
        for args in (["memory://keep/shoot/a.jpg"], ["memory://keep/shoot/a.j*"]):
            fs.pipe_file("/keep/shoot/a.jpg", _jpeg(rng))
            fs.pipe_file("/keep/shoot/a_retouched.jpg", mine)
            res = run("retouch", *args, "--overwrite")
            assert res.exit_code == 1 and res.output.startswith(
                "csr: error: memory:///keep/shoot/a.jpg: refusing to replace memory:///keep/shoot/a_retouched.jpg, "
                "a photo csr did not write"), res.output
            assert fs.cat_file("/keep/shoot/a_retouched.jpg") == mine
            fs.rm("/keep/shoot/a_retouched.jpg")
            assert run("retouch", *args).exit_code == 0
            first = fs.cat_file("/keep/shoot/a_retouched.jpg")
            again = run("retouch", *args, "--overwrite", "--strength", "0.5")
            assert again.exit_code == 0 and fs.cat_file("/keep/shoot/a_retouched.jpg") != first, again.output
    finally:
        fs.rm("/keep", recursive=True)


def test_memory_store_outputs_in_two_top_folders_never_list_the_whole_bucket(run, rng, monkeypatch):
    """An in-place run over two top folders checks its outputs by listing each folder, not the bucket that
    holds them (on a catalogue of millions of keys that is minutes and gigabytes); the bucket's root is
    listed one level deep."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for key in ("2023/a.jpg", "2024/b.jpg", "c.jpg", "archive/old.jpg"):
        fs.pipe_file(f"/lst/{key}", _jpeg(rng))
    listed, find = [], type(fs).find

    def watched(self, path, maxdepth=None, **kw):
        listed.append((path, maxdepth))
        return find(self, path, maxdepth=maxdepth, **kw)

    monkeypatch.setattr(type(fs), "find", watched)
    try:
        res = run("retouch", "memory://lst/2023/a.jpg", "memory://lst/2024/b.jpg", "memory://lst/c.jpg")
        assert res.exit_code == 0, res.output
        assert sorted(listed) == [("/lst/2023/a_retouched.jpg", None), ("/lst/2024/b_retouched.jpg", None),
                                  ("/lst/c_retouched.jpg", 1)], listed
        assert fs.exists("/lst/2024/b_retouched.jpg") and fs.exists("/lst/c_retouched.jpg")
        listed.clear()
        res = run("retouch", "memory://lst/2023/", "memory://lst/2024/", "--overwrite")
        assert res.exit_code == 0 and listed and all(path.startswith(("/lst/2023", "/lst/2024"))
                                                     for path, _ in listed), (res.output, listed)
    finally:
        fs.rm("/lst", recursive=True)


def test_memory_store_records_are_read_several_at_once(run, rng, monkeypatch):
    """Telling csr's results from photos costs a request or two per object: the objects are read several at
    once, not one after another (thousands of round trips before the first photo)."""
    import threading

    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for key in ("a.jpg", "b.jpg"):
        fs.pipe_file(f"/par/in/{key}", _jpeg(rng))
    barrier, met, read = threading.Barrier(2, timeout=20), [], storage.Url.made_by_csr

    def meeting(self):  # returns at once only if the other object's record is being read meanwhile
        try:
            barrier.wait()
            met.append(self.name)
        except threading.BrokenBarrierError:
            pass
        return read(self)

    monkeypatch.setattr(storage.Url, "made_by_csr", meeting)
    try:
        res = run("retouch", "memory://par/in/", "-o", "memory://par/out/")
        assert res.exit_code == 0 and sorted(met) == ["a.jpg", "b.jpg"], (res.output, met)
    finally:
        fs.rm("/par", recursive=True)


def test_memory_store_batch_skips_hidden_sub_folders_like_a_local_folder(run, rng):
    """A trash or thumbnail cache under a prefix is not searched, by a folder or a pattern; named, it is."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for key in ("a.jpg", "sub/b.jpg", ".Trash/sub/c.jpg", ".thumbs/d.jpg", "sub/.cache/e.jpg"):
        fs.pipe_file(f"/hid/shoot/{key}", _jpeg(rng))
    try:
        for args, out in ((["memory://hid/shoot/"], ["a.jpg", "sub/b.jpg"]),
                          (["memory://hid/shoot/**/*.jpg"], ["a.jpg", "b.jpg"]),
                          (["memory://hid/shoot/*/*.jpg"], ["b.jpg"]),
                          (["memory://hid/shoot/.thumbs/"], ["d.jpg"])):
            res = run("retouch", *args, "-o", "memory://hid/out/")
            assert res.exit_code == 0, res.output
            assert [p.removeprefix("/hid/out/") for p in fs.find("/hid/out")] == out, args
            fs.rm("/hid/out", recursive=True)
    finally:
        fs.rm("/hid", recursive=True)


IMPORTS = r'''
import sys
import csr_cli.main
try:
    csr_cli.main.cli.main(args=["retouch", sys.argv[1], "-o", sys.argv[2]], prog_name="csr")
except SystemExit as exc:
    assert exc.code == 0, exc.code
print(sorted(m for m in sys.modules if m.split(".")[0] in ("fsspec", "s3fs", "botocore", "aiobotocore")))
'''


def test_plain_local_path_never_imports_the_storage_libraries(tmp_path, rng):
    (tmp_path / "in.jpg").write_bytes(_jpeg(rng))
    res = subprocess.run([sys.executable, "-c", IMPORTS, tmp_path / "in.jpg", tmp_path / "out.jpg"],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr


def test_url_with_secret_is_a_usage_error_that_never_prints_it(run, tmp_path):
    res = run("retouch", f"s3://AKIA:{SECRET}@bucket/shoot/", "-o", tmp_path / "out")
    assert res.exit_code == 2 and SECRET not in res.output and res.output.count("\n") == 1, res.output
    res = run("retouch", tmp_path, "-o", tmp_path / "out", "--storage-option", f"secret={SECRET}")
    assert res.exit_code == 2 and SECRET not in res.output and "no credentials as arguments" in res.output


# --- a real S3 API on 127.0.0.1 -----------------------------------------------------------------------

try:
    import boto3
    import distributed  # noqa: F401
    import s3fs  # noqa: F401
    from moto.server import ThreadedMotoServer
except ImportError:
    ThreadedMotoServer = None
needs_s3 = pytest.mark.skipif(ThreadedMotoServer is None, reason="moto[server] (the test extra) or the cluster "
                              "extra (fsspec, s3fs, Dask) is not installed")


class S3:
    """moto's S3 server on 127.0.0.1 with IAM authentication on, one user allowed everything."""

    def __init__(self):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        admin = dict(endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                     aws_secret_access_key="bootstrap")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="csr")
        iam.put_user_policy(UserName="csr", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="csr")["AccessKey"]
        self.key, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self._auth("0")  # from now on every request must be signed by a known key
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def _auth(self, count: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=count.encode(),
                                                      method="POST", headers={"Content-Type": "text/plain"}))

    def env(self, tmp: Path, **extra) -> dict:
        """The environment of a csr process: credentials here and nowhere else (no config files)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_", "DASK_"))}
        return dict(env, AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                    AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                    AWS_CONFIG_FILE=str(tmp / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"),
                    FSSPEC_CONFIG_DIR=str(tmp / "fsspec-config"), **extra)

    def keys(self, bucket: str, prefix: str) -> dict[str, bytes]:
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: self.client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}

    def close(self):
        self._auth("inf")
        self.server.stop()


@pytest.fixture(scope="module")
def s3():
    if ThreadedMotoServer is None:
        pytest.skip("moto[server] or the cluster extra is not installed")
    server = S3()
    yield server
    server.close()


def _catalogue(s3: S3, bucket: str, local: Path) -> None:
    """Nested photos (JPEG, a 16-bit PNG with text metadata, a sub-sub-folder) in ``bucket/shoot/`` and the
    same bytes in the folder ``local``; a text file and a corrupt JPEG are there too."""
    from PIL import PngImagePlugin

    rng = np.random.default_rng(7)
    s3.client.create_bucket(Bucket=bucket)
    photos = {"a.jpg": _jpeg(rng), "sub/b.jpg": _jpeg(rng, 30, 18), "sub/deep/c.jpg": _jpeg(rng, 16, 16)}
    png16 = local / "scratch.png"
    local.mkdir(parents=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "kept")
    Image.fromarray(rng.integers(0, 60000, (18, 22), dtype=np.uint16)).save(png16, pnginfo=info)
    photos["sub/d16.png"] = png16.read_bytes()
    png16.unlink()
    photos["notes.txt"] = b"not a photo"
    photos["broken.jpg"] = b"\xff\xd8\xff\xe0 not a photo"
    for key, data in photos.items():
        s3.client.put_object(Bucket=bucket, Key=f"shoot/{key}", Body=data)
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(data)


def _csr(env, *args, timeout=240):
    return subprocess.run([str(CSR), "retouch", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


@needs_s3
def test_s3_batch_equals_the_plain_cli_and_keeps_every_promise(s3, tmp_path):
    _catalogue(s3, "cat", tmp_path / "copy")
    env = s3.env(tmp_path)
    opt = ["--storage-option", f"endpoint_url={s3.endpoint}"]
    local = _csr(env, tmp_path / "copy", "-o", tmp_path / "plain")
    assert local.returncode == 1 and SUMMARY.findall(local.stderr) == [("4", "0", "1")], local.stderr
    expected = {f"edited/{p.relative_to(tmp_path / 'plain').as_posix()}": p.read_bytes()
                for p in (tmp_path / "plain").rglob("*") if p.is_file()}
    assert len(expected) == 4 and "edited/sub/d16.png" in expected

    res = _csr(env, "s3://cat/shoot/", "-o", "s3://cat/edited/", *opt)
    assert res.returncode == 1 and SUMMARY.findall(res.stderr) == [("4", "0", "1")], res.stderr
    assert "csr: error: s3://cat/shoot/broken.jpg: " in res.stderr and "Traceback" not in res.stderr
    assert s3.keys("cat", "edited/") == expected  # same names, same bytes (metadata, 16 bits included)
    import io

    png = s3.keys("cat", "edited/sub/d16.png")["edited/sub/d16.png"]
    with Image.open(io.BytesIO(png)) as im:
        assert png[24] == 16 and im.text.get("Description") == "kept"  # IHDR bit depth: 16 bits a sample

    again = _csr(env, "s3://cat/shoot/", "-o", "s3://cat/edited/", *opt)  # existing outputs are kept
    assert again.returncode == 1 and SUMMARY.findall(again.stderr) == [("0", "0", "5")], again.stderr
    assert again.stderr.count("already exists (use --overwrite or --skip-existing)") == 4
    s3.client.delete_object(Bucket="cat", Key="edited/sub/b.jpg")  # resume after a partial run
    # the endpoint from fsspec's configuration (here its environment variable) instead of --storage-option
    resumed = _csr(dict(env, FSSPEC_S3_ENDPOINT_URL=s3.endpoint), "s3://cat/shoot/", "-o", "s3://cat/edited/",
                   "--skip-existing")
    assert SUMMARY.findall(resumed.stderr) == [("1", "3", "1")], resumed.stderr
    assert s3.keys("cat", "edited/") == expected
    same = _csr(env, "s3://cat/shoot/a.jpg", "-o", "s3://cat/shoot/a.jpg", "--overwrite", *opt)
    assert same.returncode == 1 and "refusing to overwrite the input" in same.stderr
    assert s3.keys("cat", "shoot/a.jpg")["shoot/a.jpg"] == (tmp_path / "copy" / "a.jpg").read_bytes()

    # local in, s3 out; s3 in (a glob), local out
    up = _csr(env, tmp_path / "copy" / "sub", "-o", "s3://cat/up/", *opt)
    assert up.returncode == 0 and s3.keys("cat", "up/") == {
        k.replace("edited/sub/", "up/"): v for k, v in expected.items() if k.startswith("edited/sub/")}
    down = _csr(env, "s3://cat/shoot/**/*.jpg", "-o", tmp_path / "down", *opt)
    assert SUMMARY.findall(down.stderr) == [("3", "0", "1")], down.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "down").iterdir()} == {
        k.rsplit("/", 1)[1]: v for k, v in expected.items() if k.endswith(".jpg")}


@needs_s3
def test_missing_bucket_and_wrong_credentials_are_one_line_exit_1(s3, tmp_path):
    s3.client.create_bucket(Bucket="there")
    s3.client.put_object(Bucket="there", Key="in/a.jpg", Body=_jpeg(np.random.default_rng(1)))
    opt = ["--storage-option", f"endpoint_url={s3.endpoint}"]
    env = s3.env(tmp_path)
    wrong = dict(env, AWS_SECRET_ACCESS_KEY=SECRET)
    for run_env, args, message in (
            (env, ["s3://nobucket/in/", "-o", tmp_path / "o"], "s3://nobucket: no such bucket"),
            (env, ["s3://there/in/", "-o", "s3://nobucket/out/"], "s3://nobucket: no such bucket"),
            (wrong, ["s3://there/in/", "-o", tmp_path / "o"], "s3://there/in: cannot list, access denied"),
            (wrong, [REPO / "samples", "-o", "s3://there/out/"], "s3://there: cannot list, access denied")):
        res = _csr(run_env, *args, *opt)
        assert res.returncode == 1 and res.stderr.startswith(f"csr: error: {message}"), res.stderr
        assert res.stderr.count("\n") == 1 and SECRET not in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists() and list(s3.keys("there", "")) == ["in/a.jpg"]


@needs_s3
def test_s3_batch_reads_only_the_record_of_a_large_result_it_leaves_out(s3, run, tmp_path, monkeypatch):
    """An earlier result in the prefix is left out from its header and XMP record, a few small ranged reads,
    not a download of the whole object (s3fs reads 50 MB blocks by default)."""
    from csr_core.pipeline import retouch_file
    from csr_core.registry import Registry

    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(tmp_path / "big.jpg", quality=98)
    s3.client.create_bucket(Bucket="reread")
    s3.client.put_object(Bucket="reread", Key="shoot/a.jpg", Body=_jpeg(rng))
    results = {"shoot/edited/big.jpg": tmp_path / "big_out.jpg", "shoot/edited/big.tif": tmp_path / "big_out.tif"}
    for key, path in results.items():  # the built-in style, not the run fixture's toy one: noise stays noise
        retouch_file(tmp_path / "big.jpg", path, style=Registry().look("auto"))
        assert path.stat().st_size > 2_000_000
        s3.client.put_object(Bucket="reread", Key=key, Body=path.read_bytes())
    for key, value in s3.env(tmp_path).items():
        monkeypatch.setenv(key, value)
    fetched: dict[str, int] = {}
    fetch = s3fs.core.S3File._fetch_range

    def counted(self, start, end):
        data = fetch(self, start, end)
        fetched[self.key] = fetched.get(self.key, 0) + len(data)
        return data

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counted)
    res = run("retouch", "s3://reread/shoot/", "-o", "s3://reread/out/", "--storage-option",
              f"endpoint_url={s3.endpoint}")
    assert res.exit_code == 0 and res.output == "1 retouched, 0 skipped, 0 failed; 2 files csr wrote left out\n"
    assert list(s3.keys("reread", "out/")) == ["out/a.jpg"]
    assert all(0 < fetched[key] <= 256 * 1024 for key in results), fetched


SLOW_UPLOADS = r'''
"""Worker preload (this test only): each upload stays inside s3fs a while, marked with the worker pid."""
import asyncio, os
from pathlib import Path
import s3fs

_pipe_file = getattr(s3fs.S3FileSystem, "_fast_pipe_file", s3fs.S3FileSystem._pipe_file)  # imported twice
s3fs.S3FileSystem._fast_pipe_file = _pipe_file


async def slow_pipe_file(self, path, data, **kwargs):
    (Path(os.environ["CSR_TEST_MARKS"]) / str(os.getpid())).write_text(path)
    await asyncio.sleep(float(os.environ["CSR_TEST_PAUSE"]))
    return await _pipe_file(self, path, data, **kwargs)


s3fs.S3FileSystem._pipe_file = slow_pipe_file
'''


@needs_s3
def test_worker_killed_mid_upload_on_local_cluster_leaves_no_partial_object(s3, tmp_path):
    _catalogue(s3, "kill", tmp_path / "copy")
    from csr_core.pipeline import default_registry, retouch_file  # the plain CLI's bytes, as it calls it

    expected, look = {}, default_registry().look("auto")
    for key in ("a.jpg", "sub/b.jpg", "sub/deep/c.jpg", "sub/d16.png"):
        retouch_file(tmp_path / "copy" / key, tmp_path / "plain" / key, style=look)
        expected[f"out/{key}"] = (tmp_path / "plain" / key).read_bytes()
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "slow_uploads.py").write_text(SLOW_UPLOADS)
    env = s3.env(tmp_path, CSR_TEST_MARKS=str(marks), CSR_TEST_PAUSE="1.0",
                 DASK_DISTRIBUTED__WORKER__PRELOAD=json.dumps([str(tmp_path / "slow_uploads.py")]))
    job = subprocess.Popen([str(CSR), "retouch", "s3://kill/shoot/", "-o", "s3://kill/out/", "--cluster", "local[2]",
                            "--storage-option", f"endpoint_url={s3.endpoint}"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 180
        while not list(marks.iterdir()):  # a worker is inside an upload
            assert job.poll() is None and time.monotonic() < deadline, job.stderr and job.stderr.read()
            time.sleep(0.02)
        victim = next(marks.iterdir())
        os.kill(int(victim.name), signal.SIGKILL)
        _, stderr = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1 and SUMMARY.findall(stderr) == [("4", "0", "1")], stderr
    assert stderr.count("csr: error:") == 1 and "s3://kill/shoot/broken.jpg" in stderr and "Traceback" not in stderr
    assert s3.keys("kill", "out/") == expected  # the killed upload redone elsewhere; nothing partial or extra
    assert not s3.client.list_multipart_uploads(Bucket="kill").get("Uploads")
    resumed = _csr(s3.env(tmp_path), "s3://kill/shoot/", "-o", "s3://kill/out/", "--skip-existing",
                   "--storage-option", f"endpoint_url={s3.endpoint}")
    assert resumed.returncode == 1 and SUMMARY.findall(resumed.stderr) == [("0", "4", "1")], resumed.stderr
