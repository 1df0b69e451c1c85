#!/usr/bin/env python3
"""Writes `tensorflow_graph.desc`: a serialized google.protobuf.FileDescriptorSet holding
tensorflow/core/framework/graph.proto and every file it imports, exactly as compiled into
the installed TensorFlow pip wheel (its `*_pb2.py` modules carry the FileDescriptorProtos;
the wheel ships no .proto sources).

The build script (`../build.rs`) feeds the set to `prost_build::Config::compile_fds`, so
`cargo build` needs neither Python nor `protoc`. Rerun only to move to another TensorFlow
release:

    python3 crates/tensorflow/proto/dump_descriptors.py

Generated from tensorflow-cpu 2.21.0. The output is deterministic (files in dependency
order, each one's serialized descriptor unchanged).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from google.protobuf import descriptor_pb2  # noqa: E402
from tensorflow.core.framework import graph_pb2  # noqa: E402
import tensorflow as tf  # noqa: E402


def main():
    fds = descriptor_pb2.FileDescriptorSet()
    done = set()

    def visit(fd):
        if fd.name in done:
            return
        for dep in fd.dependencies:
            visit(dep)
        done.add(fd.name)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(fd.serialized_pb)
        # Source-code info is not needed for code generation and varies between builds.
        proto.ClearField("source_code_info")
        fds.file.append(proto)

    visit(graph_pb2.DESCRIPTOR)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensorflow_graph.desc")
    with open(out, "wb") as f:
        f.write(fds.SerializeToString(deterministic=True))
    print(f"TensorFlow {tf.__version__}: wrote {len(fds.file)} files to {out}:")
    for p in fds.file:
        print(f"  {p.name} (package {p.package})")


if __name__ == "__main__":
    main()
