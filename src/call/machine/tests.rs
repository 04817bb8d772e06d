//! Table and property tests of the call machine.
