//! Tests of the wawp dialect.
