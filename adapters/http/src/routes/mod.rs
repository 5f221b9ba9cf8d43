//! The route table, one module per resource. Each handler parses, calls one use case, maps.

pub mod admin;
pub mod catalog;
pub mod operations;
pub mod payments;
pub mod points;
pub mod queue;
pub mod reservations;
