//! Conformance test (being written).
