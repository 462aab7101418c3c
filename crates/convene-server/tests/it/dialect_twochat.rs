//! Tests of the twochat dialect.
