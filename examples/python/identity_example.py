"""A Python service calling the identity service over gRPC, with code generated from proto/.

Usage: identity_example.py [--grpc HOST:PORT] [--http URL] [--sim URL] [--api-key KEY]
Each option also reads an environment variable (IDENTITY_GRPC, IDENTITY_HTTP, IDENTITY_SIM,
IDENTITY_API_KEY, ...); the defaults are `npm start`'s. Prints one JSON line and exits 1 when a
step failed.
"""

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import grpc
import jwt
from google.rpc import error_details_pb2
from grpc_status import rpc_status

env = os.environ.get
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--grpc", default=env("IDENTITY_GRPC", "localhost:9090"), help="the h2c listener")
parser.add_argument("--http", default=env("IDENTITY_HTTP", "http://localhost:8080"), help="the HTTP/1.1 listener")
parser.add_argument("--sim", default=env("IDENTITY_SIM", "http://localhost:8090"), help="the WeChat simulator")
parser.add_argument("--api-key", default=env("IDENTITY_API_KEY"), help="an internal caller's key")
parser.add_argument("--app", default=env("IDENTITY_APP", "demo"), help="the configured app key (the token's aud)")
parser.add_argument("--appid", default=env("IDENTITY_APPID", "wx0000000000000001"), help="its WeChat appid")
parser.add_argument("--issuer", default=env("IDENTITY_ISSUER", "identity"), help="the configured issuer")
parser.add_argument("--jwks", default=env("IDENTITY_JWKS"), help="default: {http}/.well-known/jwks.json")
parser.add_argument("--proto", default=env("IDENTITY_PROTO", str(Path(__file__).resolve().parents[2] / "proto")))
args = parser.parse_args()

# Generate identity/v1/identity_pb2{,_grpc}.py into a temporary directory and import from there.
out_dir = tempfile.mkdtemp(prefix="identity-gen-")
atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", f"-I{args.proto}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
     str(Path(args.proto) / "identity/v1/identity.proto")],
    check=True,
)
sys.path.insert(0, out_dir)
from identity.v1 import identity_pb2, identity_pb2_grpc  # noqa: E402

stub = identity_pb2_grpc.IdentityServiceStub(grpc.insecure_channel(args.grpc))
result = {}


def reason_of(err):
    """The gRPC code and the google.rpc.ErrorInfo reason of a refused call."""
    status = rpc_status.from_call(err)  # None when the error carries no details (e.g. UNAVAILABLE)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return {"code": err.code().name, "reason": info.reason, "domain": info.domain}
    return {"code": err.code().name, "reason": None}


def step(name, fn):
    try:
        result[name] = fn()
    except Exception as err:  # noqa: BLE001 - every failure ends up in the summary line
        result[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}


# 1. Login with a code from the simulator (in production the mini-program sends its wx.login code).
req = urllib.request.Request(f"{args.sim}/sim/login-code", json.dumps({"appid": args.appid}).encode(), {"content-type": "application/json"})
code = json.load(urllib.request.urlopen(req, timeout=10))["code"]
login = stub.Login(identity_pb2.LoginRequest(app_id=args.app, code=code), timeout=10)
token = login.tokens.access_token
result["login"] = {"ok": True, "userId": login.user.id, "registered": login.registered, "firstLogin": login.first_login, "expiresIn": login.tokens.expires_in}


def check_login(metadata, request):
    res = stub.CheckLogin(request, metadata=metadata, timeout=10)
    return {"ok": True, "userId": res.user.id, "appId": res.app_id, "sessionId": res.session_id, "expireTime": res.expire_time.ToJsonString()}


# 2. CheckLogin as the end user: the token as bearer.
step("checkLoginBearer", lambda: check_login([("authorization", f"Bearer {token}")], identity_pb2.CheckLoginRequest()))

# 3. CheckLogin as an internal service: its API key, the user's token in the request.
if args.api_key:
    step("checkLoginApiKey", lambda: check_login([("x-api-key", args.api_key)], identity_pb2.CheckLoginRequest(access_token=token)))
else:
    result["checkLoginApiKey"] = {"ok": None, "skipped": "no --api-key / IDENTITY_API_KEY"}


# 4. A refused call: branch on the gRPC code and the ErrorInfo reason only, never on the message.
def refused():
    try:
        stub.CheckLogin(identity_pb2.CheckLoginRequest(), metadata=[("authorization", "Bearer not-a-token")], timeout=10)
        return {"ok": False, "error": "CheckLogin accepted a bad token"}
    except grpc.RpcError as err:
        return {"ok": True, **reason_of(err)}


step("refused", refused)


# 5. Verify the access token locally with the service's public keys (ES256; no call per request).
def verify():
    jwks = jwt.PyJWKClient(args.jwks or f"{args.http}/.well-known/jwks.json", cache_keys=True, timeout=10)
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key, algorithms=["ES256"], audience=args.app, issuer=args.issuer, options={"require": ["exp", "iss", "aud", "sub"]})
    return {"ok": True, "kid": key.key_id, "sub": claims["sub"], "aud": claims["aud"], "iss": claims["iss"], "exp": claims["exp"]}


step("jwks", verify)

print(json.dumps(result))
sys.exit(0 if all(r.get("ok") is not False for r in result.values()) else 1)
