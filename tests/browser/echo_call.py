"""A headless Chromium calls a tenant's number through vca-sip's WebRTC offer endpoint.

Run inside a network namespace of its own (the test does `unshare -n`), where it brings up
loopback, starts the vca-sip binary given with --server on an SQLite file under --dir,
creates a tenant and a number through the API, and then, in Chromium (Playwright with
/usr/bin/chromium, a fake microphone playing noise bursts from a WAV):

1. posts the page's offer to `/api/tenants/{tenant}/webrtc/offer`, takes the answer,
   records what the microphone sent and what came back for a few seconds, and hangs up
   with `DELETE` on the answer's `Location`;
2. calls again and closes the peer connection from the page (the browser going away);
3. calls a number streamed to a real Pipecat bot (tests/agents/pipecat_echo.py, Twilio
   serializer, echo pipeline) and hears itself back through the agent, until the bot hangs
   up through the Twilio-shaped REST call;
4. posts offers the server must refuse (no G.711, not SDP, a number of no tenant, no
   credentials).

Prints one JSON object with what it saw: statuses, the call records, the echo's
correlation per half second window and its lag. The Rust test asserts on it.
"""

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave

import numpy as np
from playwright.sync_api import sync_playwright

ADMIN = "browser-test-admin-token-0123456789"
HTTP = "127.0.0.1:18080"
RATE = 8000
AGENT_TOKEN = "browser-test-agent-token"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--mute-audio",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
]

PAGE_JS = r"""
async ({tenant, token, to, seconds, ending, mode}) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  const pc = new RTCPeerConnection();
  stream.getTracks().forEach(t => pc.addTrack(t, stream));
  const remote = new Promise(r => pc.ontrack = e => r(e.streams[0] || new MediaStream([e.track])));
  const states = [];
  pc.onconnectionstatechange = () => states.push(pc.connectionState);
  // Candidates found before the answer wait for it; after it they are sent as found.
  const early = [];
  let send = null;
  pc.onicecandidate = e => { if (send) send(e.candidate); else early.push(e.candidate); };
  const gathered = new Promise(r => {
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') r(); });
    setTimeout(r, 3000);
  });
  await pc.setLocalDescription(await pc.createOffer());
  if (mode === 'json') await gathered;
  const offer = pc.localDescription.sdp;
  const auth = {'Authorization': 'Bearer ' + token};
  const started = performance.now();
  let res, answer, answerSdp;
  if (mode === 'whip') {
    res = await fetch(`/api/tenants/${tenant}/webrtc/offer?to=${encodeURIComponent(to)}`,
      {method: 'POST', headers: {...auth, 'Content-Type': 'application/sdp'}, body: offer});
    answerSdp = await res.text();
    answer = {sdp: answerSdp, content_type: res.headers.get('Content-Type')};
  } else {
    res = await fetch(`/api/tenants/${tenant}/webrtc/offer`, {method: 'POST',
      headers: {...auth, 'Content-Type': 'application/json'}, body: JSON.stringify({sdp: offer, to})});
    answer = await res.json();
    answerSdp = answer.sdp;
  }
  const location = res.headers.get('Location');
  if (res.status !== 201) { return {status: res.status, answer, offer}; }
  const trickled = [];
  send = async c => {
    let r = null;
    if (mode === 'json-trickle') {
      r = await fetch(`/api/tenants/${tenant}/webrtc/ice-candidate`, {method: 'POST',
        headers: {...auth, 'Content-Type': 'application/json'},
        body: JSON.stringify({session_id: answer.session_id, candidate: c ? c.candidate : '',
          sdp_mid: c ? c.sdpMid : null, sdp_mline_index: c ? c.sdpMLineIndex : null})});
    } else if (mode === 'whip' && c && c.candidate) {
      r = await fetch(location, {method: 'PATCH',
        headers: {...auth, 'Content-Type': 'application/trickle-ice-sdpfrag'},
        body: `a=${c.candidate}\r\n`});
    }
    if (r) trickled.push(r.status);
  };
  if (mode !== 'json') { for (const c of early.splice(0)) await send(c); }
  await pc.setRemoteDescription({type: 'answer', sdp: answerSdp});
  const rs = await remote;
  await new Promise(r => {
    if (pc.connectionState === 'connected') return r();
    pc.addEventListener('connectionstatechange', () => { if (pc.connectionState === 'connected') r(); });
    setTimeout(r, 10000);
  });
  const connect_ms = performance.now() - started;
  const el = new Audio(); el.srcObject = rs; el.play();
  const ctx = new AudioContext({sampleRate: 8000});
  const code = `class Cap extends AudioWorkletProcessor {
    process(inputs) { const ch = inputs[0] && inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; } }
    registerProcessor('cap', Cap);`;
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([code], {type: 'application/javascript'})));
  const capture = (s) => {
    const node = new AudioWorkletNode(ctx, 'cap');
    const out = [];
    node.port.onmessage = e => out.push(...e.data);
    ctx.createMediaStreamSource(s).connect(node);
    node.connect(ctx.destination);
    return out;
  };
  const sent = capture(stream), heard = capture(rs);
  await new Promise(r => setTimeout(r, seconds * 1000));
  let inbound = {};
  (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound = {
    packetsReceived: s.packetsReceived, packetsLost: s.packetsLost, totalAudioEnergy: s.totalAudioEnergy}; });
  const round = a => Array.from(a, v => Math.round(v * 32767));
  const result = {status: res.status, answer, location, offer, connect_ms, states, inbound, trickled,
    sent: round(sent), heard: round(heard)};
  if (ending === 'close') { pc.close(); stream.getTracks().forEach(t => t.stop()); }
  return result;
}
"""


def noise_bursts(path, seconds):
    """A 48 kHz mono WAV of 150 ms noise bursts at random gaps, low-passed (a 12-sample
    moving average: nothing near 4 kHz, where the two resampling paths differ): an echo of
    it correlates at exactly one lag."""
    rng = np.random.default_rng(7)
    rate = 48000
    chunks = []
    total = 0
    while total < seconds * rate:
        gap = int(rate * rng.uniform(0.15, 0.35))
        burst = np.convolve(rng.normal(0, 12000, int(rate * 0.15)), np.ones(12) / 12, "same")
        chunks += [np.zeros(gap), burst]
        total += gap + len(burst)
    samples = np.clip(np.concatenate(chunks), -32767, 32767).astype("<i2")
    frames = samples.tobytes()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def api(method, path, body=None, token=ADMIN, raw=None, ctype="application/json"):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://{HTTP}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def echo_windows(sent, heard):
    """Per 0.5 s window of what was sent (with sound in it): the best normalized
    correlation with what came back up to a second later, and its lag in ms. Windows, not the
    whole call: the browser's jitter buffer moves the delay within a call."""
    sent = np.asarray(sent, dtype=np.float64)
    heard = np.asarray(heard, dtype=np.float64)
    win, max_lag = RATE // 2, RATE
    out = []
    for start in range(0, len(sent) - win - max_lag, win):
        a = sent[start:start + win]
        if np.sqrt(np.mean(a * a)) < 500:
            continue
        b = heard[start:start + win + max_lag]
        dots = np.correlate(b, a, "valid")
        energy = np.convolve(b * b, np.ones(win), "valid")
        norm = np.sqrt(float(np.dot(a, a)) * np.maximum(energy, 1e-9))
        corr = dots / norm
        lag = int(np.argmax(corr))
        out.append({"corr": round(float(corr[lag]), 3), "lag_ms": round(lag * 1000 / RATE, 1)})
    return out


def call_the_agent(page, tenant, key, args):
    """Starts the Pipecat echo bot, makes it the tenant's default profile's agent, and calls
    the number from the page; returns what the page heard, the record and the bot's notes."""
    bot = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                      "agents", "pipecat_echo.py"),
         "--dialect", "twilio", "--end-after", "6", "--hangup-base", f"http://{HTTP}",
         "--auth-token", AGENT_TOKEN],
        stderr=subprocess.PIPE, text=True)
    notes = []
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in bot.stderr], daemon=True).start()

    def note(event, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                seen = json.loads(line)
            except ValueError:
                continue
            notes.append(seen)
            if seen.get("event") == event:
                return seen
        return None

    try:
        listening = note("listening", 60)
        assert listening, "the bot did not start"
        status, profile = api("POST", f"/api/tenants/{tenant}/ai-profiles", {
            "name": "Echo agent", "role": "receptionist", "system_prompt": "Repeat.",
            "is_default": True, "media_target": "stream",
            "stream_url": f"ws://127.0.0.1:{listening['port']}/ws",
            "stream_protocol": "twilio", "stream_auth_token": AGENT_TOKEN})
        assert status == 201, (status, profile)
        heard = page.evaluate(PAGE_JS, {"tenant": tenant, "token": key, "to": "9876543210",
                                        "seconds": 4, "ending": "none",
                                        "mode": "json"})
        out = {"status": heard["status"], "connect_ms": heard.get("connect_ms"),
               "inbound": heard.get("inbound")}
        if heard["status"] != 201:
            out["answer"] = heard.get("answer")
            return out
        out["windows"] = echo_windows(heard["sent"], heard["heard"])
        out["record"] = wait_for_call(tenant, heard["answer"]["call_id"], ("ended", "failed"), 20)
        note("ended", 10)
        out["bot"] = [n for n in notes if n.get("event") in ("started", "hangup", "ended")]
        profile_path = f"/api/tenants/{tenant}/ai-profiles/{profile['id']}"
        # An agent that is not there: nothing listens on the discard port.
        api("PATCH", profile_path, {"stream_url": "ws://127.0.0.1:9/ws"})
        out["unreachable"] = api("POST", f"/api/tenants/{tenant}/webrtc/offer",
                                 {"sdp": heard["offer"], "to": "9876543210"}, token=key)
        out["unreachable_record"] = None
        for _ in range(50):
            status, calls = api("GET", f"/api/tenants/{tenant}/calls?status=failed&limit=1")
            if status == 200 and calls.get("items"):
                out["unreachable_record"] = calls["items"][0]
                break
            time.sleep(0.1)
        api("PATCH", profile_path, {"media_target": "echo"})
        return out
    finally:
        bot.terminate()
        try:
            bot.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bot.kill()


def trickled_call(page, tenant, key, mode):
    """A call whose offer leaves before its candidates, which follow as `mode` sends them;
    hung up with DELETE on its location."""
    called = page.evaluate(PAGE_JS, {"tenant": tenant, "token": key, "to": "9876543210",
                                      "seconds": 3, "ending": "api", "mode": mode})
    out = {k: called.get(k) for k in ("status", "location", "states", "inbound", "trickled")}
    out["offer_had_candidates"] = "a=candidate:" in called.get("offer", "")
    if called["status"] != 201:
        out["answer"] = called.get("answer")
        return out
    out["content_type"] = called["answer"].get("content_type")
    out["windows"] = echo_windows(called["sent"], called["heard"])
    out["delete"] = api("DELETE", called["location"], token=key)[0]
    # A WHIP answer is the SDP alone: the call is the tenant's newest.
    out["record"] = None
    for _ in range(50):
        status, calls = api("GET", f"/api/tenants/{tenant}/calls?limit=1")
        if status == 200 and calls.get("items") and calls["items"][0]["status"] == "ended":
            out["record"] = calls["items"][0]
            break
        time.sleep(0.1)
    return out


def wait_for_call(tenant, call_id, want, timeout):
    deadline = time.time() + timeout
    record = None
    while time.time() < deadline:
        status, record = api("GET", f"/api/tenants/{tenant}/calls/{call_id}")
        if status == 200 and record.get("status") in want:
            return record
        time.sleep(0.2)
    return record


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    wav = os.path.join(args.dir, "mic.wav")
    noise_bursts(wav, 60)
    env = dict(os.environ, VCA_ADMIN_TOKEN=ADMIN, RUST_LOG="warn")
    log = open(os.path.join(args.dir, "server.log"), "w")
    server = subprocess.Popen(
        [args.server, "serve", "--http", HTTP, "--sip-udp", "127.0.0.1:15060",
         "--sip-tcp", "127.0.0.1:15060", "--database-url",
         f"sqlite://{args.dir}/calls.db", "--rtp-ports", "30000-30099",
         "--recordings-dir", os.path.join(args.dir, "recordings"),
         "--allow-private-targets"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=args.dir)
    result = {}
    try:
        for _ in range(150):
            try:
                if api("GET", "/healthz", token=None)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        status, tenant = api("POST", "/api/tenants", {"name": "Browser Co"})
        assert status == 201, (status, tenant)
        tenant = tenant["id"]
        status, number = api("POST", f"/api/tenants/{tenant}/phone-numbers",
                             {"did_number": "09876543210"})
        assert status == 201, (status, number)
        status, key = api("POST", f"/api/tenants/{tenant}/api-keys", {})
        assert status == 201, (status, key)
        key = key["key"]

        with sync_playwright() as p:
            # Playwright gives the browser a fresh profile of its own.
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={wav}%noloop"])
            page = browser.new_page()
            page.goto(f"http://{HTTP}/healthz")

            # 1. A call hung up through the API.
            first = page.evaluate(PAGE_JS, {"tenant": tenant, "token": key, "to": "9876543210",
                                             "seconds": args.seconds, "ending": "api",
                                             "mode": "json"})
            result["first"] = {k: first.get(k) for k in
                               ("status", "location", "connect_ms", "states", "inbound")}
            result["first"]["answer_has_ice_lite"] = "a=ice-lite" in first["answer"].get("sdp", "")
            result["first"]["windows"] = echo_windows(first["sent"], first["heard"])
            with open(os.path.join(args.dir, "first_audio.json"), "w") as f:
                json.dump({"sent": first["sent"], "heard": first["heard"]}, f)
            call_id = first["answer"]["call_id"]
            status, live = api("GET", f"/api/tenants/{tenant}/calls/{call_id}")
            result["first"]["live_status"] = live.get("status")
            result["first"]["delete"] = api("DELETE", first["location"], token=key)[0]
            result["first"]["delete_again"] = api("DELETE", first["location"], token=key)[0]
            result["first"]["record"] = wait_for_call(tenant, call_id, ("ended", "failed"), 10)

            # 2. The browser goes away.
            second = page.evaluate(PAGE_JS, {"tenant": tenant, "token": key, "to": "+919876543210",
                                              "seconds": 1, "ending": "close",
                                              "mode": "json"})
            result["second"] = {"status": second["status"]}
            closed = time.time()
            record = wait_for_call(tenant, second["answer"]["call_id"], ("ended", "failed"), 45)
            result["second"]["record"] = record
            result["second"]["ended_after_s"] = round(time.time() - closed, 1)

            # 3. A number streamed to an agent.
            result["agent"] = call_the_agent(page, tenant, key, args)

            # 4. Trickled candidates, as JSON and as WHIP's PATCH; a click-to-call token.
            for mode in ("json-trickle", "whip"):
                result[mode] = trickled_call(page, tenant, key, mode)
            status, token = api("POST", f"/api/tenants/{tenant}/webrtc/tokens",
                                {"to": "09876543210", "ttl_s": 60}, token=key)
            result["token"] = {"create": status, "expires_at": token.get("expires_at")}
            called = page.evaluate(PAGE_JS, {"tenant": tenant, "token": token["token"],
                                              "to": "+91 98765 43210", "seconds": 1,
                                              "ending": "api", "mode": "json"})
            result["token"]["call"] = called["status"]
            result["token"]["packets"] = called.get("inbound", {}).get("packetsReceived")
            if called["status"] == 201:
                result["token"]["delete"] = api("DELETE", called["location"], token=key)[0]
            path = f"/api/tenants/{tenant}/webrtc/offer"
            result["token"]["other_number"] = api(
                "POST", path, {"sdp": first["offer"], "to": "9123456789"}, token=token["token"])
            result["token"]["forged"] = api(
                "POST", path, {"sdp": first["offer"], "to": "9876543210"},
                token=token["token"][:-4] + "AAAA")
            result["token"]["bad_ttl"] = api("POST", f"/api/tenants/{tenant}/webrtc/tokens",
                                             {"to": "9876543210", "ttl_s": 4000}, token=key)[0]
            result["token"]["foreign_number"] = api(
                "POST", f"/api/tenants/{tenant}/webrtc/tokens", {"to": "9123456789"}, token=key)[0]
            result["bad_candidate"] = api(
                "POST", f"/api/tenants/{tenant}/webrtc/ice-candidate",
                {"session_id": "00000000-0000-4000-8000-000000000000",
                 "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}, token=key)[0]
            result["garbage_candidate"] = api(
                "POST", f"/api/tenants/{tenant}/webrtc/ice-candidate",
                {"session_id": "00000000-0000-4000-8000-000000000000",
                 "candidate": "not a candidate"}, token=key)

            # 5. Offers refused.
            offer = first["offer"]
            no_g711 = "\r\n".join(
                l for l in offer.split("\r\n")
                if not any(f"a={a}:{pt} " in l or f"a={a}:{pt}\r" in l
                           for a in ("rtpmap", "fmtp", "rtcp-fb") for pt in ("0", "8")))
            no_g711 = no_g711.replace(" 0 8 ", " ").replace(" 8 0 ", " ")
            no_g711 = "\r\n".join(
                " ".join(w for w in l.split(" ") if w not in ("0", "8")) if l.startswith("m=audio") else l
                for l in no_g711.split("\r\n"))
            path = f"/api/tenants/{tenant}/webrtc/offer"
            result["refused"] = {
                "no_g711": api("POST", path, {"sdp": no_g711, "to": "9876543210"}, token=key),
                "not_sdp": api("POST", path, {"sdp": "hello", "to": "9876543210"}, token=key),
                "no_fingerprint": api("POST", path, {"sdp": "\r\n".join(
                    l for l in offer.split("\r\n") if not l.startswith("a=fingerprint:")),
                    "to": "9876543210"}, token=key),
                "unknown_number": api("POST", path, {"sdp": offer, "to": "9123456789"}, token=key),
                "no_credentials": api("POST", path, {"sdp": offer, "to": "9876543210"}, token=None),
                "not_json": api("POST", path, raw=b"{", token=key),
            }
            number_path = f"/api/tenants/{tenant}/phone-numbers/{number['id']}"
            api("PATCH", number_path, {"is_active": False})
            result["refused"]["inactive_number"] = api(
                "POST", path, {"sdp": offer, "to": "9876543210"}, token=key)
            api("PATCH", number_path, {"is_active": True})
            api("PATCH", f"/api/tenants/{tenant}", {"max_concurrent_calls": 0})
            result["refused"]["tenant_at_limit"] = api(
                "POST", path, {"sdp": offer, "to": "9876543210"}, token=key)
            browser.close()
        metrics = urllib.request.urlopen(f"http://{HTTP}/metrics").read().decode()
        result["gauges"] = {l.split(" ")[0]: float(l.split(" ")[1]) for l in metrics.splitlines()
                            if l.startswith(("vca_calls_live", "vca_sip_webrtc_sessions"))}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
