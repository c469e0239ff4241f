"""The toolbox's file API: paths resolved inside the sandbox's root the way its kernel would (the
read-only system mounts refused), bulk upload and download, list, info, delete, mkdir, move."""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import stat
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from .common import REC, USER, _absolute, _HttpError
from .sandbox import FakeSandbox


class FileToolbox:
    """FakeDaytona's ``/toolbox/{id}/files/...`` handlers and the inside-path file helpers."""

    def _read_inside(self, sb: FakeSandbox, inside: str) -> bytes | None:
        try:
            fd = os.open(self._jail(sb).resolve(inside), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (OSError, _HttpError):
            return None
        with os.fdopen(fd, "rb") as fh:
            return fh.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None

    # -- toolbox: files -----------------------------------------------------------------------

    def _mkdir_inside(self, sb: FakeSandbox, inside: str) -> None:
        self._jail(sb).resolve(inside).mkdir(parents=True, exist_ok=True)

    def _write_inside(self, sb: FakeSandbox, inside: str, data: bytes) -> None:
        path = self._jail(sb).resolve(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def _append_inside(self, sb: FakeSandbox, inside: str, data: bytes) -> None:
        fd = os.open(self._jail(sb).resolve(inside), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        with os.fdopen(fd, "ab") as fh:
            fh.write(data)

    def _file_info(self, path: Path, inside: str) -> dict:
        st = os.lstat(path)
        mtime = time.gmtime(st.st_mtime)
        return {"name": posixpath.basename(inside) or "/", "path": inside, "size": st.st_size,
                "isDir": stat.S_ISDIR(st.st_mode), "mode": stat.filemode(st.st_mode),
                "permissions": f"0{stat.S_IMODE(st.st_mode):o}", "owner": USER, "group": USER,
                "modTime": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", mtime),
                "modifiedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", mtime)}

    def _existing(self, sb: FakeSandbox, inside: str, *, follow_last: bool = True) -> Path:
        path = self._jail(sb).resolve(inside, follow_last=follow_last)
        if not os.path.lexists(path):
            raise _HttpError(404, f"file not found: {inside}", "FILE_NOT_FOUND")
        return path

    async def _files_list(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        inside = posixpath.normpath(_absolute(request.query.get("path")))
        path = self._existing(sb, inside)
        if not path.is_dir():
            raise _HttpError(400, f"{inside}: not a directory", "INVALID_FILE_PATH")
        names = sorted(os.listdir(path))
        return web.json_response([self._file_info(path / n, posixpath.join(inside, n)) for n in names])

    async def _files_info(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        inside = posixpath.normpath(_absolute(request.query.get("path")))
        return web.json_response(self._file_info(self._existing(sb, inside), inside))

    async def _files_delete(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        inside = _absolute(request.query.get("path"))
        path = self._existing(sb, inside, follow_last=False)
        if path.is_dir() and not path.is_symlink():
            if request.query.get("recursive") != "true":
                raise _HttpError(400, f"{inside}: is a directory (use recursive)", "BAD_REQUEST")
            shutil.rmtree(path)
        else:
            path.unlink()
        return web.Response(status=204)

    async def _files_folder(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        path = self._jail(sb).resolve(_absolute(request.query.get("path")))
        mode = int(request.query.get("mode") or "755", 8)
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        return web.Response(status=201)

    async def _files_move(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        src = self._existing(sb, _absolute(request.query.get("source")), follow_last=False)
        dest = self._jail(sb).resolve(_absolute(request.query.get("destination")), follow_last=False)
        os.rename(src, dest)
        return web.Response(status=200)

    async def _bulk_upload(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        reader = await request.multipart()
        paths: dict[str, str] = {}
        written = 0
        async for part in reader:
            name = part.name or ""
            if name.endswith(".path"):
                paths[name[: -len(".path")]] = (await part.read()).decode()
            elif name.endswith(".file"):
                key = name[: -len(".file")]
                dest = paths.get(key) or part.filename
                if not dest:
                    raise _HttpError(400, f"{key}: no destination path", "INVALID_FILE_PATH")
                self._write_inside(sb, _absolute(dest), bytes(await part.read()))
                written += 1
        if not written:
            raise _HttpError(400, "no files in request", "BAD_REQUEST")
        return web.Response(status=200)

    async def _bulk_download(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        writer = aiohttp.MultipartWriter("form-data")
        for src in body.get("paths") or []:
            try:
                path = self._existing(sb, _absolute(src))
                if not path.is_file():
                    raise _HttpError(400, f"{src}: is not a regular file", "INVALID_FILE_PATH")
                writer.append(path.read_bytes(), {"Content-Type": "application/octet-stream",
                                                  "Content-Disposition": _disposition("file", src)})
            except _HttpError as exc:
                err = {"message": exc.message, "statusCode": exc.status, "code": exc.code}
                writer.append(json.dumps(err), {"Content-Type": "application/json",
                                                "Content-Disposition": _disposition("error", src)})
        return web.Response(body=writer, status=200)


def _disposition(name: str, filename: str) -> str:
    # Written by hand: aiohttp's set_content_disposition percent-encodes the filename, while the
    # daemon sends it as a plain quoted string and the SDK matches it against the requested path.
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return f'form-data; name="{name}"; filename="{escaped}"'
