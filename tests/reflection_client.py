"""A standard gRPC client that knows nothing of Switchboard but what server
reflection tells it: list the services, load their descriptors, and call
Tenants.CreateTenant, Tenants.GetTenant and Node.Status by name; then ask
grpc.health.v1 whether the server is serving, and send bytes that are no
message at all.

Usage: python3 tests/reflection_client.py HOST:PORT
Run by crates/switchboard/tests/single_node.rs; needs grpcio,
grpcio-reflection and grpcio-health-checking (./x setup installs them).
"""

import json
import sys
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def reflect(channel, request):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return next(iter(stub.ServerReflectionInfo(iter([request]))))


def main(target):
    channel = grpc.insecure_channel(target)
    services = [s.name for s in reflect(channel, reflection_pb2.ServerReflectionRequest(list_services="")).list_services_response.service]

    pool = descriptor_pool.DescriptorPool()
    files = {}

    def load(request):
        resp = reflect(channel, request)
        for b in resp.file_descriptor_response.file_descriptor_proto:
            p = descriptor_pb2.FileDescriptorProto.FromString(b)
            files.setdefault(p.name, p)

    for name in services:
        if name.startswith("switchboard."):
            load(reflection_pb2.ServerReflectionRequest(file_containing_symbol=name))
    added = set()

    def add(name):
        # Dependencies first, fetched by file name when the server left them out.
        if name in added:
            return
        if name not in files:
            load(reflection_pb2.ServerReflectionRequest(file_by_filename=name))
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)

    for name in list(files):
        add(name)

    def call(service, method, body):
        m = pool.FindServiceByName(service).FindMethodByName(method)
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        rpc = channel.unary_unary(f"/{service}/{method}", request_serializer=req_cls.SerializeToString, response_deserializer=resp_cls.FromString)
        return json_format.MessageToDict(rpc(json_format.ParseDict(body, req_cls()), timeout=10), preserving_proto_field_name=True)

    created = call("switchboard.v1.Tenants", "CreateTenant", {"id": "via-reflection", "cluster": "mt1"})
    got = call("switchboard.v1.Tenants", "GetTenant", {"id": "via-reflection"})
    status = call("switchboard.v1.Node", "Status", {})
    # Health follows readiness, polled by the server: allow it a moment after start.
    for _ in range(50):
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="switchboard.v1.Tenants"), timeout=10)
        if health.status == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.1)
    # Bytes that are no protobuf message: the caller's fault, INVALID_ARGUMENT.
    garbage = channel.unary_unary("/switchboard.v1.Tenants/GetTenant", request_serializer=None, response_deserializer=None)
    try:
        garbage(b"\xff\xff\xff\xff", timeout=10)
        garbage_code = "OK"
    except grpc.RpcError as e:
        garbage_code = e.code().name
    print(json.dumps({
        "garbage_code": garbage_code,
        "services": sorted(services),
        "created_revision": int(created.get("revision", 0)),
        "tenant": got,
        "status_keys": sorted(status.keys()),
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
