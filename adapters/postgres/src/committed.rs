//! A write's answer only after its commit.
//!
//! A statement outside a transaction block runs in an implicit transaction, which the server
//! commits when it reaches the `Sync` that ends the exchange: *after* it has sent the statement's
//! rows and its `CommandComplete`. diesel-async's `get_result` (and `first`) return at the first
//! row and drop the rest of the exchange, so a commit that fails after that (the backend
//! terminated in between, a deferred check) would go unnoticed: a charge answered 200 whose
//! effect is gone. `load` reads the exchange to its end (`ReadyForQuery`), where such a failure is
//! reported, and `execute` waits for it too.
//!
//! So every write that runs outside a transaction block and returns rows is read with `load` and
//! [`committed_row`]. Statements inside `transaction()` need not be: their `COMMIT` is a statement
//! of its own, answered after the commit.

/// The row a writing statement returned, taken from all of its answer (see the module docs).
pub(crate) fn committed_row<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}
