//! Unit tests on hand-built GraphDefs.
