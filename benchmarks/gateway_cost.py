"""CPU a Vonage gateway call costs the calling process, by auth: basic (key and secret),
JWT as the SDK ships it (it hands PyJWT the private key as PEM text, parsed again on
every request), and JWT as Pollstr's gateway sets it up (the key parsed once per
process). Interleaved, repetition by repetition, in one run:

    python -m benchmarks.gateway_cost [--calls 40] [--repetitions 3]

Each call is a start or a cancel through the official SDK over HTTPS to the Verify
double (benchmarks/verify_double.py) in a process of its own, so this process's own
CPU counter (``time.process_time``) holds only the client side; a gateway is built
per start/cancel pair, as each Celery task builds its own (``gateways.get_gateway()``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks.stats import medians_lines  # noqa: E402

NUMBER = "+447700900123"


@contextmanager
def verify_double() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        info_file = Path(tmp) / "double.json"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.verify_double",
                "--latency",
                "0",
                "--info-file",
                str(info_file),
            ],
            cwd=BASE_DIR,
        )
        try:
            deadline = time.monotonic() + 20
            while not info_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the Verify double did not start")
                time.sleep(0.05)
            yield json.loads(info_file.read_text())
        finally:
            process.terminate()
            process.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="start/cancel pairs per mode")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pollstr.settings")
    os.environ.setdefault("POLLSTR_VAR_DIR", tempfile.mkdtemp(prefix="pollstr-bench-"))
    import django

    django.setup()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.fakes.verify_server import FAKE_API_KEY, FAKE_API_SECRET
    from two_factor.channels import workflow_steps
    from two_factor.gateways import GatewayConfig
    from two_factor.gateways.vonage.client import VonageGateway

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    config = GatewayConfig(code_length=6, channel_timeout=60, request_timeout=5)
    workflow = workflow_steps(["sms", "voice"])

    with verify_double() as double:
        os.environ["REQUESTS_CA_BUNDLE"] = double["ca_bundle"]
        os.environ["NO_PROXY"] = "localhost,127.0.0.1"

        def basic() -> VonageGateway:
            return VonageGateway(
                config, api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET, api_host=double["host"]
            )

        def jwt_pem_per_call() -> VonageGateway:
            gateway = VonageGateway(
                config, application_id=str(uuid.uuid4()), private_key=pem, api_host=double["host"]
            )
            gateway._auth._jwt_client._private_key = pem  # as the SDK ships it
            return gateway

        def jwt_parsed_once() -> VonageGateway:
            return VonageGateway(
                config, application_id=str(uuid.uuid4()), private_key=pem, api_host=double["host"]
            )

        modes: dict[str, Callable[[], VonageGateway]] = {
            "basic auth": basic,
            "JWT, key parsed per call (the SDK as shipped)": jwt_pem_per_call,
            "JWT, key parsed once (Pollstr)": jwt_parsed_once,
        }
        medians: dict[str, list[float]] = {name: [] for name in modes}
        print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
        for repetition in range(args.repetitions):
            for name, build in modes.items():
                per_call = []
                for i in range(args.calls + 5):  # the first few warm the thread's client
                    started = time.process_time()
                    gateway = build()
                    request = gateway.start(
                        number=NUMBER, client_ref=uuid.uuid4().hex, workflow=workflow
                    )
                    gateway.cancel(request_id=request)
                    if i >= 5:
                        per_call.append((time.process_time() - started) * 1000 / 2)
                medians[name].append(statistics.median(per_call))
                print(f"rep {repetition + 1}: {name}: {medians[name][-1]:.2f} ms per call")
        print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
        print("\nCPU per Vonage call in the calling process, median of the repetitions:")
        print("\n".join(medians_lines(medians, unit="ms")))


if __name__ == "__main__":
    main()
