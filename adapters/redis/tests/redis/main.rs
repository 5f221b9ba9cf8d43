//! The Redis line's tests: the ports' contract for the waiting line (the line on Redis, the rest
//! on PostgreSQL) and what only a line on Redis does (failures of the server, its restarts).

mod blocks;
mod contract;
mod faults;
mod support;
