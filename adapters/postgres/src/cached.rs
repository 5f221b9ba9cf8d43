//! Keeping hot statements prepared.
//!
//! diesel-async keeps a statement prepared on its connection only when diesel calls the query "safe
//! to cache". diesel says no for every `UPDATE`, every `sql_query` and every raw SQL fragment,
//! because their SQL text *may* vary from call to call. Each such statement then costs a Parse
//! round trip (and a planning) before its Bind/Execute round trip, on every call.
//!
//! [`Cached`] marks a statement whose SQL text is fixed: its cache key is the SQL text itself (plus
//! the bind types), so a statement whose text did vary would only be prepared once per variant —
//! never the wrong statement. Use it only on statements built from constant SQL and a fixed set
//! of columns, so the number of variants stays one.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement with constant SQL text, kept prepared per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached<Q>(pub(crate) Q);

/// `.cached()` on any statement.
pub(crate) trait CachedExt: Sized {
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q: QueryFragment<Pg>> CachedExt for Q {}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the statement cache keys it by its SQL text, never by type.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}
