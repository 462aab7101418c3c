//! Tests of the green dialect.
