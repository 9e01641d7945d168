"""Mozart studio: a local web page to generate, listen, look and download.

FastAPI serves one static page (``studio/index.html``) and the JSON API the page uses:

- ``GET /health``: ``{"status": "ok", "model": ..., "pending": n}``
- ``POST /api/generate`` (form fields, optional ``prompt`` MIDI upload): queues a job,
  answers 202 with ``{"id", "status", "position"}``; 422 with ``{"error"}`` for bad input
  (never a stack trace), 413 for an upload over the size limit, 429 when the queue is full.
  ``mode`` picks the job: ``generate`` (default: new bars, continuing the upload if any),
  ``infill`` (regenerate bars ``range``, e.g. ``5-8``, of the upload or of the result
  ``source_job``) or ``accompany`` (add the chosen ``programs``/``drums`` to every bar, or to
  ``range``, of the upload or of ``source_job``).
- ``GET /api/jobs/{id}``: status (``queued`` with its position, ``running`` with
  ``progress`` 0..1, ``done`` with file URLs, or ``error`` with a message).
- ``GET /api/history``: the last results of this server session, newest first.
- ``GET /files/{id}/{name}``: a result's .mid, .wav, .png or .txt.

Why FastAPI and a small page rather than Gradio: the page is one file we control (the
browser test drives exactly what users see), the JSON API is the same one the page uses,
and the dependencies are small (Gradio pulls ~100 MB and its own frontend build).
One worker thread runs the jobs in order, so several browsers queue instead of
overloading the machine; generate jobs waiting with the same settings (all but the seed) and
the same prompt are sampled together in one batch (``Studio.batch_of``: each row has its own
seed, so every job gets exactly the piece it would alone, sooner).  Results live in a
per-server temporary folder removed on exit.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from .controls import check_style
from .defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from .errors import MozartError
from .register import DEFAULT_FILL, DEFAULT_HARMONY, DEFAULT_REGISTER, check_fill, check_harmony, check_register
from .tokens import BAR, count_notes

log = logging.getLogger("mozart.studio")

#: Uploads larger than this are refused (a long multitrack MIDI file is ~200 kB).
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
#: Room for the form's other fields around an upload.
FORM_OVERHEAD_BYTES = 64 * 1024
#: Jobs waiting or running beyond this are refused with 429.
MAX_PENDING = 8
#: Results listed in the page's history.
HISTORY = 8
#: Most bars one request may ask for.
MAX_BARS = 64
#: Longest audio the studio renders per result; longer requests are refused before sampling
#: when their tempo and meter are fixed, and rendered without audio otherwise.
MAX_AUDIO_SECONDS = 600.0
#: Seconds a request body may take to arrive (a stalled upload is dropped with 408).
BODY_TIMEOUT_S = 30.0
#: Addresses that only this machine can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: What a job may do (the form's ``mode``).
MODES = ("generate", "infill", "accompany")
#: The files a result may have, and their media types.
RESULT_FILES = {"sample.mid": "audio/midi", "sample.wav": "audio/wav", "sample.png": "image/png",
                "sample.txt": "text/plain; charset=utf-8"}


@dataclass
class Job:
    """One generation request and what became of it."""

    id: str
    settings: dict
    status: str = "queued"  # queued | running | done | error
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    seconds: float | None = None
    summary: dict = field(default_factory=dict)
    #: what the worker needs besides the settings: (prompt, rewrite) as ``Studio.submit`` got them
    inputs: tuple = field(default=(None, None), repr=False)

    def public(self, position: int | None = None) -> dict:
        out = {"id": self.id, "status": self.status, "progress": round(self.progress, 3), "settings": self.settings}
        if position is not None:
            out["position"] = position
        if self.status == "error":
            out["error"] = self.error
        if self.status == "done":
            out.update({**self.summary, "seconds": self.seconds,
                        "files": {name.split(".")[-1]: f"/files/{self.id}/{name}" for name in self.summary["files"]}})
        return out


class Studio:
    """The model, the job queue and the results folder behind the web page."""

    def __init__(self, model_dir: Path | None, workdir: Path | None = None, max_pending: int = MAX_PENDING):
        from .models import default_model_dir, load_sampler

        folder = Path(model_dir) if model_dir is not None else default_model_dir()
        if folder is None:
            raise MozartError("no built-in model in this installation: pass -m MODEL_DIR")
        self.model_name = "built-in" if model_dir is None else str(model_dir)
        self.loaded = load_sampler(folder)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mozart-studio-"))
        self.max_pending = max_pending
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []
        self.lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mozart-generate")
        self.max_audio_seconds = MAX_AUDIO_SECONDS

    def pending(self) -> list[str]:
        return [i for i in self.order if self.jobs[i].status in ("queued", "running")]

    def position(self, job: Job) -> int | None:
        """0 for the running job, 1 for the next, ...; None when finished."""
        pending = self.pending()
        return pending.index(job.id) if job.id in pending else None

    def submit(self, settings: dict, prompt_words: tuple[list[str], int] | None,
               rewrite: tuple | None = None) -> tuple[Job, int]:
        """Queue a job; returns it with its position (requests ahead of it) at submission.
        ``rewrite`` is (piece, first bar, last bar, streams, keep) for infill and accompany."""
        with self.lock:
            ahead = len(self.pending())
            if ahead >= self.max_pending:
                raise StudioBusy(f"the studio is busy ({self.max_pending} requests waiting); try again shortly")
            job = Job(uuid.uuid4().hex[:12], settings, inputs=(prompt_words, rewrite))
            self.jobs[job.id] = job
            self.order.append(job.id)
            (self.workdir / job.id).mkdir(parents=True, exist_ok=True)
            self.executor.submit(self._run, job)
        return job, ahead

    def batch_of(self, job: Job) -> list[Job]:
        """``job`` and the queued generate jobs that can be sampled with it in one batch (up to
        sampling.MAX_BATCH): the same settings but the seed, the same prompt.  Call with the lock held."""
        from .sampling import MAX_BATCH

        if job.inputs[1] is not None:  # infill and accompany run alone
            return [job]
        same = [j for j in (self.jobs[i] for i in self.pending())
                if j is not job and j.status == "queued" and j.inputs[1] is None and j.inputs[0] == job.inputs[0]
                and _without_seed(j.settings) == _without_seed(job.settings)]
        return [job] + same[:MAX_BATCH - 1]

    def _run(self, job: Job) -> None:
        from . import write_sample
        from .controls import Controls, SamplingSettings
        from .form import generate_forms
        from .rewrite import rewrite_pieces
        from .sampling import generate_pieces

        with self.lock:
            if job.status != "queued":
                return  # already sampled in an earlier job's batch
            batch = self.batch_of(job)
            for j in batch:
                j.status = "running"
        prompt, rewrite = job.inputs
        started = time.perf_counter()
        s = job.settings
        try:
            controls = Controls(bars=s["bars"], programs=tuple(s["programs"]) or None, drums=s["drums"],
                                tempo=s["tempo"], time_signature=tuple(s["time_signature"]) if s["time_signature"]
                                else None, style=s.get("style"))
            settings = SamplingSettings(temperature=s["temperature"], top_p=s["top_p"])

            def progress(share: float) -> None:
                for j in batch:
                    j.progress = share

            used: dict[int, int] = {}  # programs the model never saw, and their stand-ins (standins.py)
            if rewrite is not None:
                piece, first, last, streams, keep = rewrite
                texts = rewrite_pieces(self.loaded, piece, first, last, streams, keep, settings, n=1, seed=s["seed"],
                                       progress=progress, style=s.get("style"), on_stand_ins=used.update,
                                       register=s.get("register") or "any", harmony=s.get("harmony") or "free",
                                       fill=s.get("fill") or "bar")
            elif s.get("form"):
                texts = generate_forms(self.loaded, s["form"], controls, settings, [j.settings["seed"] for j in batch],
                                       progress=progress)
            else:
                texts = generate_pieces(self.loaded, controls, settings, seeds=[j.settings["seed"] for j in batch],
                                        prompt=prompt, progress=progress)
            for j, text in zip(batch, texts):
                result = write_sample(text, self.workdir / j.id / "sample", max_audio_seconds=self.max_audio_seconds)
                words = text.split()
                files = sorted(name for name in RESULT_FILES if (self.workdir / j.id / name).is_file())
                j.summary = {"bars": words.count(BAR), "notes": count_notes(words), "tokens": len(words),
                             "files": files, "audio": result.get("audio", "ok"), "batch": len(batch),
                             "stand_ins": {str(k): v for k, v in sorted(used.items())}}
                j.progress, j.status = 1.0, "done"
        except MozartError as e:
            for j in batch:
                j.status, j.error = "error", " ".join(str(e).split())
        except Exception as e:  # a bug: say so in one line, keep the details in the server log
            log.exception("job %s failed", job.id)
            for j in batch:
                j.status, j.error = "error", f"internal error ({type(e).__name__}); see the server log"
        finally:
            for j in batch:
                j.seconds = round(time.perf_counter() - started, 2)

    def history(self) -> list[dict]:
        done = [self.jobs[i] for i in reversed(self.order) if self.jobs[i].status == "done"]
        return [j.public() for j in done[:HISTORY]]

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


class StudioBusy(MozartError):
    """The queue is full."""


def _without_seed(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "seed"}


def _form_settings(form: dict, upload_name: str | None) -> dict:
    """Validate the page's form fields into generation settings (MozartError on bad input)."""
    from .controls import check_options, parse_time_signature

    def number(name: str, kind, default):
        raw = form.get(name)
        if raw in (None, ""):
            return default
        try:
            return kind(raw)
        except (ValueError, OverflowError):
            raise MozartError(f"{name}: {raw!r} is not a number") from None

    programs = []
    for raw in form.get("programs", []):
        try:
            program = int(raw)
        except ValueError:
            raise MozartError(f"instrument {raw!r}: expected a General MIDI program 0..127") from None
        if not 0 <= program <= 127:
            raise MozartError(f"instrument {program}: expected a General MIDI program 0..127")
        programs.append(program)
    settings = {"bars": number("bars", int, 8), "programs": programs,
                "drums": form.get("drums") in ("on", "true", "1", True),
                "tempo": number("tempo", float, None), "time_signature": None,
                "temperature": number("temperature", float, DEFAULT_TEMPERATURE),
                "top_p": number("top_p", float, DEFAULT_TOP_P),
                "seed": number("seed", int, 0), "prompt": upload_name, "prompt_bars": number("prompt_bars", int, 4)}
    settings["style"] = form.get("style") or None
    check_style(settings["style"])
    settings["mode"] = form.get("mode") or "generate"
    if settings["mode"] not in MODES:
        raise MozartError(f"mode {settings['mode']!r}: expected one of {', '.join(MODES)}")
    # a form shapes what generate writes (infilling and accompaniment keep the source's bars)
    settings["form"] = (form.get("form") or "").strip().upper() or None if settings["mode"] == "generate" else None
    if settings["form"]:
        from .form import parse_form

        parse_form(settings["form"], settings["bars"])
        if upload_name:
            raise MozartError(f"--form {settings['form']}: not with a prompt (a form starts from nothing)")
    settings["range"] = (form.get("range") or "").strip() or None
    # where added parts go against the music they are added to (register.py): accompaniment only
    accompany = settings["mode"] == "accompany"
    settings["register"] = check_register(form.get("register") or DEFAULT_REGISTER) if accompany else None
    settings["harmony"] = check_harmony(form.get("harmony") or DEFAULT_HARMONY) if accompany else None
    settings["fill"] = check_fill(form.get("fill") or DEFAULT_FILL) if accompany else None
    settings["source_job"] = form.get("source_job") or None
    ts = form.get("time_signature") or None
    settings["time_signature"] = list(parse_time_signature(ts)) if ts else None
    check_options(bars=settings["bars"], temperature=settings["temperature"], top_p=settings["top_p"],
                  tempo=settings["tempo"], seed=settings["seed"], prompt_bars=settings["prompt_bars"],
                  programs=programs, max_bars=MAX_BARS)
    return settings


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host header values (``name:port``) the studio answers: its bound address and, for a
    loopback address, every loopback name.  Anything else (``Host: evil.example``) is a DNS
    rebinding attempt or a misconfigured proxy."""
    names = {host} | (set(LOOPBACK) if host in LOOPBACK or host in ("0.0.0.0", "::") else set())
    return {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}


def create_app(model_dir: Path | None = None, workdir: Path | None = None, max_pending: int = MAX_PENDING,
               hosts: set[str] | None = None, max_audio_seconds: float = MAX_AUDIO_SECONDS,
               body_timeout: float = BODY_TIMEOUT_S):
    """The studio's FastAPI application (the model is loaded here, once).  ``hosts``: the Host
    header values it answers (``allowed_hosts``); None answers any (in-process tests)."""
    studio = Studio(model_dir, workdir, max_pending)
    studio.max_audio_seconds = max_audio_seconds

    @asynccontextmanager
    async def lifespan(app):
        yield
        studio.close()

    app = FastAPI(title="Mozart studio", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.studio = studio
    page = (resources.files("mozart") / "studio" / "index.html").read_text(encoding="utf-8")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def same_origin_only(request: Request, call_next):
        """Answer only requests addressed to the studio (Host) and, for requests that change
        state, sent by its own page (Origin, else Referer, when the browser gives one): another
        web site the user visits can neither queue jobs nor read results."""
        if hosts is not None:
            host = request.headers.get("host", "")
            if host not in hosts:
                return error(403, f"Host {host!r} is not this studio's address")
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                origin = request.headers.get("origin") or _origin_of(request.headers.get("referer"))
                if origin is not None and origin not in {f"http://{h}" for h in hosts}:
                    return error(403, f"requests from {origin} are not accepted: use the studio's own page")
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": studio.model_name, "pending": len(studio.pending())}

    @app.post("/api/generate")
    async def api_generate(request: Request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES:  # refuse before reading
            return error(413, f"request larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        try:
            body = await _read_body(request, MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES, body_timeout)
        except UploadTooLarge as e:
            return error(413, str(e))
        except TimeoutError:
            return error(408, f"the request body did not arrive within {body_timeout:g} s")
        except MozartError as e:
            return error(400, str(e))
        request._body = body  # the form parser reads the checked bytes, never the socket again
        try:
            form = await request.form(max_files=1, max_fields=64)
        except Exception as e:  # malformed multipart bodies
            return error(422, f"unreadable form: {e}")
        fields = {k: v for k, v in form.multi_items() if not hasattr(v, "read")}
        fields["programs"] = [v for k, v in form.multi_items() if k == "programs" and v != ""]
        upload = form.get("prompt")
        upload = upload if isinstance(upload, UploadFile) and upload.filename else None
        try:
            settings = _form_settings(fields, upload.filename if upload else None)
            prompt = rewrite = None
            loaded = studio.loaded
            check_style(settings["style"], loaded.tokenizer.get_vocab(), loaded.model.config.vocab_size)
            _check_duration(settings, studio.max_audio_seconds)
            if settings["mode"] != "generate":
                rewrite = await _rewrite_request(studio, settings, fields, upload)
            elif upload is not None:
                prompt = await _read_prompt(upload, settings["prompt_bars"], studio.workdir, studio.loaded.grid)
            job, ahead = studio.submit(settings, prompt, rewrite)
        except StudioBusy as e:
            return error(429, str(e))
        except UploadTooLarge as e:
            return error(413, str(e))
        except MozartError as e:
            return error(422, " ".join(str(e).split()))
        return JSONResponse(job.public(ahead), status_code=202)

    @app.get("/api/jobs/{job_id}")
    def api_job(job_id: str):
        job = studio.jobs.get(job_id)
        if job is None:
            return error(404, f"no job {job_id!r} in this session")
        return job.public(studio.position(job))

    @app.get("/api/history")
    def api_history() -> list[dict]:
        return studio.history()

    @app.get("/files/{job_id}/{name}")
    def files(job_id: str, name: str):
        job = studio.jobs.get(job_id)
        if job is None or job.status != "done" or name not in job.summary.get("files", []):
            return error(404, "no such file")
        stem = "mozart-" + job_id
        return FileResponse(studio.workdir / job_id / name, media_type=RESULT_FILES[name],
                            filename=f"{stem}.{name.split('.')[-1]}" if name != "sample.png" else None)

    return app


class UploadTooLarge(MozartError):
    """An upload over MAX_UPLOAD_BYTES."""


def _check_duration(settings: dict, limit: float) -> None:
    """Refuse, before sampling, new bars whose fixed tempo and meter already last longer than the
    studio renders (``bars=8 tempo=30 time_signature=32/1`` would be 34 minutes)."""
    if settings["mode"] != "generate" or not settings["tempo"] or not settings["time_signature"]:
        return
    numerator, denominator = settings["time_signature"]
    seconds = settings["bars"] * numerator * 4 / denominator * 60 / settings["tempo"]
    if seconds > limit:
        raise MozartError(f"{settings['bars']} bars of {numerator}/{denominator} at {settings['tempo']:g} qpm last "
                          f"{seconds / 60:.1f} minutes; the studio renders at most {limit / 60:g}")


def _origin_of(referer: str | None) -> str | None:
    """``scheme://host:port`` of a Referer header (None without one)."""
    if not referer:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}"


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole request body, counted while it streams: more than ``limit`` bytes raises
    UploadTooLarge at once (a chunked upload without Content-Length included), a body that takes
    longer than ``timeout`` seconds raises TimeoutError, and a body shorter than its
    Content-Length, or a multipart body without its closing boundary, is a MozartError."""
    import asyncio

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadTooLarge(f"request larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
            chunks.append(chunk)
        return b"".join(chunks)

    body = await asyncio.wait_for(collect(), timeout)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) != len(body):
        raise MozartError(f"truncated request: {len(body)} of {declared} bytes arrived")
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data") and "boundary=" in kind:
        boundary = kind.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        if f"--{boundary}--".encode() not in body:
            raise MozartError("truncated upload: the form ends before its closing boundary")
    return body


async def _rewrite_request(studio: Studio, settings: dict, fields: dict, upload) -> tuple:
    """(piece, first bar, last bar, streams, keep) of an infill or accompany request: the piece
    is the upload or the result ``source_job`` of this session, at the model's grid."""
    from .events import DRUM_OFFSET
    from .midi import quantize
    from .rewrite import parse_bars, piece_bars, source_streams
    from .scores import load_score

    if upload is not None:
        path = await _save_upload(upload, studio.workdir)
        try:
            piece = quantize(load_score(path), studio.loaded.grid)
        except MozartError as e:
            raise MozartError(str(e).replace(str(path), upload.filename)) from None
        finally:
            path.unlink(missing_ok=True)
    elif settings["source_job"]:
        job = studio.jobs.get(settings["source_job"])
        if job is None or job.status != "done":
            raise MozartError(f"no finished result {settings['source_job']!r} in this session")
        piece = quantize(load_score(studio.workdir / job.id / "sample.txt"), studio.loaded.grid)
    else:
        raise MozartError("upload a MIDI file, or pick a result of this session, to rewrite")
    n_bars = piece_bars(piece)[0].size - 1
    keep = settings["mode"] == "accompany"
    if settings["range"] is None and not keep:
        raise MozartError("bars to regenerate: give a range such as 5-8")
    first, last = parse_bars(settings["range"], n_bars) if settings["range"] else (0, n_bars - 1)
    chosen = set(settings["programs"]) | ({DRUM_OFFSET} if settings["drums"] else set())
    if keep and not chosen:
        raise MozartError("add instruments: choose at least one instrument (or drums) to add")
    streams = sorted(chosen or set(source_streams(piece)))
    return piece, first, last, streams, keep


async def _save_upload(upload, workdir: Path) -> Path:
    """Check an uploaded MIDI file (type, size, header) and save it under ``workdir``."""
    name = upload.filename
    if not name.lower().endswith((".mid", ".midi")):
        raise MozartError(f"{name}: not a MIDI file (upload a .mid or .midi file)")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"{name}: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    if not data.startswith(b"MThd"):
        raise MozartError(f"{name}: not a standard MIDI file (it does not start with 'MThd')")
    with tempfile.NamedTemporaryFile(suffix=".mid", dir=workdir, delete=False) as f:
        f.write(data)
    return Path(f.name)


async def _read_prompt(upload, bars: int, workdir: Path, grid: int) -> tuple[list[str], int]:
    """Check an uploaded MIDI prompt (size, type, content) and return its first ``bars`` bars at ``grid``."""
    from .prompts import prompt_from_midi

    path = await _save_upload(upload, workdir)
    try:
        words, kept = prompt_from_midi(path, bars, grid)
    except MozartError as e:
        raise MozartError(str(e).replace(str(path), upload.filename)) from None
    finally:
        path.unlink(missing_ok=True)
    return words, kept


def serve(host: str = "127.0.0.1", port: int = 7860, model_dir: Path | None = None, allow_remote: bool = False,
          max_audio_seconds: float = MAX_AUDIO_SECONDS, body_timeout: float = BODY_TIMEOUT_S) -> None:
    """Run the studio until interrupted (Ctrl-C); results are deleted on exit.  A host other
    than a loopback address needs ``allow_remote``; a port in use is one clean error, before
    the model loads."""
    import socket

    import uvicorn

    if host not in LOOPBACK and not allow_remote:
        raise MozartError(f"--host {host}: anyone who can reach this machine could use the studio; "
                          "pass --allow-remote to serve beyond this machine")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise MozartError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        if host not in LOOPBACK:
            log.warning("serving on %s: anyone who can reach this machine can use the studio", host)
        app = create_app(model_dir, hosts=allowed_hosts(host, port), max_audio_seconds=max_audio_seconds,
                         body_timeout=body_timeout)
        address = host if ":" not in host else f"[{host}]"
        print(f"Mozart studio on http://{address}:{port}/ (Ctrl-C to stop); results in {app.state.studio.workdir} "
              "(deleted on exit)", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
