//! Test support shared by the agent's tests and the end-to-end tests (a dev-dependency of the one, a
//! dependency of the other's harness and benchmarks). It panics rather than return errors: a failure here is a
//! broken test setup.

pub mod registry;
