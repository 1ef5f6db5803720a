"""The start of in-pod probe scripts that try the thread's storage credentials.

Run as user code in a sandbox pod: ``attempt(fn)`` says "ok" or the error's type and S3 code,
so a probe can tell "refused" from "worked"; ``st`` is the pod's storage.json (its scoped STS
credentials) and ``s3`` a MinIO client with them.
"""

_POD_S3 = r"""
import io, json, os
from minio import Minio

def attempt(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}:{getattr(exc, 'code', '')}"

st = json.load(open("/var/run/threadbox/storage.json"))
s3 = Minio(st["endpoint"], st["access_key"], st["secret_key"], session_token=st["session_token"],
           secure=st["secure"], region="us-east-1")
"""


def pod_s3_script(body: str) -> str:
    """``body`` after the prelude above: it may call ``attempt`` and use ``st`` and ``s3``."""
    return _POD_S3 + body
