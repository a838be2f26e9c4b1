#!/usr/bin/env python3
"""Check that proto/inference/grpc_predict_v2.proto is wire-compatible with the KServe v2
protocol that Triton ships, using the descriptors inside the `tritonclient` package.

Every message (with nested messages), field and RPC that our file defines must exist in
tritonclient's `inference` package with the same full name, field number, type, label,
type name and oneof membership; RPCs must have the same input and output types. Our file
may define a subset of Triton's service. As a last proof, a fully populated request and
response encoded with our generated code are decoded with tritonclient's classes.

Run with a Python that has `tritonclient[grpc]` and `grpcio-tools`:
    /root/.cache/stockcast/venv/bin/python scripts/check-kserve-proto.py
Exits 0 when everything matches, 1 with one line per mismatch otherwise.
"""

import importlib.resources
import json
import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, json_format

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_ROOT = os.path.join(ROOT, "proto")
OUR_FILE = "inference/grpc_predict_v2.proto"
OUR_DEPS = ["google/api/http.proto", "google/api/annotations.proto"]

# Run in a child process with our generated modules on sys.path: tritonclient registers
# the same `inference.*` names in the default descriptor pool, so the two generated
# modules cannot be imported into one process.
ENCODE_WITH_OURS = r"""
import json, sys
from google.protobuf import json_format
sys.path.insert(0, sys.argv[1])
from inference import grpc_predict_v2_pb2 as ours
out = {}
for name, value in json.loads(sys.stdin.read()).items():
    msg = getattr(ours, name)()
    json_format.ParseDict(value, msg)
    out[name] = msg.SerializeToString(deterministic=True).hex()
print(json.dumps(out))
"""

PARAMS = {
    "b": {"boolParam": True},
    "i": {"int64Param": "-7"},
    "s": {"stringParam": "x"},
    "d": {"doubleParam": 0.25},
    "u": {"uint64Param": "18446744073709551615"},
}
CONTENTS = {
    "boolContents": [True, False],
    "intContents": [-1, 2],
    "int64Contents": ["-3", "4"],
    "uintContents": [5, 6],
    "uint64Contents": ["7", "8"],
    "fp32Contents": [0.5, -1.5],
    "fp64Contents": [0.125, 2.0],
    "bytesContents": ["AAE="],
}
SAMPLES = {
    "ServerLiveResponse": {"live": True},
    "ServerReadyResponse": {"ready": True},
    "ModelReadyRequest": {"name": "m", "version": "3"},
    "ModelReadyResponse": {"ready": True},
    "ServerMetadataResponse": {"name": "s", "version": "1", "extensions": ["a", "b"]},
    "ModelMetadataRequest": {"name": "m", "version": "3"},
    "ModelMetadataResponse": {
        "name": "m", "versions": ["1", "2"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "12"]}],
        "outputs": [{"name": "y", "datatype": "FP64", "shape": ["-1", "1"]}],
    },
    "ModelInferRequest": {
        "modelName": "m", "modelVersion": "3", "id": "req-1", "parameters": PARAMS,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["1", "2"],
                    "parameters": PARAMS, "contents": CONTENTS}],
        "outputs": [{"name": "y", "parameters": PARAMS}],
        "rawInputContents": ["AQIDBA=="],
    },
    "ModelInferResponse": {
        "modelName": "m", "modelVersion": "3", "id": "req-1", "parameters": PARAMS,
        "outputs": [{"name": "y", "datatype": "FP64", "shape": ["1", "1"],
                     "parameters": PARAMS, "contents": CONTENTS}],
        "rawOutputContents": ["AQIDBA=="],
    },
}


def compile_ours(out_dir):
    """Compiles our file with grpc_tools.protoc; returns our FileDescriptor."""
    from grpc_tools import protoc

    wkt = str(importlib.resources.files("grpc_tools") / "_proto")
    descriptor_set = os.path.join(out_dir, "ours.binpb")
    args = [
        "protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={wkt}",
        f"--python_out={out_dir}",
        f"--descriptor_set_out={descriptor_set}",
        "--include_imports",
        OUR_FILE,
        *OUR_DEPS,
    ]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed to compile {OUR_FILE}")
    fds = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_set, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:
        pool.Add(file_proto)
    return pool.FindFileByName(OUR_FILE)


def all_messages(messages):
    """Yields every message descriptor, recursively including nested ones."""
    for message in messages:
        yield message
        yield from all_messages(message.nested_types)


def field_signature(field):
    type_name = ""
    if field.message_type is not None:
        type_name = field.message_type.full_name
    elif field.enum_type is not None:
        type_name = field.enum_type.full_name
    oneof = field.containing_oneof.name if field.containing_oneof else ""
    label = "repeated" if field.is_repeated else "required" if field.is_required else "optional"
    return {
        "number": field.number,
        "type": descriptor_pb2.FieldDescriptorProto.Type.Name(field.type),
        "label": label,
        "type_name": type_name,
        "oneof": oneof,
    }


def compare(ours, theirs_pool):
    errors = []
    counts = {"messages": 0, "fields": 0, "rpcs": 0}
    if ours.package != "inference":
        errors.append(f"package: ours is {ours.package!r}, expected 'inference'")

    for message in all_messages(ours.message_types_by_name.values()):
        counts["messages"] += 1
        try:
            theirs = theirs_pool.FindMessageTypeByName(message.full_name)
        except KeyError:
            errors.append(f"message {message.full_name}: not in tritonclient")
            continue
        if message.GetOptions().map_entry != theirs.GetOptions().map_entry:
            errors.append(f"message {message.full_name}: map_entry differs")
        for field in message.fields:
            counts["fields"] += 1
            where = f"field {message.full_name}.{field.name}"
            their_field = theirs.fields_by_name.get(field.name)
            if their_field is None:
                errors.append(f"{where}: not in tritonclient")
                continue
            mine, their = field_signature(field), field_signature(their_field)
            for key in mine:
                if mine[key] != their[key]:
                    errors.append(f"{where}: {key} is {mine[key]!r}, tritonclient has {their[key]!r}")
        for oneof in message.oneofs:
            if oneof.name not in theirs.oneofs_by_name:
                errors.append(f"oneof {message.full_name}.{oneof.name}: not in tritonclient")

    for service in ours.services_by_name.values():
        try:
            their_service = theirs_pool.FindServiceByName(service.full_name)
        except KeyError:
            errors.append(f"service {service.full_name}: not in tritonclient")
            continue
        for method in service.methods:
            counts["rpcs"] += 1
            where = f"rpc {service.full_name}.{method.name}"
            their = their_service.methods_by_name.get(method.name)
            if their is None:
                errors.append(f"{where}: not in tritonclient")
                continue
            for side in ("input_type", "output_type"):
                mine_t, their_t = getattr(method, side).full_name, getattr(their, side).full_name
                if mine_t != their_t:
                    errors.append(f"{where}: {side} is {mine_t}, tritonclient has {their_t}")
            for side in ("client_streaming", "server_streaming"):
                if getattr(method, side) != getattr(their, side):
                    errors.append(f"{where}: {side} differs from tritonclient")
    return counts, errors


def wire_round_trip(out_dir, service_pb2):
    """Encodes SAMPLES with our generated code, decodes them with tritonclient's."""
    result = subprocess.run(
        [sys.executable, "-c", ENCODE_WITH_OURS, out_dir],
        input=json.dumps(SAMPLES), capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"wire: encoding with our generated code failed: {last_line}"]
    errors = []
    for name, hex_bytes in json.loads(result.stdout).items():
        theirs = getattr(service_pb2, name)()
        theirs.ParseFromString(bytes.fromhex(hex_bytes))
        expected = getattr(service_pb2, name)()
        json_format.ParseDict(SAMPLES[name], expected)
        # Unknown fields would survive the parse and show up in the re-encoded bytes.
        if theirs != expected or theirs.SerializeToString(deterministic=True).hex() != hex_bytes:
            errors.append(f"wire: {name} encoded by ours decodes differently with tritonclient")
    return errors


def main():
    try:
        from tritonclient.grpc import service_pb2
    except ImportError as e:
        sys.exit(f"cannot import tritonclient.grpc ({e}); pip install 'tritonclient[grpc]'")

    with tempfile.TemporaryDirectory(prefix="kserve-proto-") as out_dir:
        ours = compile_ours(out_dir)
        counts, errors = compare(ours, service_pb2.DESCRIPTOR.pool)
        errors += wire_round_trip(out_dir, service_pb2)

    if errors:
        for line in errors:
            print(f"MISMATCH {line}", file=sys.stderr)
        print(f"kserve proto: {len(errors)} mismatch(es) with tritonclient", file=sys.stderr)
        sys.exit(1)
    print(
        f"kserve proto: {counts['messages']} messages, {counts['fields']} fields, "
        f"{counts['rpcs']} rpcs match tritonclient; wire round trip of "
        f"{len(SAMPLES)} messages ok"
    )


if __name__ == "__main__":
    main()
