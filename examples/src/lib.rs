//! Examples live in the examples/ directory.
