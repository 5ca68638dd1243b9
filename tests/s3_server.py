"""A real S3-compatible server for tests: moto's server mode on 127.0.0.1, in a process of its own.

As a script it starts the server on a free port, prints the port, and exits when its standard input closes
(the test process ended, however it ended) or after --max-seconds, so it can never outlive the tests. The
fixtures give each test a fresh bucket and an AWS environment that reaches only this server: the endpoint
through AWS_ENDPOINT_URL, made-up credentials through the standard variables, no ~/.aws files, no instance
metadata lookups.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import uuid

#: the made-up credentials of the test server: tests check that they never appear in keygap's output
ACCESS_KEY = "AKIAKEYGAPTESTONLY42"
SECRET_KEY = "keygap-test-secret/Do-Not-Print+7f3c9a"
REGION = "us-east-1"


def serve(max_seconds: float) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(max_seconds)
    os._exit(0)  # the server thread does not stop by itself


class S3Server:
    """A running server: its endpoint and the environment that points the AWS chain at it."""

    def __init__(self, max_seconds: float = 3600):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--max-seconds", str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the moto S3 server did not start (it printed {line!r})")
        self.endpoint = f"http://127.0.0.1:{int(line)}"

    def env(self) -> dict[str, str]:
        """Variables of a process that uses this server, and nothing else, as its S3."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def point_aws_at(self, monkeypatch) -> None:
        """Make this process's AWS chain reach this server only (for the test's duration)."""
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)

    def make_bucket(self) -> str:
        """A new empty bucket (a name no other test uses), created with the AWS SDK as a user would."""
        import boto3

        name = f"keygap-{uuid.uuid4().hex[:12]}"
        env = self.env()
        boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of a bucket: {key: content}."""
        import boto3

        env = self.env()
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    serve(parser.parse_args().max_seconds)
