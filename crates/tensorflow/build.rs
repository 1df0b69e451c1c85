//! Generates the TensorFlow GraphDef protobuf types from `proto/tensorflow_graph.desc`, a
//! FileDescriptorSet of `tensorflow/core/framework/graph.proto` and its imports dumped from
//! the TensorFlow 2.21 pip wheel by `proto/dump_descriptors.py`. No Python or `protoc` is
//! needed to build.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tensorflow_graph.desc");
    println!("cargo:rerun-if-changed=build.rs");
    let bytes = std::fs::read("proto/tensorflow_graph.desc")?;
    let fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
