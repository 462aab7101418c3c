//! Tests of the zapi dialect.
