"""Python's standard reflection client against the h2c listener: no generated code.

Usage: reflection_client.py HOST:PORT. Prints one JSON line: the services listed, the
IdentityService methods found, and the outcome of calls built from the reflected descriptors.
"""

import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

channel = grpc.insecure_channel(sys.argv[1])
# The database speaks grpc.reflection.v1alpha only; the pool asks it for each symbol it needs.
db = ProtoReflectionDescriptorDatabase(channel)
pool = DescriptorPool(db)
out = {"services": list(db.get_services())}

service = pool.FindServiceByName("identity.v1.IdentityService")
out["methods"] = [m.name for m in service.methods]


def call(method_name, request):
    """A unary call to a reflected method, with classes made from its descriptors."""
    method = pool.FindMethodByName(method_name)
    reply = GetMessageClass(method.output_type)
    stub = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reply.FromString,
    )
    return stub(GetMessageClass(method.input_type)(**request), timeout=10)


health = call("grpc.health.v1.Health.Check", {"service": ""})
out["health"] = health.DESCRIPTOR.enum_types_by_name["ServingStatus"].values_by_number[health.status].name

try:
    call("identity.v1.IdentityService.CheckLogin", {})
    out["checkLogin"] = {"code": "OK"}
except grpc.RpcError as err:
    # The reason travels as google.rpc.ErrorInfo in grpc-status-details-bin.
    status = rpc_status.from_call(err)
    reasons = []
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reasons.append(info.reason)
    out["checkLogin"] = {"code": err.code().name, "reasons": reasons}

print(json.dumps(out))
