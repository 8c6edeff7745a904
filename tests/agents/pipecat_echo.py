"""A real Pipecat bot for vca-sip's tests: echoes the caller's audio back over a telephony
WebSocket, speaking Twilio Media Streams or Exotel's dialect through Pipecat's own
serializers, and hangs up after a given time.

    python pipecat_echo.py --dialect twilio --port 0 --end-after 5 \
        --hangup-base http://127.0.0.1:8081 --auth-token secret
    python pipecat_echo.py --dialect exotel --port 0 --end-after 5

It serves ws://127.0.0.1:<port>/ws with FastAPI and uvicorn (port 0 picks a free one), or
wss:// with --tls-cert and --tls-key. Per
connection it reads the first two messages (`connected`, `start`) the way Pipecat's runner
does, builds a `FastAPIWebsocketTransport` with `TwilioFrameSerializer` or
`ExotelFrameSerializer`, and runs the pipeline input -> echo -> output (no STT, LLM, TTS or
VAD). The Twilio serializer's auto hang-up is on, its REST base URL set to --hangup-base:
ending the pipeline POSTs `Status=completed` to
`{base}/2010-04-01/Accounts/{accountSid}/Calls/{callSid}.json` with Basic auth
accountSid:auth-token. The pipeline ends --end-after seconds after `start`, or is cancelled
when the socket closes.

Notable things go to stderr as one JSON object a line, for the tests to assert on:
  {"event": "listening", "port": N, "startup_ms": N}
  {"event": "started", "dialect", "stream_sid", "call_sid", "account_sid",
   "custom_parameters", "hangup_url"}
  {"event": "first_media"}
  {"event": "dtmf", "digit": "5"}                  (a key the caller pressed)
  {"event": "ending", "reason": "timer"}
  {"event": "disconnected"}
  {"event": "hangup", "status": N, ...}            (twilio only)
  {"event": "ended", "media_frames_in": N}   (each of them echoed)
  {"event": "rejected", "reason": "..."}           (a first message pair that is not a call)
Pipecat's own log goes to stderr as plain text, warnings and above unless
VCA_AGENT_LOG_LEVEL says otherwise. Nothing reaches the network beyond loopback.
"""

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import time

STARTED_AT = time.monotonic()

# Pipecat and the libraries it loads read these at import time.
os.environ.setdefault("PIPECAT_ALLOWED_ORIGINS", "")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from loguru import logger  # noqa: E402

# Before Pipecat is imported: it logs its banner at import.
logger.remove()
logger.add(sys.stderr, level=os.environ.get("VCA_AGENT_LOG_LEVEL", "WARNING"))

import uvicorn  # noqa: E402
from fastapi import FastAPI, WebSocket  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.serializers.exotel import ExotelFrameSerializer  # noqa: E402
from pipecat.serializers.twilio import TwilioFrameSerializer  # noqa: E402
from pipecat.transports.websocket.fastapi import (  # noqa: E402
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner  # noqa: E402

# Both dialects carry 8 kHz audio; running the pipeline at that rate keeps the echo free of
# resampling.
SAMPLE_RATE = 8000


def note(event: str, **fields) -> None:
    """Writes one JSON line to stderr."""
    sys.stderr.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stderr.flush()


def hangup_outcome(message) -> None:
    """A loguru sink turning the Twilio serializer's hang-up log lines into `hangup` notes
    (the serializer reports the POST's outcome only through its log)."""
    text = message.record["message"]
    if text.startswith("Successfully terminated Twilio call"):
        note("hangup", status=200)
    elif "was already terminated" in text:
        note("hangup", status=404, already_ended=True)
    elif text.startswith("Failed to terminate Twilio call"):
        found = re.search(r"Status (\d+), Response: (.*)", text, re.S)
        if found:
            note("hangup", status=int(found.group(1)), response=found.group(2))
        else:
            note("hangup", error=text)
    elif text.startswith("Failed to hang up Twilio call"):
        note("hangup", error=text)


class Echo(FrameProcessor):
    """Sends every frame of the caller's audio back as the bot's audio, counting them, and
    notes every key the caller presses."""

    def __init__(self):
        super().__init__(name="echo")
        self.frames_in = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.frames_in += 1
            if self.frames_in == 1:
                note("first_media")
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio,
                    sample_rate=frame.sample_rate,
                    num_channels=frame.num_channels,
                )
            )
        else:
            if isinstance(frame, InputDTMFFrame):
                note("dtmf", digit=frame.button.value)
            await self.push_frame(frame, direction)


async def read_call_start(websocket: WebSocket) -> dict | None:
    """Reads the first two messages as Pipecat's runner does (`parse_telephony_websocket`)
    and returns the `start` message, or None when neither is one."""
    messages = websocket.iter_text()
    start = None
    for _ in range(2):
        try:
            raw = await messages.__anext__()
        except StopAsyncIteration:
            break
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict) and message.get("event") == "start":
            start = message
            break
    return start


def call_ids(dialect: str, start: dict) -> tuple[str, str, str, object] | None:
    """(stream sid, call sid, account sid, custom parameters) of a `start` message, with
    the runner's detection rules: Twilio needs start.streamSid and start.callSid, Exotel
    start.stream_sid, start.call_sid and start.account_sid."""
    body = start.get("start")
    if not isinstance(body, dict):
        return None
    if dialect == "twilio":
        keys = ("streamSid", "callSid", "accountSid", "customParameters")
        required = keys[:2]
    else:
        keys = ("stream_sid", "call_sid", "account_sid", "custom_parameters")
        required = keys[:3]
    if any(not isinstance(body.get(key), str) for key in required):
        return None
    return (
        body[keys[0]],
        body[keys[1]],
        body.get(keys[2]) or "",
        body.get(keys[3], {}),
    )


def make_app(args) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def call(websocket: WebSocket):
        await websocket.accept()
        start = await read_call_start(websocket)
        ids = call_ids(args.dialect, start) if start else None
        if ids is None:
            note("rejected", reason=f"no {args.dialect} start message")
            await websocket.close(code=1008)
            return
        stream_sid, call_sid, account_sid, custom = ids
        hangup_url = None
        if args.dialect == "twilio":
            hangup_url = (
                f"{args.hangup_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}"
                f"/Calls/{call_sid}.json"
            )
            try:
                serializer = TwilioFrameSerializer(
                    stream_sid=stream_sid,
                    call_sid=call_sid,
                    account_sid=account_sid,
                    auth_token=args.auth_token,
                    base_url=args.hangup_base,
                    params=TwilioFrameSerializer.InputParams(auto_hang_up=True),
                )
            except ValueError as e:
                note("rejected", reason=str(e))
                await websocket.close(code=1008)
                return
        else:
            serializer = ExotelFrameSerializer(stream_sid=stream_sid, call_sid=call_sid)
        note(
            "started",
            dialect=args.dialect,
            stream_sid=stream_sid,
            call_sid=call_sid,
            account_sid=account_sid,
            custom_parameters=custom,
            hangup_url=hangup_url,
        )

        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
                allowed_origins=[],
            ),
        )
        echo = Echo()
        worker = PipelineWorker(
            Pipeline([transport.input(), echo, transport.output()]),
            params=PipelineParams(
                audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
            ),
            enable_rtvi=False,
            enable_turn_tracking=False,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport, _websocket):
            note("disconnected")
            await worker.cancel()

        async def end_later():
            await asyncio.sleep(args.end_after)
            note("ending", reason="timer")
            # An EndFrame, as a bot ending its call does: the output transport sends its
            # closing silence, the serializer hangs up, then the socket closes.
            await worker.queue_frame(EndFrame())

        timer = asyncio.create_task(end_later())
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        try:
            await runner.run()
        finally:
            timer.cancel()
            note("ended", media_frames_in=echo.frames_in)

    return app


async def serve(args) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(args),
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            access_log=False,
            ssl_certfile=args.tls_cert,
            ssl_keyfile=args.tls_key,
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.01)
    note(
        "listening",
        port=listener.getsockname()[1],
        startup_ms=round((time.monotonic() - STARTED_AT) * 1000),
    )
    await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialect", choices=("twilio", "exotel"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--end-after", type=float, required=True, help="seconds after start")
    parser.add_argument("--hangup-base", help="REST base URL of the hang-up (twilio)")
    parser.add_argument("--auth-token", help="Basic auth password of the hang-up (twilio)")
    parser.add_argument("--tls-cert", help="PEM certificate: serve wss:// instead of ws://")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args()
    if args.dialect == "twilio" and not (args.hangup_base and args.auth_token):
        parser.error("twilio needs --hangup-base and --auth-token")
    if not args.hangup_base:
        args.hangup_base = ""

    logger.add(
        hangup_outcome,
        level="DEBUG",
        filter=lambda record: record["name"] == "pipecat.serializers.twilio",
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
