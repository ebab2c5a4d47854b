"""Reading multipart uploads as a stream, with limits enforced while reading.

FastAPI's ``UploadFile`` parses the whole body first and spools large parts to disk;
here the body is parsed chunk by chunk as it arrives, in memory only, and a request
stops being read the moment it passes the size limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from shared.errors import InvalidInput, MalformedRequest, PayloadTooLarge, TooManyFiles

FIELD_NAME = "file"
MALFORMED_DETAIL = "The multipart body is malformed."
# Room per file for the multipart headers and any small fields beside the files.
FORM_ALLOWANCE_BYTES = 64 * 1024


def file_too_large(max_file_bytes: int) -> str:
    """The 413 detail for one file over ``MAX_UPLOAD_BYTES``."""
    return (
        f"The file is too large: an image may have at most {max_file_bytes:,} bytes "
        f"({max_file_bytes / 2**20:.1f} MiB)."
    )


def request_too_large(max_file_bytes: int, max_files: int) -> str:
    """The 413 detail for a request body over what ``max_files`` files can need."""
    max_body = max_files * (max_file_bytes + FORM_ALLOWANCE_BYTES)
    files = "one image" if max_files == 1 else f"{max_files} images"
    return (
        f"The request is too large: it may have at most {max_body:,} bytes in all "
        f"({files} of at most {max_file_bytes:,} bytes each, plus 64 KiB of form data per "
        "image)."
    )


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class _Collector:
    """Callbacks for the streaming parser: keeps ``file`` parts, drops the rest."""

    def __init__(self, max_file_bytes: int, max_files: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.uploads: list[Upload] = []
        self._part = _Part()
        self._header_field = b""
        self._header_value = b""
        self._keep = False

    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._part.headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get(b"content-disposition"))
        self._keep = options.get(b"name") == FIELD_NAME.encode()
        if self._keep and len(self.uploads) >= self.max_files:
            raise TooManyFiles(f"At most {self.max_files} files per request.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._keep:
            return
        self._part.size += end - start
        if self._part.size > self.max_file_bytes:
            raise PayloadTooLarge(file_too_large(self.max_file_bytes))
        self._part.chunks.append(data[start:end])

    def on_part_end(self) -> None:
        if not self._keep:
            return
        _, options = parse_options_header(self._part.headers.get(b"content-disposition"))
        self.uploads.append(
            Upload(
                filename=options.get(b"filename", b"").decode("utf-8", "replace"),
                content_type=self._part.headers.get(b"content-type", b"").decode("latin-1"),
                data=b"".join(self._part.chunks),
            )
        )
        self._keep = False


async def read_uploads(request: Request, max_file_bytes: int, max_files: int) -> list[Upload]:
    """All ``file`` parts of a multipart request, in order; raises a ``ServiceError``."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MalformedRequest()
    # Everything but the files is small; this bounds the whole body, not just the files.
    max_body = max_files * (max_file_bytes + FORM_ALLOWANCE_BYTES)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise PayloadTooLarge(request_too_large(max_file_bytes, max_files))

    collector = _Collector(max_file_bytes, max_files)
    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
        },
        max_size=max_body,
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise PayloadTooLarge(request_too_large(max_file_bytes, max_files))
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInput(MALFORMED_DETAIL) from exc
    except ClientDisconnect as exc:
        raise InvalidInput("The client disconnected before the upload finished.") from exc
    # The parser does not check that the body reached its closing boundary: a truncated
    # or empty body would otherwise be answered as if it merely lacked a 'file' field.
    if parser.state != MultipartState.END:
        raise InvalidInput(MALFORMED_DETAIL)
    if not collector.uploads:
        raise MalformedRequest("The request has no 'file' field: send the image as field 'file'.")
    return collector.uploads
