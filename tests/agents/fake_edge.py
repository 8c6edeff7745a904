"""A test of the Pipecat agent harness: plays vca-sip's side of an agent stream against
pipecat_echo.py and checks that the bot echoes the caller's audio and hangs up.

    python fake_edge.py --dialect twilio [--edge-hangs-up]
    python fake_edge.py --dialect exotel [--edge-hangs-up]

It starts the bot on a free loopback port (its hang-up pointed at a small HTTP server of
its own that answers like Twilio's REST API), connects to /ws, sends `connected` and
`start` in the dialect's exact shape, then 3 s of a stepped tone as `media` every 20 ms
(160 bytes of mu-law for Twilio, 320 bytes of 16-bit PCM for Exotel), and silence after it
until the bot closes the socket; or, with --edge-hangs-up, sends `stop` after the tone and
closes the socket itself, as the edge does when the caller hangs up. Checks:
  - the bot's `started` note carries the sids and custom parameters sent;
  - media comes back in the dialect's shape (its stream sid; Exotel payloads a multiple
    of 320 bytes) and the tone is in it: each 0.5 s of the tone correlates with the echo;
  - Twilio: the hang-up POST (path, Basic auth, Status=completed) arrives before the socket
    closes and the bot sees its 200; Exotel: no POST at all;
  - --edge-hangs-up: the bot sees the socket close and ends its pipeline, and makes no
    hang-up POST (Pipecat's output transport writes nothing once the socket is gone);
  - the bot counted every media frame sent before the tone ended.
Prints a JSON summary (with bot start time and echo delay) to stdout; exits 0 only when
every check passes. Uses only loopback.
"""

import argparse
import asyncio
import base64
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import websockets
from aiohttp import web

HERE = Path(__file__).resolve().parent
RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
TONE_SECS = 3.0
END_AFTER_SECS = 4.0
# When the edge hangs up first, the bot's own timer must not fire first.
END_AFTER_SECS_EDGE_ENDS = 60.0
# Time between `stop` and the close, when the edge hangs up.
STOP_TO_CLOSE_SECS = 0.2
WINDOW_SECS = 0.5
MIN_WINDOW_CORRELATION = 0.9
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
CALL_SID = "CA" + "fedcba9876543210" * 2
STREAM_SID = "MZ" + "00112233445566778899aabbccddeeff"
AUTH_TOKEN = "edge-test-token"
CUSTOM = {"tenant": "acme", "did": "+441234567890"}


# --- G.711 mu-law (ITU-T G.711), written out so the check does not depend on the bot's code.
def ulaw_encode(sample: int) -> int:
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(byte: int) -> int:
    byte = ~byte & 0xFF
    magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte & 0x70) >> 4)
    return (0x84 - magnitude) if byte & 0x80 else (magnitude - 0x84)


ULAW_TO_LINEAR = np.array([ulaw_decode(b) for b in range(256)], dtype=np.float64)


def tone(seconds: float) -> np.ndarray:
    """Steps of 400, 600, ... Hz, one per window, so that each window is told apart from its
    neighbours and a lag is unambiguous beyond one period."""
    n = int(seconds * RATE)
    step = (np.arange(n) // int(WINDOW_SECS * RATE)).astype(np.float64)
    phase = 2 * math.pi * np.cumsum(400.0 + 200.0 * step) / RATE
    return np.round(8000 * np.sin(phase)).astype(np.int64)


class Dialect:
    def __init__(self, name: str):
        self.name = name
        self.twilio = name == "twilio"
        self.sequence = 0

    def seq(self):
        self.sequence += 1
        return str(self.sequence) if self.twilio else self.sequence

    def connected(self) -> dict:
        if self.twilio:
            return {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        return {"event": "connected"}

    def start(self) -> dict:
        if self.twilio:
            return {
                "event": "start",
                "sequenceNumber": self.seq(),
                "streamSid": STREAM_SID,
                "start": {
                    "streamSid": STREAM_SID,
                    "accountSid": ACCOUNT_SID,
                    "callSid": CALL_SID,
                    "tracks": ["inbound"],
                    "customParameters": CUSTOM,
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": RATE,
                        "channels": 1,
                    },
                },
            }
        return {
            "event": "start",
            "sequence_number": self.seq(),
            "stream_sid": STREAM_SID,
            "start": {
                "stream_sid": STREAM_SID,
                "call_sid": CALL_SID,
                "account_sid": ACCOUNT_SID,
                "from": "+15550001111",
                "to": "+441234567890",
                "custom_parameters": CUSTOM,
                "media_format": {
                    "encoding": "raw/slin",
                    "sample_rate": str(RATE),
                    "bit_rate": "128kbps",
                },
            },
        }

    def encode(self, samples: np.ndarray) -> bytes:
        if self.twilio:
            return bytes(ulaw_encode(int(s)) for s in samples)
        return struct.pack(f"<{len(samples)}h", *(int(s) for s in samples))

    def decode(self, payload: bytes) -> np.ndarray:
        if self.twilio:
            return ULAW_TO_LINEAR[np.frombuffer(payload, dtype=np.uint8)]
        usable = len(payload) - len(payload) % 2
        return np.frombuffer(payload[:usable], dtype="<i2").astype(np.float64)

    def media(self, chunk: int, payload: bytes) -> dict:
        encoded = base64.b64encode(payload).decode("ascii")
        if self.twilio:
            return {
                "event": "media",
                "sequenceNumber": self.seq(),
                "streamSid": STREAM_SID,
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(chunk * 20),
                    "payload": encoded,
                },
            }
        return {
            "event": "media",
            "sequence_number": self.seq(),
            "stream_sid": STREAM_SID,
            "media": {"chunk": chunk, "timestamp": str(chunk * 20), "payload": encoded},
        }

    def stream_sid_of(self, message: dict):
        return message.get("streamSid" if self.twilio else "stream_sid")


class Bot:
    """pipecat_echo.py as a child process, its JSON notes collected from stderr."""

    def __init__(self):
        self.process = None
        self.notes: list[dict] = []
        self.listening = asyncio.get_running_loop().create_future()
        self.reader = None

    async def start(self, args: list[str]):
        self.launched = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "pipecat_echo.py"),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            note = None
            if line.startswith("{"):
                try:
                    note = json.loads(line)
                except json.JSONDecodeError:
                    pass
            if not isinstance(note, dict):
                print(f"bot: {line}", file=sys.stderr)
                continue
            note["at"] = time.monotonic()
            self.notes.append(note)
            if note.get("event") == "listening" and not self.listening.done():
                self.listening.set_result(note)
        if not self.listening.done():
            self.listening.set_exception(RuntimeError("the bot exited before listening"))

    def find(self, event: str) -> list[dict]:
        return [n for n in self.notes if n.get("event") == event]

    async def wait_for(self, event: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(event)
            if found:
                return found[0]
            await asyncio.sleep(0.02)
        return None

    async def stop(self):
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.reader:
            await asyncio.wait_for(self.reader, 5)


class HangupServer:
    """Answers the Twilio serializer's hang-up like Twilio's REST API, recording each POST."""

    def __init__(self):
        self.posts: list[dict] = []

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", self.call)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def call(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.posts.append(
            {
                "at": time.monotonic(),
                "path": request.path,
                "authorization": request.headers.get("Authorization", ""),
                "content_type": request.content_type,
                "form": {k: v for k, v in form.items() if isinstance(v, str)},
            }
        )
        account, call = request.match_info["account"], request.match_info["call"]
        return web.json_response(
            {
                "sid": call,
                "account_sid": account,
                "status": "completed",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{account}/Calls/{call}.json",
            }
        )

    async def stop(self):
        await self.runner.cleanup()


def correlate_windows(sent: np.ndarray, received: np.ndarray) -> list[tuple[float, int]]:
    """For each window of the sent tone, the best normalised correlation with any stretch of
    the received audio and the lag (in samples) where it is found."""
    window = int(WINDOW_SECS * RATE)
    results = []
    for begin in range(0, len(sent) - window + 1, window):
        piece = sent[begin : begin + window].astype(np.float64)
        if len(received) < window:
            results.append((0.0, 0))
            continue
        # Sliding dot products and sliding energies of the received audio, by FFT.
        size = 1 << (len(received) + window).bit_length()
        dots = np.fft.irfft(
            np.fft.rfft(received, size) * np.conj(np.fft.rfft(piece, size)), size
        )[: len(received) - window + 1]
        energy = np.convolve(received**2, np.ones(window), mode="valid")
        norm = np.sqrt(np.maximum(energy, 1e-9) * float(piece @ piece))
        scores = dots / norm
        best = int(np.argmax(scores))
        results.append((float(scores[best]), best - begin))
    return results


async def run(dialect_name: str, edge_ends: bool) -> tuple[dict, list[str]]:
    dialect = Dialect(dialect_name)
    failures: list[str] = []
    summary: dict = {"dialect": dialect_name, "edge_hangs_up": edge_ends}

    hangup = HangupServer()
    base = await hangup.start()
    bot = Bot()
    end_after = END_AFTER_SECS_EDGE_ENDS if edge_ends else END_AFTER_SECS
    args = ["--dialect", dialect_name, "--port", "0", "--end-after", str(end_after)]
    if dialect.twilio:
        args += ["--hangup-base", base, "--auth-token", AUTH_TOKEN]
    await bot.start(args)
    try:
        listening = await asyncio.wait_for(bot.listening, 60)
        summary["bot_start_ms"] = round((listening["at"] - bot.launched) * 1000)
        summary["bot_startup_ms_own"] = listening.get("startup_ms")

        sent = tone(TONE_SECS)
        received: list[tuple[float, dict]] = []
        closed_at = None
        first_tone_at = None
        async with websockets.connect(
            f"ws://127.0.0.1:{listening['port']}/ws", open_timeout=10, max_size=None
        ) as ws:
            await ws.send(json.dumps(dialect.connected()))
            await ws.send(json.dumps(dialect.start()))

            async def receive():
                try:
                    async for text in ws:
                        received.append((time.monotonic(), json.loads(text)))
                except websockets.ConnectionClosed:
                    pass

            receiving = asyncio.create_task(receive())
            frames = len(sent) // FRAME_SAMPLES
            silence = dialect.encode(np.zeros(FRAME_SAMPLES, dtype=np.int64))
            begin = time.monotonic()
            first_tone_at = begin
            chunk = 0
            # Deadlines, not intervals, so the pace does not drift; then silence until the
            # bot ends the call (as an edge keeps sending the caller's audio).
            last = frames if edge_ends else frames + int(10 / 0.02)
            while not receiving.done() and chunk < last:
                chunk += 1
                if chunk <= frames:
                    samples = sent[(chunk - 1) * FRAME_SAMPLES : chunk * FRAME_SAMPLES]
                    payload = dialect.encode(samples)
                else:
                    payload = silence
                try:
                    await ws.send(json.dumps(dialect.media(chunk, payload)))
                except websockets.ConnectionClosed:
                    break
                delay = begin + chunk * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if edge_ends:
                stop = {"event": "stop", "streamSid": STREAM_SID, "stop": {}}
                if dialect.twilio:
                    stop["sequenceNumber"] = dialect.seq()
                    stop["stop"] = {"accountSid": ACCOUNT_SID, "callSid": CALL_SID}
                else:
                    stop = {
                        "event": "stop",
                        "sequence_number": dialect.seq(),
                        "stream_sid": STREAM_SID,
                        "stop": {"call_sid": CALL_SID, "account_sid": ACCOUNT_SID},
                    }
                await ws.send(json.dumps(stop))
                await asyncio.sleep(STOP_TO_CLOSE_SECS)
                closed_at = time.monotonic()
                await ws.close()
                receiving.cancel()
            else:
                await asyncio.wait_for(receiving, 10)
                closed_at = time.monotonic()
            summary["frames_sent"] = chunk
            summary["close_code"] = ws.close_code
        summary["call_secs"] = round(closed_at - begin, 2)

        # Start note: the sids and custom parameters as sent.
        started = bot.find("started")
        if not started:
            failures.append("the bot logged no `started`")
        else:
            s = started[0]
            for key, want in (
                ("stream_sid", STREAM_SID),
                ("call_sid", CALL_SID),
                ("account_sid", ACCOUNT_SID),
                ("custom_parameters", CUSTOM),
            ):
                if s.get(key) != want:
                    failures.append(f"started.{key} is {s.get(key)!r}, sent {want!r}")

        # The media that came back.
        media = [(at, m) for at, m in received if m.get("event") == "media"]
        others = sorted({m.get("event") for _, m in received if m.get("event") != "media"})
        summary["media_received"] = len(media)
        summary["other_events"] = others
        if not media:
            failures.append("no media came back")
        audio = []
        sizes = set()
        first_voiced_at = None
        for at, m in media:
            if dialect.stream_sid_of(m) != STREAM_SID:
                failures.append(f"media with stream sid {dialect.stream_sid_of(m)!r}")
                break
            try:
                payload = base64.b64decode(m["media"]["payload"], validate=True)
            except (KeyError, TypeError, ValueError):
                failures.append(f"media without a valid base64 payload: {m!r:.200}")
                break
            sizes.add(len(payload))
            if not dialect.twilio and len(payload) % 320:
                failures.append(f"exotel media of {len(payload)} bytes, not a multiple of 320")
            samples = dialect.decode(payload)
            if first_voiced_at is None and np.abs(samples).max(initial=0) > 1000:
                first_voiced_at = at
            audio.append(samples)
        summary["payload_sizes"] = sorted(sizes)
        if first_voiced_at is not None and first_tone_at is not None:
            summary["echo_delay_ms"] = round((first_voiced_at - first_tone_at) * 1000)
        echoed = np.concatenate(audio) if audio else np.zeros(0)
        windows = correlate_windows(sent, echoed)
        summary["window_correlations"] = [round(c, 3) for c, _ in windows]
        summary["window_lags_ms"] = [round(lag / RATE * 1000) for _, lag in windows]
        if any(c < MIN_WINDOW_CORRELATION for c, _ in windows):
            failures.append(
                f"the tone is not in the echo: window correlations {summary['window_correlations']}"
            )

        # The hang-up.
        summary["hangup_posts"] = len(hangup.posts)
        if edge_ends:
            if not await bot.wait_for("disconnected", 5):
                failures.append("the bot did not see the socket close")
            await asyncio.sleep(0.5)
            if hangup.posts:
                failures.append(f"{len(hangup.posts)} hang-up POSTs after the edge hung up")
        elif dialect.twilio:
            want_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
            want_auth = "Basic " + base64.b64encode(
                f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()
            ).decode("ascii")
            if len(hangup.posts) != 1:
                failures.append(f"{len(hangup.posts)} hang-up POSTs, want 1")
            for post in hangup.posts[:1]:
                if post["path"] != want_path:
                    failures.append(f"hang-up POST to {post['path']}, want {want_path}")
                if post["authorization"] != want_auth:
                    failures.append(f"hang-up Authorization {post['authorization']!r}")
                if post["content_type"] != "application/x-www-form-urlencoded":
                    failures.append(f"hang-up content type {post['content_type']!r}")
                if post["form"] != {"Status": "completed"}:
                    failures.append(f"hang-up form {post['form']!r}")
                if closed_at is not None and post["at"] > closed_at:
                    failures.append("the hang-up POST came after the socket closed")
                summary["hangup_before_close_ms"] = round((closed_at - post["at"]) * 1000)
            outcome = await bot.wait_for("hangup", 5)
            if outcome is None or outcome.get("status") != 200:
                failures.append(f"the bot's hang-up outcome is {outcome!r}, want status 200")
        elif hangup.posts:
            failures.append("an exotel call made a hang-up POST")

        ended = await bot.wait_for("ended", 5)
        if ended is None:
            failures.append("the bot logged no `ended`")
        else:
            summary["bot_media_frames_in"] = ended.get("media_frames_in")
            if not isinstance(ended.get("media_frames_in"), int) or ended[
                "media_frames_in"
            ] < len(sent) // FRAME_SAMPLES:
                failures.append(f"the bot counted {ended.get('media_frames_in')} media frames")
        if edge_ends and bot.find("ending"):
            failures.append("the bot's timer fired although the edge hung up")
        if not edge_ends and not bot.find("ending"):
            failures.append("the bot did not end the call on its timer")
    finally:
        await bot.stop()
        await hangup.stop()
    return summary, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialect", choices=("twilio", "exotel"), required=True)
    parser.add_argument(
        "--edge-hangs-up",
        action="store_true",
        help="send stop and close the socket after the tone instead of waiting for the bot",
    )
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    try:
        summary, failures = asyncio.run(run(args.dialect, args.edge_hangs_up))
    except (OSError, RuntimeError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print(f"fake_edge {args.dialect}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    summary["failures"] = failures
    print(json.dumps(summary))
    for failure in failures:
        print(f"fake_edge {args.dialect}: FAILED: {failure}", file=sys.stderr)
    if not failures:
        print(f"fake_edge {args.dialect}: all checks passed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
