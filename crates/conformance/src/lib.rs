//! Conformance suites (tests only): `tests/onnx_node.rs` runs the ONNX backend node tests of
//! the operators cryptflow claims (`fixtures/onnx_node`) through the importer, the float
//! executor, Athos and the cleartext and Porthos executors.
