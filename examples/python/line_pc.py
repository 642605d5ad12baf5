#!/usr/bin/env python3
"""A line PC talking to Sightline: the three ways to send it images.

1. POST /v1/detect: one image, the verdict in the answer.
2. POST /v1/jobs with an Idempotency-Key, then GET /v1/jobs/<id> until it is
   done; sending the same key again returns the same job (`duplicate: true`),
   which is what makes retrying a submission after a timeout safe.
3. GET /v1/stream (WebSocket): binary frames in, one JSON answer per frame out,
   matched by the frame's id.

Needs Python 3.8+, requests and websockets (Debian: python3-requests,
python3-websockets; websockets 10 or newer). Environment: SIGHTLINE_URL (default
http://127.0.0.1:8080), SIGHTLINE_API_KEY (optional, sent as a Bearer token).
Exits 0 when every step worked, 1 when one failed, 2 on bad arguments.
"""
import argparse
import asyncio
import inspect
import json
import mimetypes
import os
import statistics
import struct
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
import websockets
from websockets.exceptions import WebSocketException

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "samples" / "ng-03.jpg"


class Failure(Exception):
    """A step did not do what it should: the script exits 1 with this message."""


def describe(response):
    """The server's `{error: {code, message}}` as one line, or the start of the body."""
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


class Sightline:
    def __init__(self, base_url, api_key, timeout):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.http = requests.Session()
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method, path, expect, retries=0, **kwargs):
        """One call; 429 and 503 carry Retry-After and are retried `retries` times, as are broken connections."""
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = self.http.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
            except requests.RequestException as err:
                if last:
                    raise Failure(f"{method} {path}: {err}") from err
                time.sleep(min(2 ** attempt, 5))
                continue
            if response.status_code == expect:
                return response
            if response.status_code in (429, 503) and not last:
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 10))
                continue
            raise Failure(f"{method} {path}: {describe(response)}")
        raise AssertionError("unreachable")

    def wait_ready(self, timeout):
        """A server that has just started answers 503 until its model is loaded."""
        until = time.monotonic() + timeout
        while True:
            try:
                response = self.http.get(self.base_url + "/readyz", timeout=self.timeout)
                if response.status_code == 200:
                    return
                why = describe(response)
            except requests.RequestException as err:
                why = str(err)
            if time.monotonic() > until:
                raise Failure(f"the server at {self.base_url} is not ready after {timeout:.0f} s: {why}")
            time.sleep(0.5)

    def stream_url(self, query):
        parts = urlsplit(self.base_url)
        scheme = {"http": "ws", "https": "wss"}[parts.scheme]
        return urlunsplit((scheme, parts.netloc, parts.path + "/v1/stream", urlencode(query), ""))


def print_result(prefix, result):
    detections = result["detections"]
    print(f"{prefix}verdict={result['verdict']} detections={len(detections)} request_id={result['request_id']}")
    for d in detections:
        box = d["box"]
        print(f"  {d['label']:<8} {d['score']:.2f}  box=({box['x1']:.0f},{box['y1']:.0f})-({box['x2']:.0f},{box['y2']:.0f})")


def detect(client, image, content_type, line):
    response = client.request(
        "POST", "/v1/detect", 200, retries=3,
        params={"line": line}, data=image, headers={"Content-Type": content_type},
    )
    print_result("detect: ", response.json())


def job(client, image, content_type, line, timeout):
    key = f"line-pc-{uuid.uuid4()}"
    headers = {"Content-Type": content_type, "Idempotency-Key": key}
    # The key makes the retries safe: a submission that did arrive is not queued twice.
    submitted = client.request("POST", "/v1/jobs", 202, retries=3, params={"line": line}, data=image, headers=headers).json()
    job_id = submitted["job_id"]
    print(f"job: submitted job_id={job_id} duplicate={str(submitted['duplicate']).lower()} idempotency_key={key}")

    until = time.monotonic() + timeout
    delay = 0.1
    while True:
        state = client.request("GET", f"/v1/jobs/{job_id}", 200, retries=3).json()
        if state["state"] == "done":
            print_result(f"job: job_id={job_id} state=done attempts={state['attempts']} ", state["result"])
            break
        if state["state"] == "dead":
            raise Failure(f"job {job_id} is dead after {state['attempts']} attempts: {state.get('last_error')}")
        if time.monotonic() > until:
            raise Failure(f"job {job_id} is still {state['state']} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)

    again = client.request("POST", "/v1/jobs", 202, params={"line": line}, data=image, headers=headers).json()
    print(f"job: re-sent idempotency_key={key} job_id={again['job_id']} duplicate={str(again['duplicate']).lower()}")
    if again["job_id"] != job_id or again["duplicate"] is not True:
        raise Failure(f"re-sending idempotency key {key} gave {again}, not job {job_id} with duplicate: true")


def encode_frame(header, image):
    """Magic "SL", protocol version 1, a reserved 0, the header's length (big-endian), the JSON header, the image."""
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return b"SL" + bytes([1, 0]) + struct.pack(">H", len(encoded)) + encoded + image


def connect(url, headers):
    # websockets 14 renamed extra_headers to additional_headers.
    params = inspect.signature(websockets.connect).parameters
    name = "additional_headers" if "additional_headers" in params else "extra_headers"
    return websockets.connect(url, open_timeout=10, **({name: headers} if headers else {}))


async def stream(client, image, line, frames, timeout):
    headers = {"Authorization": f"Bearer {client.api_key}"} if client.api_key else {}
    url = client.stream_url({"line": line, "client_kind": "camera"})
    run = uuid.uuid4().hex[:8]
    ids = [f"cam-{run}-{i:04d}" for i in range(1, frames + 1)]
    sent = {}  # id → when it was sent, for frames not answered yet
    latencies = []
    failed = []

    async def receive():
        try:
            text = await asyncio.wait_for(ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"stream: no message for {timeout:.0f} s with {len(sent)} frames unanswered") from None
        if not isinstance(text, str):
            raise Failure("stream: the server sent a binary message")
        return json.loads(text)

    try:
        async with connect(url, headers) as ws:
            hello = await receive()
            if hello.get("type") != "hello":
                raise Failure(f"stream: expected hello, got {hello}")
            # Keeping at most max_in_flight frames out means none waits or is dropped;
            # a camera that must not fall behind would send freely and accept drops.
            window = max(1, hello["limits"]["max_in_flight"])
            print(f"stream: connected connection_id={hello['connection_id']} window={window}")
            next_frame = 0
            while next_frame < len(ids) or sent:
                while next_frame < len(ids) and len(sent) < window:
                    frame_id = ids[next_frame]
                    sent[frame_id] = time.perf_counter()
                    await ws.send(encode_frame({"id": frame_id, "line": line}, image))
                    next_frame += 1
                msg = await receive()
                kind = msg.get("type")
                frame_id = msg.get("id")
                if kind in ("result", "error", "dropped") and frame_id not in sent:
                    if kind == "error" and frame_id is None:
                        error = msg["error"]
                        raise Failure(f"stream: {error['code']}: {error['message']}")
                    raise Failure(f"stream: an answer for a frame not sent or already answered: {msg}")
                if kind == "result":
                    latency = (time.perf_counter() - sent.pop(frame_id)) * 1000
                    latencies.append(latency)
                    result = msg["result"]
                    print(f"stream: frame {frame_id} verdict={result['verdict']} detections={len(result['detections'])} latency_ms={latency:.1f}")
                elif kind == "error":
                    sent.pop(frame_id)
                    failed.append(frame_id)
                    print(f"stream: frame {frame_id} error {msg['error']['code']}: {msg['error']['message']}", file=sys.stderr)
                elif kind == "dropped":
                    sent.pop(frame_id)
                    failed.append(frame_id)
                    print(f"stream: frame {frame_id} dropped ({msg['reason']}, policy {msg['policy']}, {msg['dropped_total']} so far)", file=sys.stderr)
                # status, event, pong and subscriptions are not answers to frames.
    except (OSError, asyncio.TimeoutError, WebSocketException) as err:
        raise Failure(f"stream: {url}: {err}") from err

    if failed:
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        raise Failure(f"stream: {len(failed)} of {frames} frames got no result: {', '.join(failed[:10])}{more}")
    print(f"stream: {len(latencies)}/{frames} results, latency_ms p50={statistics.median(latencies):.1f} max={max(latencies):.1f}")


def main():
    parser = argparse.ArgumentParser(description="Send an image to Sightline by /v1/detect, /v1/jobs and /v1/stream.")
    parser.add_argument("image", nargs="?", type=Path, default=DEFAULT_IMAGE, help=f"JPEG, PNG or WebP (default {DEFAULT_IMAGE})")
    parser.add_argument("--line", default="line-pc", help="production line (default line-pc)")
    parser.add_argument("--frames", type=int, default=5, help="frames to stream (default 5)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for readiness, a job or a stream answer (default 60)")
    args = parser.parse_args()
    if args.frames < 1:
        parser.error("--frames must be at least 1")

    client = Sightline(os.environ.get("SIGHTLINE_URL") or "http://127.0.0.1:8080", os.environ.get("SIGHTLINE_API_KEY") or None, args.timeout)
    try:
        image = args.image.read_bytes()
        content_type = mimetypes.guess_type(args.image.name)[0] or "application/octet-stream"
        print(f"server: {client.base_url} image: {args.image} ({len(image)} bytes)")
        client.wait_ready(args.timeout)
        detect(client, image, content_type, args.line)
        job(client, image, content_type, args.line, args.timeout)
        asyncio.run(stream(client, image, args.line, args.frames, args.timeout))
    except (Failure, OSError) as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
